import { EXIT, UsageError } from '../../core/errors.js';
import { type EmulatorOptions, startEmulator } from '../../emulator/server.js';
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

/**
 * `ferry emulator`: runs the Dataverse Web API emulator in the foreground until SIGINT/SIGTERM, printing
 * `Dataverse emulator listening on <url>` on stdout (the crash harness reads that line).
 */
export const emulatorCommand: Command = {
  name: 'emulator',
  summary: 'run the built-in Dataverse Web API emulator in the foreground',
  usage:
    'emulator [--port N] [--metadata <dir>] [--store <file>] [--fail-every N] [--throttle-every N --retry-after S]',
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    store: { type: 'string' },
    'fail-every': { type: 'string' },
    'reset-every': { type: 'string' },
    'throttle-every': { type: 'string' },
    'retry-after': { type: 'string' },
    'per-record-delay-ms': { type: 'string' },
    profile: { type: 'string' },
    'time-scale': { type: 'string' },
  },
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
    const emulator = await startEmulator(options);
    input.print(`Dataverse emulator listening on ${emulator.url}`);
    await new Promise<void>((resolve) => {
      if (input.signal.aborted) resolve();
      else input.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await emulator.close();
    input.log.info('Dataverse emulator stopped', options.storeFile ? { store: options.storeFile } : {});
    return EXIT.ok;
  },
};
