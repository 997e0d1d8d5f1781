import type { ParseArgsConfig } from 'node:util';
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
  /** Aborted on the first SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  readonly pipelinesDir: string;
}

/**
 * A CLI command: one file under `src/cli/commands/`, one line in `src/cli/commands/index.ts`.
 * `run` returns the exit code; only `src/cli/main.ts` calls `process.exit`.
 */
export interface Command {
  /** One or two words: `run`, `metadata pull`, `export synapse`. */
  readonly name: string;
  readonly summary: string;
  /** Usage line after `ferry `, e.g. `run <pipeline> [--json]`. */
  readonly usage: string;
  readonly options?: ParseArgsConfig['options'];
  run(input: CommandInput): Promise<number>;
}
