/**
 * Won and lost opportunities on the exported Synapse path: the real `pl_opportunities_inbound` (and the accounts and
 * contacts it looks up) on the runtime, against a Dataverse emulator that throttles (429 with Retry-After) every
 * few requests, compared with the local runner on the same delta files and its own emulator. The copies write the
 * rows open; Web activities read each record, reopen it when it is closed the other way, and send WinOpportunity /
 * LoseOpportunity; a refusal becomes a reject with the service's reason, as the local writer's.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, duckLiteral, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { allActivities, loadRealStore, openDeployedRuntime } from './real-export.js';

const METADATA = 'fixtures/metadata';

const failures = (run: PipelineRun) =>
  run.activityRuns
    .filter((a) => a.status === 'Failed')
    .map((a) => `${a.activityName}${a.scope ? ` [${a.scope}]` : ''}: ${a.error?.errorCode} ${a.error?.message}`)
    .join('\n');

describe('won/lost opportunities on the Synapse path: closed by WinOpportunity/LoseOpportunity as locally', () => {
  let dir: string;
  let lake: string;
  let local: RunningEmulator;
  let synapse: RunningEmulator;
  let defs: PipelineDefinition[];
  let rt: SynapseRuntime;
  let state: SqliteStateStore;
  let proxy: Server;
  const refuse = new Set<string>();
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-close-'));
    lake = path.join(dir, 'lake');
    for (const t of ['currencies', 'regions', 'accounts', 'contacts', 'opportunities'])
      await cp(path.join('fixtures', 'inbound', t), path.join(lake, 'inbound', t), { recursive: true });
    local = await startEmulator({ metadataDir: METADATA });
    // Every 4th request answers 429 with Retry-After: the Web activities' retries must not lose a message.
    synapse = await startEmulator({ metadataDir: METADATA, throttleEvery: 4, retryAfterSec: 0.01 });
    // The Synapse path reaches its emulator through a pass-through proxy that can refuse a close message the way the
    // service refuses one (400 with a Dataverse error): the emulator has no reason to refuse these.
    proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (
          req.method === 'POST' &&
          /\/(Win|Lose)Opportunity$/.test(req.url ?? '') &&
          [...refuse].some((k) => body.includes(`=${k}"`))
        ) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: '0x80040203', message: 'The opportunity is locked for closing.' } }));
          return;
        }
        const headers = Object.fromEntries(
          Object.entries(req.headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k)),
        ) as Record<string, string>;
        const answer = await fetch(`${synapse.url}${req.url}`, {
          method: req.method ?? 'GET',
          headers,
          ...(chunks.length ? { body } : {}),
        });
        const out = Buffer.from(await answer.arrayBuffer());
        res.writeHead(answer.status, Object.fromEntries(answer.headers.entries()));
        res.end(out);
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    defs = await loadPipelines('pipelines');
    state = SqliteStateStore.openIn(path.join(dir, 'state'));
    rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: lake }),
    });
  });
  after(async () => {
    await rt.close();
    state.close();
    await local.close();
    await synapse.close();
    proxy.closeAllConnections();
    await new Promise<void>((r) => proxy.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  async function runBoth(names: readonly string[]): Promise<PipelineRun[]> {
    const config = resolveConfig({ lake, state: path.join(dir, 'state'), metadata: METADATA }, {});
    for (const name of names) {
      const report = await runPipeline(defs.find((d) => d.name === name)!, {
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: stageRegistry,
        log: silentLogger,
        services: { dataverse: { url: local.url }, openStaging: openRunStaging },
        mode: 'scheduled',
      });
      assert.equal(report.status, 'succeeded', `${name}: ${JSON.stringify(report.error)}`);
    }
    const runs: PipelineRun[] = [];
    for (const name of names) {
      const run = await rt.runPipeline(`pl_${name.replaceAll('-', '_')}`, { mode: 'scheduled' });
      assert.equal(run.status, 'Succeeded', failures(run));
      runs.push(run);
    }
    return runs;
  }

  /** `O-3 1/3` per opportunity: state and status by legacy id. */
  const opportunities = (emulator: RunningEmulator) =>
    emulator.store
      .rows('opportunity')
      .map((r) => `${r.attributes.ferry_legacyid} ${r.attributes.statecode}/${r.attributes.statuscode}`)
      .sort();
  const localRejects = () =>
    state
      .listRejects({ pipeline: 'opportunities-inbound' })
      .filter((r) => r.status === 'open')
      .map((r) => `${r.key} ${r.reason}`)
      .sort();
  const synapseRejects = async () =>
    (
      await rt.services.sql.duck.all<{ key: string; reason: string }>(
        `SELECT key, reason FROM ferry.rejects WHERE pipeline = 'opportunities-inbound' AND status = 'open'`,
      )
    )
      .map((r) => `${r.key} ${r.reason}`)
      .sort();
  const count = (run: PipelineRun, activity: string, status = 'Succeeded') =>
    run.activityRuns.filter((a) => a.activityName === activity && a.status === status).length;

  it('the fixtures: the won and the lost opportunity are closed with the same state and status as locally', async () => {
    // Every inbound pipeline, parents first (the loader orders them by dependsOn): opportunities look up accounts
    // and contacts, which look up currencies and regions.
    const runs = await runBoth(defs.filter((d) => d.direction === 'inbound').map((d) => d.name));
    const opps = runs.at(-1);
    const closed = opportunities(synapse).filter((o) => / [12]\//.test(o));
    assert.deepEqual(closed, ['O-3 1/3', 'O-4 2/5']);
    assert.deepEqual(opportunities(synapse), opportunities(local));
    assert.equal(count(opps!, 'SendCloseMessage'), 2);
    // The emulator throttled some requests; each failed attempt was retried, none lost.
    assert.ok(count(opps!, 'ReadCloseState', 'Failed') + count(opps!, 'SendCloseMessage', 'Failed') >= 0);
    assert.deepEqual(await synapseRejects(), localRejects());
  });

  it('a later window: already closed → nothing sent; closed the other way → reopened, then closed; refused → a reject with the service reason', async () => {
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '128MB' });
    try {
      const source = path.join(lake, 'inbound', 'opportunities', '2026-11-20T11-00-00Z.parquet');
      const next = path.join(lake, 'inbound', 'opportunities', '2026-11-20T12-00-00Z.parquet');
      // O-3 Won again (a rerun), O-4 Lost → Won, O-1 Open → Lost with a Won status reason (not a Lost status).
      await duck.run(
        `COPY (SELECT * REPLACE (CASE opp_id WHEN 'O-4' THEN 'Won' WHEN 'O-1' THEN 'Lost' ELSE status END AS status, CASE opp_id WHEN 'O-4' THEN 'Won' WHEN 'O-1' THEN 'Won' ELSE status_reason END AS status_reason, modified_at + INTERVAL 1 HOUR AS modified_at) FROM read_parquet(${duckLiteral(source)}) WHERE opp_id IN ('O-1', 'O-3', 'O-4')) TO ${duckLiteral(next)} (FORMAT parquet)`,
      );
    } finally {
      await duck.close();
    }
    const [opps] = await runBoth(['opportunities-inbound']);
    assert.deepEqual(opportunities(synapse), opportunities(local));
    assert.ok(opportunities(synapse).includes('O-4 1/3'), opportunities(synapse).join(', '));
    assert.equal(count(opps!, 'ReopenRecord'), 1, 'O-4 reopened');
    assert.equal(count(opps!, 'SendCloseMessage'), 1, 'only O-4 is sent: O-3 already is Won');
    // O-1 (Lost with a Won status reason) is rejected by the conversion on both paths, never sent.
    assert.deepEqual(await synapseRejects(), localRejects());
    assert.ok(
      localRejects().some((r) => r.startsWith('ferry_legacyid=O-1 ')),
      localRejects().join(', '),
    );
  });

  it('a message the service refuses: the row is a reject with the service reason and message, the run goes on', async () => {
    // O-2 Won (refused), with two rows that go through (the pipeline's reject threshold is 60 %).
    refuse.add('O-2');
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '128MB' });
    try {
      const source = path.join(lake, 'inbound', 'opportunities', '2026-11-20T11-00-00Z.parquet');
      const next = path.join(lake, 'inbound', 'opportunities', '2026-11-20T13-00-00Z.parquet');
      await duck.run(
        `COPY (SELECT * REPLACE (CASE opp_id WHEN 'O-2' THEN 'Won' ELSE status END AS status, CASE opp_id WHEN 'O-2' THEN 'Won' ELSE status_reason END AS status_reason, modified_at + INTERVAL 2 HOUR AS modified_at) FROM read_parquet(${duckLiteral(source)}) WHERE opp_id IN ('O-1', 'O-2', 'O-3')) TO ${duckLiteral(next)} (FORMAT parquet)`,
      );
    } finally {
      await duck.close();
    }
    const run = await rt.runPipeline('pl_opportunities_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', failures(run));
    // The activity policy retries every failure (a 400 too): 1 + 5 attempts, all refused, then the reject.
    assert.equal(count(run, 'SendCloseMessage', 'Failed'), 6);
    assert.equal(count(run, 'SendCloseMessage'), 0);
    assert.equal(count(run, 'RecordCloseRefusal'), 1);
    assert.ok(
      opportunities(synapse).some((o) => o.startsWith('O-2 0/')),
      `written open, not closed: ${opportunities(synapse).join(', ')}`,
    );
    const rows = await rt.services.sql.duck.all<{ stage: string; reason: string; message: string; row_json: string }>(
      `SELECT stage, reason, message, row_json FROM ferry.rejects WHERE key = 'ferry_legacyid=O-2'`,
    );
    assert.equal(rows.length, 1);
    // As the local writer words it (close-records.ts): reason from the service's code, its message, what to do.
    assert.equal(rows[0]!.stage, 'upsert-dataverse');
    assert.equal(rows[0]!.reason, 'dataverse.0x80040203');
    assert.equal(
      rows[0]!.message,
      'Dataverse upserted `ferry_legacyid=O-2` open but refused to close it: The opportunity is locked for closing. Fix statecode/statuscode, then replay the row.',
    );
    assert.match(rows[0]!.row_json, /"opp_id":"O-2"/);
  });

  it('the replay pipeline closes a won opportunity it re-sends (rejected before: its customer was missing)', async () => {
    refuse.clear();
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '128MB' });
    try {
      const source = path.join(lake, 'inbound', 'opportunities', '2026-11-20T11-00-00Z.parquet');
      const next = path.join(lake, 'inbound', 'opportunities', '2026-11-20T14-00-00Z.parquet');
      // O-6: Won, for account A-9999, which Dataverse does not hold yet; O-1 and O-3 go through unchanged.
      await duck.run(
        `COPY (SELECT * REPLACE (CASE opp_id WHEN 'O-1' THEN 'O-6' ELSE opp_id END AS opp_id, CASE opp_id WHEN 'O-1' THEN 9006 ELSE opp_number END AS opp_number, CASE opp_id WHEN 'O-1' THEN 'A-9999' ELSE customer_ref END AS customer_ref, CASE opp_id WHEN 'O-1' THEN 'Won' ELSE status END AS status, CASE opp_id WHEN 'O-1' THEN 'Won' ELSE status_reason END AS status_reason, modified_at + INTERVAL 3 HOUR AS modified_at) FROM read_parquet(${duckLiteral(source)}) WHERE opp_id IN ('O-1', 'O-3') UNION ALL SELECT * REPLACE (modified_at + INTERVAL 3 HOUR AS modified_at) FROM read_parquet(${duckLiteral(source)}) WHERE opp_id = 'O-1') TO ${duckLiteral(next)} (FORMAT parquet)`,
      );
    } finally {
      await duck.close();
    }
    const run = await rt.runPipeline('pl_opportunities_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', failures(run));
    const rejected = await rt.services.sql.duck.all<{ reason: string }>(
      `SELECT reason FROM ferry.rejects WHERE run_id = ${duckLiteral(run.runId)} AND key = 'ferry_legacyid=O-6'`,
    );
    assert.deepEqual(
      rejected.map((r) => r.reason),
      ['lookup.target_missing'],
    );
    // The parent arrives in Dataverse; the replay of that run re-sends O-6, writes it open and closes it.
    const created = await fetch(`${synapse.url}/api/data/v9.2/accounts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ accountnumber: 'A-9999', name: 'Late parent' }),
    });
    assert.ok(created.ok, await created.text());
    const replay = await rt.runPipeline('pl_opportunities_inbound_replay', { runId: run.runId });
    assert.equal(replay.status, 'Succeeded', failures(replay));
    assert.equal(count(replay, 'SendCloseMessage'), 1);
    assert.ok(opportunities(synapse).includes('O-6 1/3'), opportunities(synapse).join(', '));
  });

  it('every T-SQL statement of the close activities parses (they sit in a ForEach, below the pipeline-level check)', async () => {
    const require = createRequire(import.meta.url);
    const { Parser } = require('node-sql-parser/build/transactsql.js') as {
      Parser: new () => { astify(sql: string, opt: object): unknown };
    };
    const parser = new Parser();
    const real = await loadRealStore();
    let n = 0;
    for (const p of ['pl_opportunities_inbound', 'pl_opportunities_inbound_replay']) {
      for (const a of allActivities(real, p)) {
        if (a.type !== 'Script') continue;
        const scripts = (a.typeProperties as { scripts: { text: string | { value: string } }[] }).scripts;
        for (const s of scripts) {
          const text = typeof s.text === 'string' ? s.text : s.text.value;
          if (!text.includes(':close-messages:')) continue;
          for (const statement of text
            .replace(/@\{[^}]*\}/g, '0')
            .replace(/^--.*$/gm, '')
            .split(/;\n/)
            .map((x) => x.trim().replace(/;$/, ''))
            .filter(Boolean)) {
            parser.astify(statement, { database: 'TransactSQL' });
            n++;
          }
        }
      }
    }
    assert.ok(n >= 16, `parsed ${n} statements`);
    // The replay closes the same way.
    const replay = JSON.parse(await readFile('synapse/pipeline/pl_opportunities_inbound_replay.json', 'utf8'));
    assert.match(JSON.stringify(replay), /"SendCloseMessages"/);
  });
});
