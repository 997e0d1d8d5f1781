import type { FerryConfig } from '../core/config.js';
import type { Logger } from '../core/log.js';

/** What every command gets: parsed flags, the resolved config, a logger and where to print results. */
export interface CommandInput {
  readonly values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  readonly positionals: readonly string[];
  readonly config: FerryConfig;
  readonly log: Logger;
  /** `--json`: print machine-readable results on stdout. */
  readonly json: boolean;
  /** Prints one line of results on stdout. */
  readonly print: (line: string) => void;
  /** Aborted on the first SIGINT/SIGTERM (and when stdout's reader went away, e.g. `| head`). */
  readonly signal: AbortSignal;
  readonly pipelinesDir: string;
  /** The folder ferry was started in (the CLI then works from the project root). */
  readonly cwd?: string;
}

/**
 * One flag of a command. `type`, `short`, `multiple` and `default` are what `node:util` `parseArgs` took, so older
 * descriptors still fit; the rest feeds `--help` (and `env`/`check` are applied while parsing).
 */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  readonly default?: string | boolean | string[] | boolean[];
  /** One line for `--help`. */
  readonly description?: string;
  /** The value's placeholder in help, e.g. `<time>`. Default `<value>`. */
  readonly valueName?: string;
  /** The default as help shows it when it is not `default` (computed, or applied by the command). */
  readonly defaultText?: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  /** Checked while parsing, so a bad value is a usage error in plain words (the value stays a string). */
  readonly check?: 'whole-number' | 'positive-number' | 'duration';
}

/** An example for `--help`: what it does, then the command line. */
export interface CommandExample {
  readonly text: string;
  readonly command: string;
}

/**
 * A CLI command: one file under `src/cli/commands/`, one line in `src/cli/commands/index.ts`.
 * `run` returns the exit code; only `src/cli/main.ts` calls `process.exit`.
 */
export interface Command {
  /** One or two words: `run`, `metadata pull`, `export synapse`. */
  readonly name: string;
  readonly summary: string;
  /** Usage line after `ferry `, e.g. `run <pipeline> [--json]`. Positional arguments are read from it. */
  readonly usage: string;
  readonly options?: Readonly<Record<string, OptionSpec>>;
  /** A paragraph or two for `ferry help <command>`. */
  readonly description?: string;
  readonly examples?: readonly CommandExample[];
  /** The command loads the project settings itself (`doctor` reports configuration problems as checks). */
  readonly loadsSettings?: boolean;
  run(input: CommandInput): Promise<number>;
}
