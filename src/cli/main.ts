import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { resolveConfig } from '../core/config.js';
import { describeError, EXIT, exitCodeFor, FerryError, UsageError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import type { Command } from './command.js';
import { COMMANDS } from './commands/index.js';

/** Flags every command accepts, each with an environment equivalent. */
const GLOBAL_OPTIONS: ParseArgsConfig['options'] = {
  lake: { type: 'string' },
  state: { type: 'string' },
  dataverse: { type: 'string' },
  metadata: { type: 'string' },
  warehouse: { type: 'string' },
  'pipelines-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  'log-json': { type: 'boolean', default: false },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};

function usage(): string {
  const lines = COMMANDS.flatMap((c) => [`  ferry ${c.usage}`, `      ${c.summary}`]);
  return [
    'Usage: ferry <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Global options (environment equivalents):',
    '  --lake <dir>        lake root (FERRY_LAKE, default ./lake)',
    '  --state <dir>       state directory (FERRY_STATE, default ./.ferry)',
    '  --dataverse <url>   Dataverse environment URL (FERRY_DATAVERSE_URL; default: the built-in emulator)',
    '  --metadata <dir>    Dataverse metadata snapshots (FERRY_METADATA, default fixtures/metadata)',
    '  --json              machine-readable output',
  ].join('\n');
}

function findCommand(argv: readonly string[]): { command: Command; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const command = COMMANDS.find((c) => c.name === name);
    if (command) return { command, rest: argv.slice(words) };
  }
  return undefined;
}

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(`${usage()}\n`);
    return argv.length === 0 ? EXIT.usage : EXIT.ok;
  }
  const found = findCommand(argv);
  if (!found) {
    process.stderr.write(`Unknown command \`${argv.join(' ')}\`.\n\n${usage()}\n`);
    return EXIT.usage;
  }
  const { command, rest } = found;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    process.stderr.write(`${describeError(error)}\nUsage: ferry ${command.usage}\n`);
    return EXIT.usage;
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    process.stdout.write(`Usage: ferry ${command.usage}\n${command.summary}\n`);
    return EXIT.ok;
  }
  const config = resolveConfig({
    ...(typeof values.lake === 'string' ? { lake: values.lake } : {}),
    ...(typeof values.state === 'string' ? { state: values.state } : {}),
    ...(typeof values.dataverse === 'string' ? { dataverse: values.dataverse } : {}),
    ...(typeof values.metadata === 'string' ? { metadata: values.metadata } : {}),
    ...(typeof values.warehouse === 'string' ? { warehouse: values.warehouse } : {}),
  });
  const log = createLogger({ json: Boolean(values['log-json']), level: values.verbose ? 'debug' : undefined });

  // First signal: finish the current batch, commit, release the lease. Second signal: abort now.
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: string) => {
    signals += 1;
    if (signals === 1) {
      log.warn(`${name} received: finishing the current batch, then stopping. Send it again to abort at once.`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  try {
    return await command.run({
      values: parsed.values as Record<string, string | boolean | undefined>,
      positionals: parsed.positionals,
      config,
      log,
      json: Boolean(values.json),
      print: (line) => process.stdout.write(`${line}\n`),
      signal: controller.signal,
      pipelinesDir: path.resolve(typeof values['pipelines-dir'] === 'string' ? values['pipelines-dir'] : 'pipelines'),
    });
  } catch (error) {
    const code = exitCodeFor(error);
    const prefix = error instanceof UsageError ? '' : error instanceof FerryError ? `[${error.code}] ` : '';
    process.stderr.write(`${prefix}${describeError(error)}\n`);
    if (!(error instanceof FerryError) && values.verbose && error instanceof Error)
      process.stderr.write(`${error.stack}\n`);
    return code;
  }
}

const code = await main(process.argv.slice(2));
// Let stdout drain before exiting.
process.exitCode = code;
setImmediate(() => process.exit(code));
