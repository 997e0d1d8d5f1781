import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/core/config.js';
import { FerryError } from '../../src/core/errors.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';

describe('staging memory', () => {
  it('running out of memory says so and names FERRY_STAGING_MEMORY, not the query', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-oom-'));
    // No spill folder to fall back on, so a big aggregate must fail with DuckDB's out-of-memory error.
    const db = await DuckDbStaging.open({ memoryLimit: '16MB', threads: 1 });
    try {
      await assert.rejects(
        db.run(
          `CREATE TABLE t AS SELECT i % 500000 AS g, i::VARCHAR AS v, repeat('x', 50) AS w FROM range(1000000) r(i);
           CREATE TABLE u AS SELECT g, arg_max(rowid, (v, w)) FROM t GROUP BY g`,
        ),
        (error: unknown) => {
          assert.ok(error instanceof FerryError);
          assert.equal(error.code, 'staging.out_of_memory', error.message.slice(0, 300));
          assert.match(error.message, /ran out of memory .*Raise its limit with `FERRY_STAGING_MEMORY`/s);
          return true;
        },
      );
    } finally {
      await db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a per-run database file and its spill folder are deleted on close', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-stagefile-'));
    const file = path.join(dir, 'staging.duckdb');
    const spill = path.join(dir, 'spill');
    const db = await DuckDbStaging.open({ path: file, memoryLimit: '64MB', tempDirectory: spill, deleteOnClose: true });
    await db.run('CREATE TABLE t AS SELECT * FROM range(1000)');
    assert.ok(fs.existsSync(file));
    await db.close();
    assert.deepEqual(fs.readdirSync(dir), []);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the limit comes from FERRY_STAGING_MEMORY or the config, and must be a size', () => {
    assert.equal(resolveConfig({}, {}).stagingMemory, '512MB');
    assert.equal(resolveConfig({}, { FERRY_STAGING_MEMORY: '2GB' }).stagingMemory, '2GB');
    assert.equal(resolveConfig({ stagingMemory: '768MiB' }, { FERRY_STAGING_MEMORY: '2GB' }).stagingMemory, '768MiB');
    assert.throws(
      () => resolveConfig({}, { FERRY_STAGING_MEMORY: 'lots' }),
      /Staging memory `lots`.*use e\.g\. `512MB`/,
    );
  });
});
