import fs from 'node:fs';
import { Command as Commander, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EXIT } from '../core/errors.js';
import { parseDuration } from '../core/pipeline.js';
import type { Command, CommandInput, OptionSpec } from './command.js';

/** Flags every command accepts. Their environment variables are read by the configuration (`src/core/config.ts`). */
export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  target: {
    type: 'string',
    valueName: '<name>',
    env: 'FERRY_TARGET',
    defaultText: 'the defaultTarget of ferry.config.json',
    description: 'named target of the configuration file (Dataverse URL, identities, lake, state…)',
  },
  config: {
    type: 'string',
    valueName: '<file>',
    env: 'FERRY_CONFIG',
    defaultText: 'ferry.config.json in the project root',
    description: 'configuration file with named targets',
  },
  dataverse: {
    type: 'string',
    valueName: '<url>',
    env: 'FERRY_DATAVERSE_URL',
    defaultText: "the target's dataverse; runs need one, or --emulator",
    description: 'Dataverse environment to read and write, e.g. https://contoso.crm.dynamics.com',
  },
  emulator: {
    type: 'boolean',
    description: 'use the built-in Dataverse emulator, started in-process (its store in <state>/emulator)',
  },
  lake: {
    type: 'string',
    valueName: '<dir|url>',
    env: 'FERRY_LAKE',
    defaultText: '<project>/lake',
    description: 'lake root: a folder, or abfss://<container>@<account>.dfs.core.windows.net/<path>',
  },
  state: {
    type: 'string',
    valueName: '<dir>',
    env: 'FERRY_STATE',
    defaultText: '<project>/.ferry',
    description: 'state folder: SQLite state store, run folders, the emulator store',
  },
  metadata: {
    type: 'string',
    valueName: '<dir>',
    env: 'FERRY_METADATA',
    defaultText: '<project>/fixtures/metadata',
    description: 'Dataverse metadata snapshots (ferry metadata pull)',
  },
  warehouse: {
    type: 'string',
    valueName: '<dir|url>',
    env: 'FERRY_WAREHOUSE',
    defaultText: '<lake>/warehouse',
    description: 'where outbound pipelines write Parquet',
  },
  'pipelines-dir': {
    type: 'string',
    valueName: '<dir>',
    env: 'FERRY_PIPELINES',
    defaultText: '<project>/pipelines',
    description: 'folder of pipeline definitions',
  },
  json: { type: 'boolean', default: false, description: 'print machine-readable results (one JSON object a line)' },
  'log-json': { type: 'boolean', default: false, description: 'write log lines to stderr as JSON' },
  verbose: { type: 'boolean', default: false, description: 'debug log lines, and stack traces of unexpected errors' },
};

/** Descriptions of the two-word command groups (`ferry metadata --help`). */
const GROUPS: Record<string, string> = {
  metadata: 'Dataverse table metadata snapshots',
  export: 'generate artifacts from the pipeline definitions',
  deploy: 'deploy generated artifacts',
  plan: 'plan ahead from measured runs',
  queue: 'send, peek and dead-letter change messages of a session queue',
  synapse: 'the exported Synapse artifacts on the local runtime',
};

const EXIT_CODES = [
  'Exit codes:',
  '  0   ok',
  '  1   failed',
  '  2   usage or configuration error (a bad flag, a missing lake folder, a credential that cannot sign in)',
  '  3   finished, but the reject threshold was exceeded',
  '  4   nothing done: every input of the run was held back (see ferry rejects --run <id>)',
  '  75  temporary failure: try again later',
].join('\n');

export interface ParsedCommand {
  readonly command: Command;
  readonly values: CommandInput['values'];
  readonly positionals: readonly string[];
  /** The flags given on the command line (the others hold defaults). */
  readonly given: ReadonlySet<string>;
}

export interface ParseOutput {
  writeOut(text: string): void;
  writeErr(text: string): void;
}

/**
 * Parses `argv` against the commands' descriptors. Returns the command to run with its values (flags by their
 * kebab-case names, absent flags from their environment variable), or the exit code when help, the version or a
 * parse error was printed.
 */
export function parseCommandLine(
  argv: readonly string[],
  commands: readonly Command[],
  output: ParseOutput,
  env: NodeJS.ProcessEnv = process.env,
): ParsedCommand | { exitCode: number } {
  let selected: ParsedCommand | undefined;
  const program = buildProgram(commands, output, (picked) => {
    selected = picked;
  });
  // `ferry help <command...>` is `ferry <command...> --help`, so two-word commands get their own help too.
  // An unknown name is passed on without --help, so it gets commander's "unknown command" and its suggestion.
  const known = new Set(commands.map((c) => c.name.split(' ')[0]));
  const args =
    argv[0] === 'help'
      ? argv.length === 1
        ? ['--help']
        : known.has(argv[1]!)
          ? [...argv.slice(1), '--help']
          : argv.slice(1)
      : [...argv];
  try {
    program.parse(args, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return { exitCode: EXIT.ok };
      return { exitCode: EXIT.usage };
    }
    throw error;
  }
  if (!selected) return { exitCode: EXIT.usage };
  const values: Record<string, CommandInput['values'][string]> = { ...selected.values };
  const specs = { ...GLOBAL_OPTIONS, ...selected.command.options };
  for (const [name, spec] of Object.entries(specs)) {
    if (selected.given.has(name)) continue;
    if (!spec.env || GLOBAL_OPTIONS[name]) continue; // globals' variables are read by the configuration
    const fromEnv = env[spec.env];
    if (fromEnv === undefined || fromEnv === '') continue;
    const problem = spec.check ? checkValue(spec.check, fromEnv) : undefined;
    if (problem) {
      output.writeErr(
        `error: environment variable ${spec.env} (for --${name}) is \`${fromEnv}\`: ${problem}\n(Run \`ferry help ${selected.command.name}\` for its options.)\n`,
      );
      return { exitCode: EXIT.usage };
    }
    values[name] = spec.type === 'boolean' ? fromEnv === '1' || fromEnv.toLowerCase() === 'true' : fromEnv;
  }
  return { ...selected, values };
}

function buildProgram(
  commands: readonly Command[],
  output: ParseOutput,
  onSelect: (picked: ParsedCommand) => void,
): Commander {
  const program = new Commander('ferry')
    .description(
      'Moves data both ways between legacy CRM systems and Dynamics 365 (Dataverse): Parquet deltas → bulk Upsert, Synapse Link exports → warehouse Parquet.',
    )
    .usage('<command> [options]')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command...]', 'show help for a command')
    .showSuggestionAfterError(true)
    .configureHelp({ sortSubcommands: false, helpWidth: 120 })
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr })
    .exitOverride();
  program.addHelpText(
    'after',
    [
      '',
      'Run `ferry help <command>` for its options, defaults, environment variables and examples.',
      'Configuration: flags, then environment variables, then the chosen target of ferry.config.json, then defaults',
      '(relative to the project root: the nearest folder up with ferry.config.json, or package.json and pipelines/).',
      '',
      EXIT_CODES,
    ].join('\n'),
  );
  for (const command of commands) {
    const words = command.name.split(' ');
    let parent = program;
    for (const word of words.slice(0, -1)) {
      parent =
        parent.commands.find((c) => c.name() === word) ??
        parent
          .command(word)
          .description(GROUPS[word] ?? `${word} commands`)
          .usage('<command> [options]')
          .helpCommand(false)
          .configureHelp({ helpWidth: 120 });
    }
    const leaf = parent.command(words.at(-1)!);
    leaf
      .summary(command.summary)
      .description(command.description ? `${command.summary}\n\n${command.description}` : command.summary)
      .usage(command.usage.slice(command.name.length).trim() || '[options]')
      .showHelpAfterError(`(Run \`ferry help ${command.name}\` for its options and examples.)`)
      .configureHelp({ helpWidth: 120 });
    for (const arg of positionalsOf(command)) leaf.argument(arg);
    // Arguments after options (`queue send <queue> --session <id> <file>`) reach the command, which checks them.
    leaf.allowExcessArguments(true);
    const attributes = new Map<string, string>();
    const add = (name: string, spec: OptionSpec, group: string) => {
      const option = toOption(name, spec).helpGroup(group);
      attributes.set(option.attributeName(), name);
      leaf.addOption(option);
    };
    for (const [name, spec] of Object.entries(command.options ?? {})) add(name, spec, 'Options:');
    for (const [name, spec] of Object.entries(GLOBAL_OPTIONS)) {
      if (!command.options?.[name]) add(name, spec, 'Global options:');
    }
    if (command.examples?.length) {
      leaf.addHelpText(
        'after',
        ['', 'Examples:', ...command.examples.flatMap((e) => [`  ${e.text}`, `    ${e.command}`])].join('\n'),
      );
    }
    leaf.action(() => {
      const values: Record<string, CommandInput['values'][string]> = {};
      const given = new Set<string>();
      for (const [attribute, value] of Object.entries(leaf.opts())) {
        const name = attributes.get(attribute);
        if (!name) continue;
        const fromCli = leaf.getOptionValueSource(attribute) === 'cli';
        // commander reads `--no-x` as "x off"; the descriptor means a flag of its own named `no-x`.
        values[name] = (name.startsWith('no-') ? fromCli : value) as CommandInput['values'][string];
        if (fromCli) given.add(name);
      }
      for (const [name, spec] of [...Object.entries(GLOBAL_OPTIONS), ...Object.entries(command.options ?? {})]) {
        if (values[name] === undefined && spec.default !== undefined) values[name] = spec.default;
      }
      onSelect({ command, values, positionals: [...leaf.args], given });
    });
  }
  return program;
}

/** `run <pipeline> [--json]` → `<pipeline>`: the arguments between the command's words and its first option. */
function positionalsOf(command: Command): string[] {
  const tokens = command.usage.slice(command.name.length).trim().split(/\s+/).filter(Boolean);
  const out: string[] = [];
  for (const token of tokens) {
    if (/^<[^>]+>(\.\.\.)?$/.test(token) || /^\[[^-[\]][^\]]*\](\.\.\.)?$/.test(token)) out.push(token);
    else break;
  }
  return out;
}

function toOption(name: string, spec: OptionSpec): Option {
  const short = spec.short ? `-${spec.short}, ` : '';
  const flags = spec.type === 'boolean' ? `${short}--${name}` : `${short}--${name} ${spec.valueName ?? '<value>'}`;
  const notes = [
    spec.defaultText
      ? `default: ${spec.defaultText}`
      : spec.default !== undefined && spec.type === 'string'
        ? `default: ${String(spec.default)}`
        : '',
    spec.env ? `env: ${spec.env}` : '',
    spec.multiple ? 'repeatable' : '',
  ].filter(Boolean);
  const option = new Option(flags, `${spec.description ?? ''}${notes.length ? ` (${notes.join('; ')})` : ''}`.trim());
  // Defaults are filled in after parsing (see `buildProgram`), so help shows them once, in the description.
  if (spec.type === 'string') {
    option.argParser((value: string, previous: unknown) => {
      const problem = spec.check ? checkValue(spec.check, value) : undefined;
      if (problem) throw new InvalidArgumentError(problem);
      if (!spec.multiple) return value;
      return [...(Array.isArray(previous) && previous !== spec.default ? previous : []), value];
    });
  }
  return option;
}

/** What is wrong with a flag's value, in words, or undefined when it is fine. */
export function checkValue(check: NonNullable<OptionSpec['check']>, value: string): string | undefined {
  switch (check) {
    case 'whole-number':
      return /^\d+$/.test(value.trim()) ? undefined : `\`${value}\` is not a whole number (e.g. 20).`;
    case 'positive-number': {
      const n = Number(value);
      return value.trim() !== '' && Number.isFinite(n) && n > 0
        ? undefined
        : `\`${value}\` is not a number above 0 (e.g. 15).`;
    }
    case 'duration':
      try {
        parseDuration(value);
        return undefined;
      } catch {
        return `\`${value}\` is not a duration such as 30s, 15m, 1h or 1d.`;
      }
  }
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Splits `a,b` flags into names. */
export function listFlag(value: unknown): string[] | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
