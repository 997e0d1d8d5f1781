import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { csvRecord } from '../../src/report/csv.js';
import { seedRuns } from './seed-runs.js';

function ferry(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A small RFC 4180 reader, to check what a spreadsheet would read. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else field += c;
  }
  if (field || record.length) records.push([...record, field]);
  return records;
}

describe('day-to-day output', () => {
  let dir: string;
  let state: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-output-'));
    state = path.join(dir, 'state');
    seedRuns(state, Date.now() - 60_000);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs: start, duration, rows/s and 429s in aligned columns; empty scheduled runs hidden unless --all', () => {
    const result = ferry(['runs', '--state', state, '--limit', '100']);
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    const header = lines[0]!;
    for (const column of ['started (UTC)', 'duration', 'rows/s', '429s', 'run'])
      assert.ok(header.includes(column), column);
    const rows = lines.slice(1).filter((l) => /^\d{4}-/.test(l));
    assert.equal(rows.length, 87, 'the 87 runs with work; the 9 empty ticks are hidden');
    // Right-aligned numbers end where their header ends; the run id starts where its header starts.
    const end = (name: string) => header.indexOf(name) + name.length;
    for (const row of rows) {
      assert.match(row.slice(0, end('rows/s')), /[\d.,]+$|\s$/);
      assert.match(row.slice(header.indexOf(' run') + 1), /^\d{8}T\d{9}Z-/);
      assert.equal(row[end('429s')], ' ');
    }
    assert.match(lines.at(-1)!, /\(9 empty scheduled run\(s\) hidden; --all shows them\)/);
    assert.match(result.stdout, /dataverse\.unavailable: Dataverse answered 503/);

    const all = ferry(['runs', '--state', state, '--limit', '200', '--all']);
    assert.equal(
      all.stdout
        .trimEnd()
        .split('\n')
        .filter((l) => /^\d{4}-/.test(l)).length,
      96,
    );

    const json = ferry(['runs', '--state', state, '--limit', '3', '--json']).stdout.trim().split('\n');
    assert.equal(json.length, 3);
    const first = JSON.parse(json[0]!) as { metrics: { stageMs?: unknown; requests?: number } };
    assert.ok(first.metrics.stageMs, 'metrics travel with --json');

    const bad = ferry(['runs', '--state', state, '--limit', 'abc']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--limit.*`abc` is not a whole number/);
  });

  it('rejects --format csv: one quoted record per rejected row', () => {
    const result = ferry(['rejects', '--state', state, '--pipeline', 'contacts-inbound', '--format', 'csv']);
    assert.equal(result.status, 0, result.stderr);
    const records = parseCsv(result.stdout);
    assert.deepEqual(records[0], [
      'pipeline',
      'run_id',
      'reason',
      'key',
      'source_file',
      'row_number',
      'message',
      'status',
      'created_at',
      'row',
    ]);
    const text = ferry(['rejects', '--state', state, '--pipeline', 'contacts-inbound', '--limit', '100000']).stdout;
    const count = Number(/(\d+) reject\(s\)\./.exec(text)![1]);
    assert.equal(records.length - 1, count);
    for (const r of records.slice(1)) {
      assert.equal(r.length, 10);
      assert.equal(r[0], 'contacts-inbound');
      // The message holds a comma and quotes: it survives as one field.
      assert.match(r[6]!, /^Column `name` value `xxxxx, "quoted"` is not valid \(\d+\); fix the source\.$/);
      assert.deepEqual(JSON.parse(r[9]!), { name: 'x' });
    }
  });

  it('plan capacity: from the runs measured, or a profile for given rows', () => {
    const measured = ferry(['plan', 'capacity', '--state', state, '--json']);
    assert.equal(measured.status, 0, measured.stderr);
    const plan = JSON.parse(measured.stdout) as {
      tables: Array<{ table: string; costSource: string; serverMsPerRow: number }>;
      totals: { fitsCadence: boolean; identitiesNeeded: number };
    };
    assert.deepEqual(plan.tables.map((t) => t.table).sort(), ['account', 'contact', 'opportunity']);
    assert.ok(plan.tables.every((t) => t.costSource === 'runs' && t.serverMsPerRow > 70 && t.serverMsPerRow < 90));
    const text = ferry(['plan', 'capacity', '--state', state, '--rows', 'contact=200000', '--identities', '2']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^Capacity plan: 2 identities, 1 web server\(s\), a window every 15 min/);
    assert.match(text.stdout, /Does not fit: a window takes/);
    assert.match(text.stdout, /Identities needed for each window to finish inside 15 min: \d+\./);
    const missing = ferry(['plan', 'capacity', '--state', state, '--rows', 'invoice=10']);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /No measured cost for `invoice`/);
    const profile = ferry([
      'plan',
      'capacity',
      '--state',
      path.join(dir, 'empty-state'),
      '--rows',
      'account=1000',
      '--profile',
      'trial',
    ]);
    assert.equal(profile.status, 0, profile.stderr);
    assert.match(profile.stdout, /profile:trial/);
  });

  it('CSV records quote what needs quoting and defuse spreadsheet formulas', () => {
    assert.equal(
      csvRecord(['a', 'b,c', 'say "hi"', 'two\nlines', null, 3, '=SUM(A1)', '-2+3']),
      'a,"b,c","say ""hi""","two\nlines",,3,\'=SUM(A1),\'-2+3',
    );
  });
});
