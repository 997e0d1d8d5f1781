import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { duckdbSteps } from '../../src/dialects/duckdb/steps.js';
import { synapseLinkRelation } from '../../src/dialects/duckdb/synapse-link.js';
import {
  bindStepParameters,
  renderStep,
  type SqlStep,
  type StepRegistry,
  type StepValue,
  type SynapseStepPlan,
  stepParameterNames,
} from '../../src/dialects/sql-steps.js';
import { tsqlSteps } from '../../src/dialects/tsql/steps.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import { planSynapseSteps } from '../../src/export/synapse/synapse-exporter.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Every `-- ferry-step: <id>` line in the files under `dir`. */
async function stepIdsUnder(dir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.json')) continue;
    const text = await fs.readFile(path.join(entry.parentPath, entry.name), 'utf8');
    // JSON strings hold the line as `-- ferry-step: <id>\n`.
    for (const m of text.matchAll(/-- ferry-step: ([A-Za-z0-9_.:-]+)/g)) ids.add(m[1]!);
  }
  return ids;
}

/** Splits a DuckDB rendering into statements (`;` at a line end, as `renderStep` joins them). */
function statements(sql: string): string[] {
  return sql
    .split(/;\n/)
    .map((s) => s.trim().replace(/;$/, ''))
    .filter(Boolean);
}

let steps: StepRegistry;
let exported: Set<string>;
let tmp: string;

before(async () => {
  const defs = await loadPipelines(path.join(root, 'pipelines'));
  steps = await planSynapseSteps(defs, {
    settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
    metadataDir: path.join(root, 'fixtures', 'metadata'),
    readExtract: (file) => fs.readFile(path.resolve(root, file), 'utf8').catch(() => undefined),
  });
  exported = await stepIdsUnder(path.join(root, 'synapse'));
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-steps-'));
});

after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Values the runtime would bind: the step's parameters evaluated for one run. */
function valuesFor(step: SqlStep, extra: Record<string, StepValue> = {}): Record<string, StepValue> {
  const pipeline = step.id.split(':')[0]!;
  const base: Record<string, StepValue> = {
    run_id: `run-${pipeline}`,
    pipeline,
    mode: 'scheduled',
    window_start: '',
    window_end: '2026-11-20T10.00.00Z',
    window_name: '2026-11-20T09.00.00Z_2026-11-20T09.15.00Z',
    data_factory: 'ws-local',
    cursor: '2026-11-20T10.00.00Z',
    rows: 1,
    rows_skipped: 0,
    files: '[{"name":"f0.parquet"},{"name":"f1.parquet"}]',
    chunk: 0,
    ...extra,
  };
  const out: Record<string, StepValue> = {};
  for (const p of step.parameters) {
    assert.ok(Object.hasOwn(base, p.name), `test has a value for parameter \`${p.name}\` of \`${step.id}\``);
    out[p.name] = base[p.name]!;
  }
  return out;
}

async function run(db: DuckDbStaging, step: SqlStep, extra: Record<string, StepValue> = {}) {
  const sql = bindStepParameters(renderStep(step, duckdbSteps), valuesFor(step, extra));
  let rows: Record<string, unknown>[] = [];
  for (const s of statements(sql)) {
    try {
      rows = await db.all(s);
    } catch (error) {
      assert.fail(`step \`${step.id}\` does not run on DuckDB: ${(error as Error).message.slice(0, 600)}`);
    }
  }
  return rows;
}

describe('SQL steps: every step of the export has a DuckDB rendering that runs', () => {
  test('the exported artifacts name steps, and every id is a step of the export', () => {
    assert.ok(exported.size > 40, `found ${exported.size} step ids under synapse/`);
    for (const id of exported) assert.ok(steps.get(id), `\`${id}\` under synapse/ is a step of the export`);
  });

  test('each DuckDB rendering uses exactly the parameters its step declares, as `$name`', () => {
    for (const step of steps.all()) {
      const duck = renderStep(step, duckdbSteps);
      const declared = new Set(step.parameters.map((p) => p.name));
      for (const name of stepParameterNames(duck))
        assert.ok(declared.has(name), `\`${step.id}\` uses \`$${name}\` without declaring it`);
      const tsql = renderStep(step, tsqlSteps);
      for (const p of step.parameters) {
        if (p.dataSource) continue;
        const inTsql = p.script ? tsql.includes(`@${p.name}`) : tsql.includes(`@{${p.expression.slice(1)}}`);
        assert.ok(inTsql, `\`${step.id}\` parameter \`${p.name}\` appears in its T-SQL rendering`);
      }
    }
  });

  test('the state schema runs twice (idempotent) and takes a reject without an id', async () => {
    const db = await DuckDbStaging.open();
    try {
      await run(db, steps.get('setup:ferry-state')!);
      await run(db, steps.get('setup:ferry-state')!);
      await db.run(
        `INSERT INTO ferry.rejects (run_id, pipeline, stage, reason, message, created_at) VALUES ('r', 'p', 's', 'x', 'm', 'now'), ('r', 'p', 's', 'y', 'm', 'now')`,
      );
      const [row] = await db.all<{ n: bigint; ids: bigint }>(
        `SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ferry.rejects`,
      );
      assert.equal(Number(row!.n), 2);
      assert.equal(Number(row!.ids), 2);
    } finally {
      await db.close();
    }
  });

  for (const pipeline of [
    'accounts-inbound',
    'contacts-inbound',
    'opportunities-inbound',
    'currencies-inbound',
    'regions-inbound',
  ]) {
    test(`inbound ${pipeline}: begin, cursor, key maps, convert, sink, versions, finish, fail run on DuckDB`, async () => {
      const of = (name: string) => {
        const step = steps.get(`${pipeline}:${name}`);
        assert.ok(step, `step ${pipeline}:${name}`);
        return step as SqlStep<SynapseStepPlan>;
      };
      const convert = of('convert').plan;
      assert.equal(convert.kind, 'convert');
      if (convert.kind !== 'convert') return;
      const { plan, names, keymapTargets } = convert.conversion;
      const db = await DuckDbStaging.open();
      try {
        await run(db, steps.get('setup:ferry-state')!);
        // The Copy activity's staging table: the mapped source columns, the file path and the run id.
        const columns = [...new Set([...plan.sourceColumns, plan.changeTimestamp])];
        await db.run(
          `CREATE TABLE "${names.staged.table}" (${[...columns.map((c) => `"${c}" VARCHAR`), '__source_file VARCHAR', '__run_id VARCHAR'].join(', ')})`,
        );
        await run(db, of('begin-run'));
        assert.equal(
          (await db.all(`SELECT * FROM information_schema.tables WHERE table_name = '${names.staged.table}'`)).length,
          0,
          'begin-run drops the staging table',
        );
        await db.run(
          `CREATE TABLE "${names.staged.table}" (${[...columns.map((c) => `"${c}" VARCHAR`), '__source_file VARCHAR', '__run_id VARCHAR'].join(', ')})`,
        );
        const keyValue = (source: string) => {
          const part = plan.key.find((k) => k.source === source);
          return part ? (part.literal === 'string' ? 'K-1' : '1') : null;
        };
        for (const [i, ts] of ['2026-11-20T09:00:00Z', '2026-11-20T09:30:00Z'].entries()) {
          const values = columns.map((c) =>
            c === plan.changeTimestamp ? `'${ts}'` : keyValue(c) === null ? 'NULL' : `'${keyValue(c)}'`,
          );
          await db.run(
            `INSERT INTO "${names.staged.table}" VALUES (${[...values, `'in/f${i}.parquet'`, "'r'"].join(', ')})`,
          );
        }
        const [cursor] = await run(db, of('read-cursor'));
        assert.equal(cursor!.cursor_value, '1900-01-01T00:00:00Z');
        for (const t of keymapTargets) {
          const raw = `${names.prefix}keymap_${t.table}_raw`;
          // An existing raw table is emptied, not dropped (as in T-SQL); a missing one is created with its columns.
          await db.run(`CREATE TABLE "${raw}" (x INTEGER)`);
          await db.run(`INSERT INTO "${raw}" VALUES (1)`);
          await run(db, of(`truncate-keymap:${t.table}`));
          const [kept] = await db.all<{ n: bigint }>(`SELECT count(*) AS n FROM "${raw}"`);
          assert.equal(Number(kept!.n), 0, 'truncate-table empties the table it keeps');
          await db.run(`DROP TABLE "${raw}"`);
          await run(db, of(`truncate-keymap:${t.table}`));
          const [since] = await run(db, of(`keymap-since:${t.table}`));
          assert.equal(since!.since, '1900-01-01T00:00:00Z', 'an empty key map is read in full');
          // What the Dataverse Copy writes: the id and the key attributes, by name.
          await db.run(
            `INSERT INTO "${raw}" ("${t.idAttribute}", ${t.keyAttributes.map((k) => `"${k}"`).join(', ')}) VALUES ('0d3c2a1e-0000-4000-8000-000000000001', ${t.keyAttributes.map(() => "'P-1'").join(', ')})`,
          );
        }
        const [none] = await run(db, of('select-new-files'));
        assert.equal(none!.name, 'f0.parquet', 'nothing processed yet: the oldest file first');
        await run(db, of('convert'));
        for (const t of keymapTargets) {
          const [since] = await run(db, of(`keymap-since:${t.table}`));
          assert.notEqual(since!.since, '1900-01-01T00:00:00Z', 'after the merge, the read is incremental');
          assert.match(String(since!.since), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
        }
        const outcomes = await db.all<{ outcome: string; n: bigint }>(
          `SELECT __outcome AS outcome, count(*) AS n FROM "${names.work.table}" GROUP BY 1 ORDER BY 1`,
        );
        assert.deepEqual(
          outcomes.map((o) => [o.outcome, Number(o.n)]),
          [
            ['ok', 1],
            ['superseded', 1],
          ],
        );
        for (const t of keymapTargets) {
          const [km] = await db.all<{ n: bigint }>(
            `SELECT count(*) AS n FROM ferry.keymap WHERE entity_set = '${t.entitySet}'`,
          );
          assert.equal(Number(km!.n), 1, `key map of ${t.table} refreshed`);
        }
        const sink = await run(db, of('sink-query'));
        assert.equal(sink.length, 1);
        for (const k of plan.key) assert.equal(String(sink[0]![k.attribute]), keyValue(k.source));
        // Lookup targets deleted in Dataverse: the key-map ids the sink points at, in chunks; the entries the
        // Dataverse read did not find (none found here) leave the key map, and the sink is built again without them.
        const pointed: string[] = [];
        for (const t of keymapTargets) {
          const chunks = await run(db, of(`lookup-target-chunks:${t.table}`));
          const [chunk] = chunks.length ? await run(db, of(`lookup-target-chunk:${t.table}`)) : [];
          for (const m of String(chunk?.ids ?? '').matchAll(/<value>([^<]+)<\/value>/g)) pointed.push(m[1]!);
        }
        const before = await db.all(`SELECT * FROM "${names.sink.table}"`);
        if (keymapTargets.length) await run(db, of('apply-lookup-check'));
        for (const id of pointed) {
          const [left] = await db.all<{ n: bigint }>(`SELECT count(*) AS n FROM ferry.keymap WHERE id = '${id}'`);
          assert.equal(Number(left!.n), 0, `${pipeline}: ${id}, not found in Dataverse, left the key map`);
        }
        const rebuilt = await db.all(`SELECT * FROM "${names.sink.table}"`);
        if (pointed.length === 0) assert.deepEqual(rebuilt, before, 'nothing missing: the same sink');
        if (steps.get(`${pipeline}:resolve-deferred`)) {
          await run(db, of('resolve-deferred'));
          assert.equal((await run(db, of('deferred-sink-query'))).length, 0, 'no lookup deferred in these rows');
        }
        // State columns of new records (syn-state): the rows of the sink that set a state, key and state only.
        if (steps.get(`${pipeline}:state-sink-query`)) {
          // The fixture row sets no state: before it, the state copy sends nothing; with statecode 1, the row.
          assert.equal((await run(db, of('state-sink-query'))).length, 0, 'a row without a state is not sent again');
          if (plan.columns.some((c) => c.inPayload && c.attribute === 'statecode'))
            await db.run(`UPDATE "${names.sink.table}" SET statecode = 1`);
          const rows = await db.all<Record<string, unknown>>(`SELECT * FROM "${names.sink.table}"`);
          const state = await run(db, of('state-sink-query'));
          assert.ok(rows.length > 0);
          const withState = rows.filter((r) => r.statecode != null || r.statuscode != null);
          // Won/lost rows (only a message closes them) are left out, and listed for the close messages instead.
          const closing = steps.get(`${pipeline}:close-messages:list`) !== undefined;
          const expected = withState.filter(
            (r) => !closing || r.statecode == null || ![1, 2].includes(Number(r.statecode)),
          );
          assert.equal(state.length, expected.length, `${pipeline}: the sink rows that set a state`);
          for (const r of state) {
            assert.deepEqual(
              Object.keys(r).filter((c) => c !== 'statecode' && c !== 'statuscode'),
              plan.key.map((k) => k.attribute),
            );
          }
          if (closing) {
            const listed = await run(db, of('close-messages:list'));
            assert.equal(listed.length, withState.length - expected.length, 'won/lost rows are listed to close');
            for (const r of listed) assert.match(String(r.key_filter), / eq /);
          }
        }
        await run(db, of('save-versions'));
        await run(db, of('record-processed-files'));
        assert.equal((await run(db, of('select-new-files'))).length, 0, 'processed files are not selected again');
        assert.equal(
          (await run(db, of('select-new-files'), { window_start: '2026-11-20T09:00:00Z' })).length,
          2,
          'a run with a window takes its files again',
        );
        const versions = await db.all<{ version: string }>(`SELECT version FROM ferry.applied_versions`);
        assert.deepEqual(
          versions.map((v) => v.version),
          ['2026-11-20T09:30:00.000000Z'],
        );
        const [finish] = await run(db, of('finish-run'));
        assert.equal(finish!.over_threshold, 0);
        const [moved] = await run(db, of('read-cursor'));
        assert.equal(moved!.cursor_value, '2026-11-20T10.00.00Z');
        await run(db, of('mark-failed'));
        const [status] = await db.all<{ status: string }>(`SELECT status FROM ferry.runs`);
        assert.equal(status!.status, 'failed');
      } finally {
        await db.close();
      }
    });
  }

  test('the conversion rejects what the local conversion rejects, with the same message, into ferry.rejects', async () => {
    const step = steps.get('currencies-inbound:convert') as SqlStep<SynapseStepPlan>;
    if (step.plan.kind !== 'convert') assert.fail('convert step');
    const { plan, names } = step.plan.conversion;
    const db = await DuckDbStaging.open();
    try {
      await run(db, steps.get('setup:ferry-state')!);
      const columns = [...new Set([...plan.sourceColumns, plan.changeTimestamp])];
      await db.run(
        `CREATE TABLE "${names.staged.table}" (${[...columns.map((c) => `"${c}" VARCHAR`), '__source_file VARCHAR'].join(', ')})`,
      );
      // A blank own key: `key.missing`, on the first key column.
      await db.run(
        `INSERT INTO "${names.staged.table}" VALUES (${[...columns.map((c) => (c === plan.changeTimestamp ? "'2026-11-20T09:00:00Z'" : 'NULL')), "'in/a.parquet'"].join(', ')})`,
      );
      await run(db, step);
      const rejects = await db.all<{ reason: string; message: string; row_number: bigint }>(
        `SELECT reason, message, row_number FROM ferry.rejects`,
      );
      assert.equal(rejects.length, 1);
      assert.equal(rejects[0]!.reason, 'key.missing');
      const key = plan.columns[plan.key[0]!.column]!;
      assert.equal(
        rejects[0]!.message,
        `Column \`${key.attribute}\` (source \`${key.sources.join(', ')}\`) was rejected: key.missing; fix the source row or the mapping, then replay it.`,
      );
      assert.equal(Number(rejects[0]!.row_number), 1);
    } finally {
      await db.close();
    }
  });

  for (const pipeline of ['accounts-outbound', 'contacts-outbound']) {
    test(`outbound ${pipeline}: begin, cursor, extracts, finish run on DuckDB`, async () => {
      const ids = steps.ids().filter((id) => id.startsWith(`${pipeline}:`));
      const db = await DuckDbStaging.open();
      try {
        await run(db, steps.get('setup:ferry-state')!);
        await run(db, steps.get(`${pipeline}:begin-run`)!);
        await run(db, steps.get(`${pipeline}:read-cursor`)!);
        // The run's window name, recorded before the first CETAS (housekeeping finds a dead run's folders by it).
        await run(db, steps.get(`${pipeline}:record-run-window`)!);
        const [recorded] = await db.all<{ window_json: string }>(
          `SELECT window_json FROM ferry.runs WHERE id = 'run-${pipeline}'`,
        );
        assert.deepEqual(JSON.parse(recorded!.window_json), {
          windowStart: '',
          windowEnd: '2026-11-20T10.00.00Z',
          windowName: '2026-11-20T09.00.00Z_2026-11-20T09.15.00Z',
        });
        // Label tables a custom extract joins (typed as the local reader types them).
        await db.run(
          `CREATE TABLE "OptionsetMetadata" ("EntityName" VARCHAR, "OptionSetName" VARCHAR, "Option" BIGINT, "IsUserLocalizedLabel" BOOLEAN, "LocalizedLabelLanguageCode" BIGINT, "LocalizedLabel" VARCHAR)`,
        );
        await db.run(
          `CREATE TABLE "StateMetadata" ("EntityName" VARCHAR, "State" BIGINT, "IsUserLocalizedLabel" BOOLEAN, "LocalizedLabelLanguageCode" BIGINT, "LocalizedLabel" VARCHAR)`,
        );
        await db.run(`INSERT INTO "StateMetadata" VALUES ('account', 0, false, 1033, 'Active')`);
        for (const id of ids.filter((x) => x.includes(':extract:'))) {
          const step = steps.get(id) as SqlStep<SynapseStepPlan>;
          if (step.plan.kind !== 'extract') assert.fail(`${id} is an extract`);
          const input = step.plan.extract;
          const relation = synapseLinkRelation(input.table);
          const attrs = input.metadata.Attributes.map((a) => a.LogicalName);
          const all = [
            ...new Set([
              'Id',
              'SinkCreatedOn',
              'SinkModifiedOn',
              ...attrs,
              'versionnumber',
              'createdon',
              'modifiedon',
              'IsDelete',
            ]),
          ];
          const typeOf = (c: string) =>
            c === 'versionnumber' || c === 'statecode' || c === 'industrycode'
              ? 'BIGINT'
              : c === 'IsDelete'
                ? 'BOOLEAN'
                : 'VARCHAR';
          await db.run(
            `CREATE OR REPLACE TABLE "${relation}" (${[...all.map((c) => `"${c}" ${typeOf(c)}`), '__folder VARCHAR'].join(', ')})`,
          );
          const row = (version: number, folder: string, deleted: boolean) =>
            `(${all.map((c) => (c === 'Id' ? "'a1'" : c === 'versionnumber' ? version : c === 'IsDelete' ? deleted : c === 'statecode' ? 0 : 'NULL')).join(', ')}, '${folder}')`;
          await db.run(
            `INSERT INTO "${relation}" VALUES ${row(1, '2026-11-20T09.00.00Z', false)}, ${row(2, '2026-11-20T09.15.00Z', false)}, ${row(3, '2026-11-20T10.00.00Z', true)}`,
          );
          const location = path.join(tmp, pipeline, id.replaceAll(':', '_'), '2026-11-20T10.00.00Z');
          // The lake has folders on demand; DuckDB creates only the last one (the runtime creates the parents).
          await fs.mkdir(path.dirname(location), { recursive: true });
          const extra = {
            location: `${location}/`,
            location_deletes: `${location}_deletes/`,
            location_manifest: `${location}_manifest/`,
          };
          await run(db, step, extra);
          const out = await db.all<Record<string, unknown>>(`SELECT * FROM read_parquet('${location}/*.parquet')`);
          // The folder Synapse Link is still writing (the window end) is not read: version 2 is the latest.
          assert.equal(out.length, 1, `${id} writes the latest row of the window`);
          assert.equal(Number(out[0]!.versionnumber), 2);
          if (input.duckdbSelect) assert.equal(out[0]!.statecode_label, 'Active');
          // A location that already holds data is refused, as CETAS refuses it.
          await assert.rejects(async () => {
            for (const s of statements(bindStepParameters(renderStep(step, duckdbSteps), valuesFor(step, extra))))
              await db.run(s);
          });
        }
        // Outbound runs record the rows the extracts wrote (the `rows` parameter), not 0.
        const [finish] = await run(db, steps.get(`${pipeline}:finish-run`)!);
        assert.equal(Number(finish!.written), 1);
        await run(db, steps.get(`${pipeline}:mark-failed`)!);
        // A failed run's extract result tables (the stand-in of its CETAS external tables; the refused rerun above
        // left them) are dropped.
        const outputs = ids.filter((x) => x.includes(':extract:')).map((x) => x.split(':').at(-1)!);
        for (const o of outputs) await db.run(`CREATE OR REPLACE TEMP TABLE "__extract_${o}" AS SELECT 1 AS x`);
        await run(db, steps.get(`${pipeline}:drop-run-tables`)!);
        assert.deepEqual(
          await db.all(`SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '__extract_')`),
          [],
        );
      } finally {
        await db.close();
      }
    });
  }

  test('every step of the export is run by one of the tests above', () => {
    const covered =
      /^(setup:ferry-state|[a-z-]+-(inbound|outbound):(begin-run|read-cursor|truncate-keymap:\w+|keymap-since:\w+|convert|sink-query|save-versions|resolve-deferred|deferred-sink-query|lookup-target-chunks:\w+|lookup-target-chunk:\w+|apply-lookup-check|state-sink-query|select-new-files|record-processed-files|finish-run|mark-failed|extract:\w+|record-run-window|drop-run-tables))$/;
    // The replay and housekeeping steps run in the runtime tests of their pipelines
    // (test/synapse-runtime/export-replay.test.ts, export-housekeeping.test.ts; the replay's state copy there too;
    // the unpublished run folders in export-outbound-failure.test.ts).
    const recovery =
      /^([a-z-]+-inbound:replay-(pending|begin|convert|sink-query|state-sink-query|save-versions|finish|failed|truncate-keymap:\w+|since|resolve-deferred|deferred-sink-query|lookup-target-chunks:\w+|lookup-target-chunk:\w+|apply-lookup-check)|housekeeping:(staging-in-use|expire-state|drop-staging:\w+|unpublished-run-folders))$/;
    // Multi-select columns, written by Web activities: test/dialects/multiselect-steps.test.ts.
    const multiSelect = /^[a-z-]+-inbound:(replay-)?multiselect-chunks?(-omit)?$/;
    // The close-message steps (won/lost opportunities) run in test/synapse-runtime/export-close-messages.test.ts,
    // inbound and replay, against the emulator.
    const closes = /^[a-z-]+-inbound:(replay:)?close-messages:(list|record-state|reopens|sends|refusal:\w+)$/;
    for (const id of steps.ids())
      assert.ok(
        covered.test(id) || recovery.test(id) || multiSelect.test(id) || closes.test(id),
        `step \`${id}\` is run by no test`,
      );
    const pipelines = new Set(steps.ids().flatMap((id) => (id.startsWith('setup:') ? [] : [id.split(':')[0]!])));
    assert.deepEqual([...pipelines].sort(), [
      'accounts-inbound',
      'accounts-outbound',
      'contacts-inbound',
      'contacts-outbound',
      'currencies-inbound',
      'housekeeping',
      'opportunities-inbound',
      'regions-inbound',
    ]);
  });
});
