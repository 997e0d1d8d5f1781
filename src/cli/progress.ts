import type { RunCounts } from '../core/counts.js';
import type { Progress } from '../core/stage.js';

/**
 * The one live line at the bottom of a terminal. Log and result lines go through `writeAbove`, which clears the
 * live line, writes theirs and draws it again, so they never collide.
 */
const live = { stream: undefined as NodeJS.WriteStream | undefined, text: '' };

/** Writes one full line (log or result) above the live progress line, if one is drawn. */
export function writeAbove(target: NodeJS.WriteStream, line: string): void {
  const redraw = live.text && live.stream?.isTTY ? live.stream : undefined;
  if (redraw) redraw.write('\r\x1b[2K');
  target.write(`${line}\n`);
  if (redraw) redraw.write(live.text);
}

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
        // Never wider than the terminal: a wrapped line could not be cleared with one \r.
        const text = stream.columns ? line.slice(0, stream.columns - 1) : line;
        stream.write(`\r\x1b[2K${text}`);
        live.stream = stream;
        live.text = text;
      } else {
        stream.write(`${line}\n`);
      }
    },
    done() {
      if (tty && live.text) stream.write('\r\x1b[2K');
      live.text = '';
      live.stream = undefined;
    },
  };
}
