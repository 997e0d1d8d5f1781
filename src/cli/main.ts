import path from 'node:path';
import { resolveConfig } from '../core/config.js';
import { describeError, exitCodeFor, FerryError, UsageError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import type { Command, CommandInput } from './command.js';
import { COMMANDS, type CommandEntry, loadCommand } from './commands/index.js';
import { type ParsedCommand, parseCommandLine } from './parse.js';
import { writeAbove } from './progress.js';
import { loadProjectSettings } from './project.js';

/**
 * The CLI's entry: parses with commander (help, `--version`, "did you mean", parse errors in plain words), loads
 * the project's configuration, runs the command and returns its exit code. The only place that exits the process.
 */
export async function main(argv: readonly string[], entries: readonly CommandEntry[] = COMMANDS): Promise<number> {
  const stdout = guardStdout();
  // Only the command the line names is imported (for its options and help); the others are listed by their entry.
  const named = entryNamedBy(argv, entries);
  const loaded = named ? await loadCommand(named) : undefined;
  const commands = entries.map((entry) => (entry === named && loaded ? loaded : outlineOf(entry)));
  const parsed = parseCommandLine(argv, commands, {
    writeOut: (text) => stdout.write(text),
    writeErr: (text) => process.stderr.write(text),
  });
  if ('exitCode' in parsed) return parsed.exitCode;
  return runParsed(parsed, stdout);
}

async function runParsed(parsed: ParsedCommand, stdout: GuardedStdout): Promise<number> {
  const { command, values } = parsed;
  const log = createLogger({
    json: Boolean(values['log-json']),
    level: values.verbose ? 'debug' : undefined,
    write: (line) => writeAbove(process.stderr, line),
  });

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
  // The reader of stdout went away (`ferry runs | head -3`): stop printing and wind down like on a first signal.
  stdout.onClosed(() => controller.abort());

  try {
    const cwd = process.cwd();
    // `doctor` and `init` load the project settings themselves (doctor reports a bad configuration as a check).
    const settings = command.loadsSettings
      ? { config: resolveConfig({}, {}), pipelinesDir: path.resolve('pipelines'), project: undefined }
      : await loadProjectSettings(values, log);
    // Paths typed on the command line are relative to where ferry was started; then ferry works from the project
    // root, where the pipelines' own relative paths (extract queries, synapse/) point.
    const resolvedValues = resolvePathFlags(command, values, cwd);
    if (settings.project) process.chdir(settings.project.root);
    return await command.run({
      values: resolvedValues,
      cwd,
      positionals: parsed.positionals,
      config: settings.config,
      log,
      json: Boolean(values.json),
      print: (line) => stdout.write(`${line}\n`),
      signal: controller.signal,
      pipelinesDir: settings.pipelinesDir,
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

/** The entry whose words start the command line (after `help`), the longest when two match (`emulator service-bus`). */
function entryNamedBy(argv: readonly string[], entries: readonly CommandEntry[]): CommandEntry | undefined {
  const words = argv[0] === 'help' ? argv.slice(1) : argv;
  let best: CommandEntry | undefined;
  for (const entry of entries) {
    const name = entry.name.split(' ');
    if (name.every((word, i) => words[i] === word) && name.length > (best?.name.split(' ').length ?? 0)) best = entry;
  }
  return best;
}

/** A command as the help of the program and of its groups shows it, without importing its module. */
function outlineOf(entry: CommandEntry): Command {
  return {
    name: entry.name,
    summary: entry.summary,
    usage: entry.usage,
    run: async () => {
      throw new Error(`command \`${entry.name}\` was not loaded`);
    },
  };
}

/** Flags whose value is a file or folder (`<dir>`, `<file>`), made absolute against the folder ferry started in. */
function resolvePathFlags(command: Command, values: CommandInput['values'], cwd: string): CommandInput['values'] {
  const out: Record<string, CommandInput['values'][string]> = { ...values };
  for (const [name, spec] of Object.entries(command.options ?? {})) {
    const value = out[name];
    if (
      typeof value === 'string' &&
      /^<(dir|file)>$/.test(spec.valueName ?? '') &&
      !/^[a-z][a-z0-9+.-]*:\/\//i.test(value)
    )
      out[name] = path.resolve(cwd, value);
  }
  return out;
}

interface GuardedStdout {
  write(text: string): void;
  onClosed(listener: () => void): void;
}

/**
 * Stdout that survives its reader going away: an `EPIPE` (output piped into `head`) stops further output instead of
 * crashing the process with an unhandled error.
 */
function guardStdout(): GuardedStdout {
  let closed = false;
  const listeners: Array<() => void> = [];
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    if (closed) return;
    closed = true;
    for (const l of listeners) l();
  });
  return {
    write(text) {
      if (closed) return;
      if (text.endsWith('\n')) writeAbove(process.stdout, text.slice(0, -1));
      else process.stdout.write(text);
    },
    onClosed(listener) {
      listeners.push(listener);
    },
  };
}

const code = await main(process.argv.slice(2));
// Let stdout drain before exiting.
process.exitCode = code;
setImmediate(() => process.exit(code));
