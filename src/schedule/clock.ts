/**
 * Time as the scheduler sees it. Injectable so tests can run many ticks without waiting: a test clock can make
 * `sleep` advance virtual time instantly.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` (or at once when `signal` aborts; it never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The wall clock: `Date.now()` and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || ms <= 0) {
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  },
};
