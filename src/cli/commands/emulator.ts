import { EXIT, UsageError } from '../../core/errors.js';
import { type EmulatorOptions, startEmulator } from '../../emulator/server.js';
import {
  type CeilingBreakdown,
  ceilingBreakdown,
  WRITE_OPERATIONS,
  type WriteOperationKind,
} from '../../emulator/throttle-model.js';
import type { Command, CommandInput } from '../command.js';

function wholeNumber(input: CommandInput, flag: string, min: number): number | undefined {
  const raw = input.values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(n) || n < min) {
    throw new UsageError(
      `--${flag} \`${String(raw)}\` is not a whole number ≥ ${min}; pass e.g. --${flag} ${Math.max(min, 1)}.`,
    );
  }
  return n;
}

function positiveNumber(input: CommandInput, flag: string): number | undefined {
  const raw = input.values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !(n > 0))
    throw new UsageError(`--${flag} \`${String(raw)}\` must be a number above 0, e.g. --${flag} 60.`);
  return n;
}

/** The workload `--ceiling` reports on: `--operation` (default upsert), `--batch-size` (100), `--mode bulk|batch`. */
function ceilingOf(input: CommandInput, profile: string, timeScale: number | undefined): CeilingBreakdown {
  const operation = input.values.operation ?? 'upsert';
  if (typeof operation !== 'string' || !(WRITE_OPERATIONS as readonly string[]).includes(operation)) {
    throw new UsageError(
      `--operation \`${String(operation)}\` is not one of ${WRITE_OPERATIONS.join(', ')}; pass e.g. --operation upsert.`,
    );
  }
  const mode = input.values.mode ?? 'bulk';
  if (mode !== 'bulk' && mode !== 'batch') {
    throw new UsageError(
      `--mode \`${String(mode)}\` is not bulk (CreateMultiple/UpdateMultiple/UpsertMultiple) or batch (one operation per record); pass e.g. --mode bulk.`,
    );
  }
  return ceilingBreakdown(profile, {
    operation: operation as WriteOperationKind,
    batchSize: wholeNumber(input, 'batch-size', 1) ?? 100,
    bulk: mode === 'bulk',
    timeScale: timeScale ?? 1,
  });
}

function describeCeiling(c: CeilingBreakdown): string[] {
  const fmt = (n: number) => n.toFixed(1);
  return [
    `ceiling for profile ${c.profile} (${c.servers} web server${c.servers === 1 ? '' : 's'}), ${c.operation} in ${c.bulk ? 'bulk requests' : '$batch parts'} of ${c.batchSize}, time scale ${c.timeScale}: ${fmt(c.recordsPerSec)} records/s, bound by ${c.boundBy}`,
    `  t(b) = ${c.serverTimeSec.toFixed(3)} s of service time per request`,
    `  execution time ${fmt(c.byExecution)}, requests ${fmt(c.byRequests)}, concurrency ${fmt(c.byConcurrency)} records/s`,
    '  = servers · min(E/W · b/t(b), R/W · b, C · b/t(b)) · time scale (src/emulator/README.md)',
  ];
}

/**
 * `ferry emulator`: runs the Dataverse Web API emulator in the foreground until SIGINT/SIGTERM, printing
 * `Dataverse emulator listening on <url>` on stdout (the crash harness reads that line). With `--ceiling` it prints
 * the best sustainable records/s the profile's limits allow for a workload and exits.
 */
export const emulatorCommand: Command = {
  name: 'emulator',
  summary: 'run the built-in Dataverse Web API emulator in the foreground',
  usage:
    'emulator [--port N] [--metadata <dir>] [--store <file>] [--fail-every N] [--reset-every N] [--throttle-every N --retry-after S] [--profile default|trial|heavy-plugins [--time-scale N]] [--ceiling [--operation upsert|create|update] [--batch-size N] [--mode bulk|batch] [--json]]',
  options: {
    port: { type: 'string', valueName: '<n>', defaultText: '0 (any free port)', description: 'port to listen on' },
    host: { type: 'string', valueName: '<host>', defaultText: '127.0.0.1', description: 'address to listen on' },
    store: {
      type: 'string',
      valueName: '<file>',
      defaultText: 'in memory',
      description: 'keep the data in this JSON file',
    },
    'fail-every': {
      type: 'string',
      valueName: '<n>',
      defaultText: 'never',
      description: 'answer every n-th request with a 500',
    },
    'reset-every': {
      type: 'string',
      valueName: '<n>',
      defaultText: 'never',
      description: 'drop the connection of every n-th request',
    },
    'throttle-every': {
      type: 'string',
      valueName: '<n>',
      defaultText: 'never',
      description: 'answer every n-th request with a 429',
    },
    'retry-after': {
      type: 'string',
      valueName: '<seconds>',
      defaultText: '1',
      description: 'Retry-After of those 429s',
    },
    'per-record-delay-ms': {
      type: 'string',
      valueName: '<ms>',
      defaultText: '0',
      description: 'extra service time per record',
    },
    profile: {
      type: 'string',
      valueName: '<default|trial|heavy-plugins>',
      defaultText: 'none: no service-protection limits',
      description: 'service-protection limits and service time of a kind of environment',
    },
    'time-scale': {
      type: 'string',
      valueName: '<n>',
      defaultText: '1',
      description: 'run the profile’s clock n times faster',
    },
    ceiling: {
      type: 'boolean',
      description: 'print the best sustainable records/s of the profile for a workload and exit',
    },
    operation: {
      type: 'string',
      valueName: '<upsert|create|update>',
      defaultText: 'upsert',
      description: 'workload of --ceiling',
    },
    'batch-size': {
      type: 'string',
      valueName: '<n>',
      defaultText: '100',
      description: 'records per request for --ceiling',
    },
    mode: {
      type: 'string',
      valueName: '<bulk|batch>',
      defaultText: 'bulk',
      description: 'bulk messages or $batch parts for --ceiling',
    },
  },
  description:
    'Prints `Dataverse emulator listening on <url>` on stdout and serves the Web API until SIGINT/SIGTERM (the store is saved). Point other commands at it with --dataverse <url>.',
  examples: [
    {
      text: 'An emulator with the trial profile’s limits, 60 times faster:',
      command: 'ferry emulator --port 5555 --profile trial --time-scale 60',
    },
    {
      text: 'The ceiling of a workload:',
      command: 'ferry emulator --profile default --ceiling --operation upsert --batch-size 100',
    },
  ],
  async run(input) {
    const options: EmulatorOptions = {
      metadataDir: input.config.metadata,
      port: wholeNumber(input, 'port', 0) ?? 0,
      host: typeof input.values.host === 'string' ? input.values.host : '127.0.0.1',
      storeFile: typeof input.values.store === 'string' ? input.values.store : undefined,
      failEvery: wholeNumber(input, 'fail-every', 1),
      resetEvery: wholeNumber(input, 'reset-every', 1),
      throttleEvery: wholeNumber(input, 'throttle-every', 1),
      retryAfterSec: wholeNumber(input, 'retry-after', 0),
      perRecordDelayMs: wholeNumber(input, 'per-record-delay-ms', 0),
      profile: typeof input.values.profile === 'string' ? input.values.profile : undefined,
      timeScale: positiveNumber(input, 'time-scale'),
      log: input.log,
    };
    if (options.timeScale !== undefined && !options.profile) {
      throw new UsageError('--time-scale only applies with --profile; add e.g. --profile default.');
    }
    if (input.values.ceiling) {
      if (!options.profile) {
        throw new UsageError('--ceiling reports on a throttling profile; add e.g. --profile default.');
      }
      const ceiling = ceilingOf(input, options.profile, options.timeScale);
      if (input.json) input.print(JSON.stringify(ceiling));
      else for (const line of describeCeiling(ceiling)) input.print(line);
      return EXIT.ok;
    }
    const emulator = await startEmulator(options);
    input.print(`Dataverse emulator listening on ${emulator.url}`);
    if (options.profile) {
      const [summary] = describeCeiling(ceilingOf(input, options.profile, options.timeScale));
      input.log.info(summary!);
    }
    await new Promise<void>((resolve) => {
      if (input.signal.aborted) resolve();
      else input.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await emulator.close();
    input.log.info('Dataverse emulator stopped', options.storeFile ? { store: options.storeFile } : {});
    return EXIT.ok;
  },
};
