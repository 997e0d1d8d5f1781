import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { defaultExtractSql } from '../../src/dialects/duckdb/extract.js';

describe('default extract: latest state per Id', () => {
  let db: DuckDbStaging;
  before(async () => {
    db = await DuckDbStaging.open();
    await db.run(`SET TimeZone = 'UTC'`);
    await db.run(
      `CREATE TABLE t ("Id" VARCHAR, "SinkModifiedOn" TIMESTAMPTZ, "name" VARCHAR, "versionnumber" BIGINT, "IsDelete" BOOLEAN, __file_id USMALLINT, __bad VARCHAR)`,
    );
    await db.run(`INSERT INTO t VALUES
      ('a', '2026-01-01 00:01:00+00', 'a v1', 1, NULL, 0, NULL),
      ('a', '2026-01-01 00:02:00+00', 'a v3', 3, NULL, 0, NULL),
      ('a', '2026-01-01 00:03:00+00', 'a v2 late', 2, NULL, 1, NULL),
      ('b', '2026-01-01 00:01:00+00', 'b first copy', 5, NULL, 0, NULL),
      ('b', '2026-01-01 00:04:00+00', 'b retried copy', 5, NULL, 0, NULL),
      ('c', '2026-01-01 00:01:00+00', 'c', 7, NULL, 0, NULL),
      ('c', '2026-01-01 00:05:00+00', NULL, NULL, true, 1, NULL),
      ('d', '2026-01-01 00:01:00+00', 'd same', 9, NULL, 0, NULL),
      ('d', '2026-01-01 00:01:00+00', 'd same, later file', 9, NULL, 1, NULL)`);
  });
  after(async () => db.close());

  it('keeps the highest versionnumber, then SinkModifiedOn, then the later file; a delete without a version wins', async () => {
    const columns = (await db.all<{ column_name: string }>('DESCRIBE t')).map((c) => c.column_name);
    const rows = await db.all(
      `SELECT "Id", name, versionnumber, "IsDelete" FROM (${defaultExtractSql('t', columns)}) ORDER BY "Id"`,
    );
    assert.deepEqual(rows, [
      { Id: 'a', name: 'a v3', versionnumber: 3n, IsDelete: false },
      { Id: 'b', name: 'b retried copy', versionnumber: 5n, IsDelete: false },
      { Id: 'c', name: null, versionnumber: null, IsDelete: true },
      { Id: 'd', name: 'd same, later file', versionnumber: 9n, IsDelete: false },
    ]);
    const out = (await db.all<{ column_name: string }>(`DESCRIBE ${defaultExtractSql('t', columns)}`)).map(
      (c) => c.column_name,
    );
    assert.deepEqual(out, ['Id', 'SinkModifiedOn', 'name', 'versionnumber', 'IsDelete']);
  });
});
