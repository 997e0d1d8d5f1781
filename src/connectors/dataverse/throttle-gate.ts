import { FerryError } from '../../core/errors.js';

/**
 * One pause shared by every lane of a client: a 429 closes the gate for its `Retry-After`, and no lane sends
 * until it reopens. Service-protection limits are per user, so a lane that keeps sending while another waits only
 * lengthens the penalty (reference §4.1: "continuing to hammer extends the Retry-After duration").
 */
export class ThrottleGate {
  #until = 0;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Closes the gate for `ms` from now (never shortens a longer pause already in force). */
  pause(ms: number): void {
    this.#until = Math.max(this.#until, this.#now() + Math.max(0, ms));
  }

  /** Milliseconds until the gate opens; 0 when open. */
  remainingMs(): number {
    return Math.max(0, this.#until - this.#now());
  }

  /** Waits until the gate is open (re-checking, since another 429 may extend the pause meanwhile). */
  async wait(signal?: AbortSignal): Promise<void> {
    for (let left = this.remainingMs(); left > 0; left = this.remainingMs()) await sleep(left, signal);
  }
}

/** Sleeps `ms`; rejects with a retryable `FerryError` when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(interrupted());
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(interrupted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function interrupted(): FerryError {
  return new FerryError(
    'run.interrupted',
    'Stopped while waiting to send to Dataverse; the next run repeats the window.',
    { disposition: 'retry' },
  );
}
