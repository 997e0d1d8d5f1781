import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { OutboundSandbox } from './helpers.js';

const WINDOW = '2026-01-01T00.15.00Z_2026-01-01T00.45.00Z';

function runChild(
  dir: string,
  killAt?: string,
): { status: number | null; signal: NodeJS.Signals | null; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.resolve('test/outbound/crash-run.ts'), dir], {
    env: { ...process.env, FERRY_KILL_AT: killAt ?? '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout };
}

describe('outbound crash safety: a killed write never shows a window as complete', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', 'synapse-link/demo');
    box.state.close();
  });
  afterEach(() => fs.rmSync(box.dir, { recursive: true, force: true }));

  for (const point of ['write-parquet:before-rename', 'write-parquet:before-manifest']) {
    it(`killed at ${point}: no manifest, and the next run completes the same window`, async () => {
      const killed = runChild(box.dir, point);
      assert.equal(killed.signal, 'SIGKILL');
      const windowDir = box.warehouse('account', WINDOW);
      assert.equal(fs.existsSync(path.join(windowDir, '_manifest.json')), false);
      // Let the dead run's lease (1 s) expire, then run again.
      await new Promise((r) => setTimeout(r, 1100));
      const again = runChild(box.dir);
      assert.equal(again.status, 0, again.stdout);
      assert.deepEqual(JSON.parse(again.stdout.trim().split('\n').at(-1)!), {
        status: 'succeeded',
        items: 3,
        cursorAfter: '2026-01-01T00.45.00Z',
      });
      assert.deepEqual(fs.readdirSync(windowDir).sort(), ['_manifest.json', 'part-00000.parquet']);
      assert.deepEqual(
        fs.readdirSync(box.warehouse('account')).sort(),
        [WINDOW, '_current.json'].sort(),
        'no temp folder left behind',
      );
    });
  }
});
