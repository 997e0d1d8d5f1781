import { type Ticks, ticksFromMs } from './expression/date-time.js';

/**
 * The runtime's time: `now()` for `utcNow()`, run and trigger times; `sleep()` for Wait, retry intervals and
 * timeouts; `busy()` around real work (SQL, files, HTTP) so a virtual clock does not jump while it runs.
 */
export interface RuntimeClock {
  now(): Ticks;
  nowMs(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  busy<T>(work: () => Promise<T>): Promise<T>;
}

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly resolve: () => void;
}

/**
 * Simulated time (discrete events): `sleep(ms)` registers a timer; when no real work is in flight (`busy` count 0)
 * and the event loop has settled, the clock jumps to the earliest timer and wakes it. A 7-day activity timeout or a
 * 60 s retry interval therefore costs no wall time, and parallel branches wait in simulated parallel.
 */
export class VirtualClock implements RuntimeClock {
  #nowMs: number;
  #timers: Timer[] = [];
  #busy = 0;
  #seq = 0;
  #pumpScheduled = false;

  constructor(startMs: number) {
    this.#nowMs = startMs;
  }

  now(): Ticks {
    return ticksFromMs(this.#nowMs);
  }

  nowMs(): number {
    return this.#nowMs;
  }

  /** Moves time forward to `ms` (never backwards), waking timers due by then. */
  advanceTo(ms: number): void {
    if (ms > this.#nowMs) this.#nowMs = ms;
    this.#wakeDue();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer: Timer = { at: this.#nowMs + Math.max(0, ms), seq: this.#seq++, resolve };
      this.#timers.push(timer);
      signal?.addEventListener('abort', () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        resolve();
      });
      this.#schedulePump();
    });
  }

  async busy<T>(work: () => Promise<T>): Promise<T> {
    this.#busy++;
    try {
      return await work();
    } finally {
      this.#busy--;
      this.#schedulePump();
    }
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    // Two macrotask turns let promise chains that start new work (and mark it busy) run first.
    setImmediate(() =>
      setImmediate(() => {
        this.#pumpScheduled = false;
        if (this.#busy > 0 || this.#timers.length === 0) return;
        const earliest = this.#timers.reduce((a, b) => (a.at < b.at || (a.at === b.at && a.seq < b.seq) ? a : b));
        if (earliest.at > this.#nowMs) this.#nowMs = earliest.at;
        this.#wakeDue();
      }),
    );
  }

  #wakeDue(): void {
    const due = this.#timers.filter((t) => t.at <= this.#nowMs).sort((a, b) => a.at - b.at || a.seq - b.seq);
    if (due.length === 0) return;
    this.#timers = this.#timers.filter((t) => t.at > this.#nowMs);
    for (const t of due) t.resolve();
    if (this.#timers.length) this.#schedulePump();
  }
}
