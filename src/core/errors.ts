import { type ErrorCode, errorCodeEntry } from './error-codes.js';

/** What the runner should do about an error: stop, try again later, or skip the item and go on. */
export const DISPOSITIONS = ['fatal', 'retry', 'skip'] as const;
export type Disposition = (typeof DISPOSITIONS)[number];

/** Exit codes schedulers can act on. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  rejectThresholdExceeded: 3,
  /** Nothing was done: every input of the run was held back, or the error's disposition is `skip`. */
  heldBack: 4,
  temporaryFailure: 75,
} as const;

/** The exit code of an error by its disposition (a usage or configuration error exits 2 instead of 1). */
export const EXIT_BY_DISPOSITION: Readonly<Record<Disposition, number>> = {
  fatal: EXIT.failed,
  retry: EXIT.temporaryFailure,
  skip: EXIT.heldBack,
};

export interface FerryErrorOptions {
  readonly cause?: unknown;
  /** Extra facts for the error store and `--json` output; never secrets. */
  readonly details?: Record<string, unknown>;
}

/**
 * The one root error of the toolkit: a stable `code` from the catalogue (`core/error-codes.ts`), the disposition the
 * catalogue gives that code, and a message that names the bad value and says what to do next. Drivers' errors are
 * mapped into it in one place per connector.
 */
export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly disposition: Disposition;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FerryError';
    this.code = code;
    this.disposition = errorCodeEntry(code).disposition;
    this.details = options.details ?? {};
  }
}

/** A usage or configuration mistake: exit code 2. */
export class UsageError extends FerryError {
  constructor(message: string, options: FerryErrorOptions = {}) {
    super('usage', message, options);
    this.name = 'UsageError';
  }
}

/** True when the error says "try again later" (network, throttling, a lease held by someone else). */
export function isRetryable(error: unknown): boolean {
  return error instanceof FerryError && error.disposition === 'retry';
}

/** Maps any thrown value to the CLI exit code, by its code's entry in the catalogue. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof FerryError)) return EXIT.failed;
  if (errorCodeEntry(error.code).exit === 'usage') return EXIT.usage;
  return EXIT_BY_DISPOSITION[error.disposition];
}

/** Short text of any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
