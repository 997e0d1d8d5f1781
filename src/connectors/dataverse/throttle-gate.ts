import { FerryError } from '../../core/errors.js';

/**
 * One pause shared by every lane of a client: a 429 closes the gate for its `Retry-After`, and no lane sends
 * until it reopens. Service-protection limits are per user, so a lane that keeps sending while another waits only
 * lengthens the penalty (reference §4.1: "continuing to hammer extends the Retry-After duration").
 */
export class ThrottleGate {
  #until = 0;
  /** After a pause, one request goes first; the others wait for its answer instead of all hitting the server. */
  #halfOpen = false;
  #probing = false;
  #waiters: Array<() => void> = [];
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Closes the gate for `ms` from now (never shortens a longer pause already in force). */
  pause(ms: number): void {
    this.#until = Math.max(this.#until, this.#now() + Math.max(0, ms));
    this.#halfOpen = true;
    this.#probing = false;
    this.#wake();
  }

  /** Says a request got an answer other than 429: the gate opens for everyone. */
  open(): void {
    if (!this.#halfOpen) return;
    this.#halfOpen = false;
    this.#probing = false;
    this.#wake();
  }

  /** Milliseconds until the gate opens; 0 when open. */
  remainingMs(): number {
    return Math.max(0, this.#until - this.#now());
  }

  /**
   * Waits until this caller may send: after the pause, the first caller goes alone; the rest follow once it was
   * answered (re-checking, since another 429 may extend the pause meanwhile).
   */
  async wait(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const left = this.remainingMs();
      if (left > 0) {
        await sleep(left, signal);
        continue;
      }
      if (!this.#halfOpen) return;
      if (!this.#probing) {
        this.#probing = true;
        return;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
      if (signal?.aborted) await sleep(0, signal);
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
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
  );
}
