import type { RunCounts } from '../core/counts.js';
import type { Progress } from '../core/stage.js';

/**
 * Live run progress: on a terminal one line redrawn in place (rows read / staged / converted / sent / rejected,
 * rate, ETA); elsewhere a plain line at most every few seconds.
 */
export function createProgress(
  pipeline: string,
  stream: NodeJS.WriteStream = process.stderr,
): Progress & { done(): void } {
  const started = Date.now();
  // Off a terminal, short runs print nothing here (the run's own line follows); long ones a line every 5 s.
  let last = stream.isTTY ? 0 : started;
  let drawn = false;
  const tty = Boolean(stream.isTTY);
  return {
    update(phase: string, counts: Readonly<RunCounts>) {
      const now = Date.now();
      if (now - last < (tty ? 200 : 5000)) return;
      last = now;
      const seconds = Math.max(0.001, (now - started) / 1000);
      const sent = counts.upserted + counts.skippedStale + counts.rejected;
      const rate = Math.round((counts.upserted || counts.staged) / seconds);
      const left = counts.converted > 0 && counts.upserted > 0 ? Math.max(0, counts.converted - counts.upserted) : 0;
      const eta = left > 0 && rate > 0 ? ` eta ${Math.ceil(left / rate)}s` : '';
      const line = `${pipeline} ${phase}: read ${counts.read} staged ${counts.staged} converted ${counts.converted} sent ${sent} upserted ${counts.upserted} rejected ${counts.rejected} (${rate} rows/s${eta})`;
      if (tty) {
        stream.write(`\r\x1b[2K${line}`);
        drawn = true;
      } else {
        stream.write(`${line}\n`);
      }
    },
    done() {
      if (tty && drawn) stream.write('\r\x1b[2K');
    },
  };
}
