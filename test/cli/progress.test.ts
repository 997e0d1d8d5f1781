import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProgress, writeAbove } from '../../src/cli/progress.js';
import { emptyCounts } from '../../src/core/counts.js';

/** A terminal that records what is written to it. */
function terminal(): NodeJS.WriteStream & { text: string } {
  const t = {
    isTTY: true,
    columns: 60,
    text: '',
    write(chunk: string) {
      t.text += chunk;
      return true;
    },
  };
  return t as unknown as NodeJS.WriteStream & { text: string };
}

/** What a terminal shows: `\r` returns to the line start, `\x1b[2K` clears the line. */
function screen(raw: string): string[] {
  const lines: string[] = [''];
  const clear = '\x1b[2K';
  for (const part of raw.split(new RegExp(`(\r|${clear.replace('[', '\\[')}|\n)`))) {
    if (part === '\r' || part === '') continue;
    if (part === clear) lines[lines.length - 1] = '';
    else if (part === '\n') lines.push('');
    else lines[lines.length - 1] += part;
  }
  return lines;
}

test('a log line written during a run lands on its own line, and the progress line is drawn again below it', () => {
  const tty = terminal();
  const progress = createProgress('accounts-inbound', tty);
  progress.update('staging', { ...emptyCounts(), read: 10, staged: 10 });
  writeAbove(tty, 'WARN Delta file `x.parquet` has unmapped column(s) `legacy_flag`; ignored.');
  const shown = screen(tty.text);
  assert.equal(shown[0], 'WARN Delta file `x.parquet` has unmapped column(s) `legacy_flag`; ignored.');
  assert.match(shown[1]!, /^accounts-inbound staging: read 10 staged 10/);
  assert.ok(shown[1]!.length < 60, 'never wider than the terminal, so \\r can clear it');
  progress.done();
  writeAbove(tty, 'accounts-inbound: succeeded');
  assert.deepEqual(screen(tty.text).slice(1), ['accounts-inbound: succeeded', '']);
});
