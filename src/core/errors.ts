/** What the runner should do about an error: stop, try again later, or skip the item and go on. */
export const DISPOSITIONS = ['fatal', 'retry', 'skip'] as const;
export type Disposition = (typeof DISPOSITIONS)[number];

/** Exit codes schedulers can act on. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  rejectThresholdExceeded: 3,
  /** The run did nothing: every input was held back. */
  heldBack: 4,
  temporaryFailure: 75,
} as const;

export interface FerryErrorOptions {
  readonly disposition?: Disposition;
  readonly cause?: unknown;
  /** Extra facts for the error store and `--json` output; never secrets. */
  readonly details?: Record<string, unknown>;
}

/**
 * The one root error of the toolkit: a stable `code`, a `disposition` and a message that names the bad value
 * and says what to do next. Drivers' errors are mapped into it in one place per connector.
 */
export class FerryError extends Error {
  readonly code: string;
  readonly disposition: Disposition;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FerryError';
    this.code = code;
    this.disposition = options.disposition ?? 'fatal';
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

/** Maps any thrown value to the CLI exit code. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (isRetryable(error)) return EXIT.temporaryFailure;
  return EXIT.failed;
}

/** Short text of any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
