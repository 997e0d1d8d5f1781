import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { diffMetadata, type MetadataChange } from '../../src/connectors/dataverse/metadata-diff.js';
import { parseExactJson, stringifyExactJson } from '../../src/core/exact-json.js';
import { loadMetadata, snapshotText, type TableMetadata } from '../../src/core/table-metadata.js';
import type { RunningEmulator } from '../../src/emulator/server.js';
import { emulator, FIXTURES } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: the test edits free-form snapshot JSON in place.
type Json = Record<string, any>;

/** What the live service would say after an admin's changes to `account`. */
function drift(account: Json): void {
  const column = (name: string) => account.Attributes.find((a: Json) => a.LogicalName === name);
  column('name').MaxLength = 200;
  column('revenue').Precision = 4;
  account.Attributes = account.Attributes.filter((a: Json) => a.LogicalName !== 'telephone2');
  account.Attributes.push({
    LogicalName: 'ferry_segment',
    SchemaName: 'ferry_Segment',
    AttributeType: 'String',
    AttributeTypeName: { Value: 'StringType' },
    MaxLength: 50,
  });
  const industry = column('industrycode').OptionSet;
  industry.Options.push({ Value: 100000000, Label: 'Space' });
  industry.Options[0].Label = 'Accounting & Audit';
  industry.Options = industry.Options.filter((o: Json) => o.Value !== 2);
  account.Keys[0].KeyAttributes = ['accountnumber', 'name'];
  account.Keys.push({
    LogicalName: 'ferry_legacyid_key',
    SchemaName: 'ferry_LegacyId_Key',
    KeyAttributes: ['ferry_legacyid'],
    EntityKeyIndexStatus: 'Pending',
  });
  const region = account.ManyToOneRelationships.find((r: Json) => r.ReferencingAttribute === 'ferry_regionid');
  region.ReferencingEntityNavigationPropertyName = 'ferry_regionid';
}

const EXPECTED: ReadonlyArray<Omit<MetadataChange, 'table'>> = [
  {
    kind: 'key.changed',
    name: 'ferry_accountnumber_key',
    property: 'KeyAttributes',
    committed: '["accountnumber"]',
    live: '["accountnumber","name"]',
  },
  { kind: 'key.added', name: 'ferry_legacyid_key' },
  {
    kind: 'relationship.changed',
    name: 'ferry_regionid',
    property: 'ReferencingEntityNavigationPropertyName',
    committed: '"ferry_RegionId"',
    live: '"ferry_regionid"',
  },
  { kind: 'column.changed', name: 'name', property: 'MaxLength', committed: '160', live: '200' },
  { kind: 'column.removed', name: 'telephone2' },
  { kind: 'column.changed', name: 'revenue', property: 'Precision', committed: '2', live: '4' },
  {
    kind: 'option.changed',
    name: 'industrycode=1',
    property: 'Label',
    committed: '"Accounting"',
    live: '"Accounting & Audit"',
  },
  { kind: 'option.removed', name: 'industrycode=2' },
  { kind: 'option.added', name: 'industrycode=100000000' },
  { kind: 'column.added', name: 'ferry_segment' },
];

describe('metadata diff', () => {
  let liveDir: string;
  let live: RunningEmulator;
  let same: RunningEmulator;
  before(async () => {
    liveDir = await mkdtemp(path.join(os.tmpdir(), 'ferry-diff-live-'));
    await cp(FIXTURES, liveDir, { recursive: true });
    const file = path.join(liveDir, 'account.json');
    const account = parseExactJson(await readFile(file, 'utf8')) as Json;
    drift(account);
    await writeFile(file, stringifyExactJson(account, 2));
    live = await emulator({ metadataDir: liveDir });
    same = await emulator();
  });
  after(async () => {
    await live.close();
    await same.close();
    await rm(liveDir, { recursive: true, force: true });
  });

  it('names added, removed and changed columns, limits, precision, options, keys and lookups', async () => {
    const committed = await loadMetadata(FIXTURES, 'account');
    const changed = parseExactJson(snapshotText(committed)) as Json;
    drift(changed);
    const changes = diffMetadata(committed, changed as TableMetadata);
    assert.deepEqual(
      changes,
      EXPECTED.map((c) => ({ table: 'account', ...c })),
    );
  });

  it('counts neither key order nor defaults left out (SupportsBulk true, IsGlobal false) as drift', async () => {
    const committed = await loadMetadata(FIXTURES, 'contact');
    const explicit = parseExactJson(snapshotText(committed)) as Json;
    explicit.SupportsBulk = true;
    for (const a of explicit.Attributes) {
      if (a.OptionSet) a.OptionSet = { IsGlobal: false, ...a.OptionSet };
    }
    explicit.Attributes.reverse();
    assert.deepEqual(diffMetadata(committed, explicit as TableMetadata), []);
    const int64 = explicit.Attributes.find((a: Json) => a.AttributeTypeName.Value === 'BigIntType');
    int64.MaxValue = 9223372036854775806n;
    assert.deepEqual(diffMetadata(committed, explicit as TableMetadata), [
      {
        table: 'contact',
        kind: 'column.changed',
        name: int64.LogicalName,
        property: 'MaxValue',
        committed: '9223372036854775807',
        live: '9223372036854775806',
      },
    ]);
  });

  it('`ferry metadata diff` exits 1 on drift with one JSON line per table, 0 when the service matches', async () => {
    const drifted = await ferry(['metadata', 'diff', '--dataverse', live.url, '--json']);
    assert.equal(drifted.code, 1, drifted.stderr);
    const tables = drifted.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { table: string; drift: boolean; changes: MetadataChange[] });
    assert.deepEqual(
      tables.map((t) => [t.table, t.drift]),
      [
        ['account', true],
        ['contact', false],
        ['ferry_region', false],
        ['opportunity', false],
        ['systemuser', false],
        ['team', false],
        ['transactioncurrency', false],
      ],
    );
    assert.deepEqual(
      tables[0]!.changes,
      EXPECTED.map((c) => ({ table: 'account', ...c })),
    );
    assert.match(drifted.stderr, /1 of 7 table\(s\) drifted/);

    const clean = await ferry(['metadata', 'diff', '--dataverse', same.url, '--table', 'account,contact']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(clean.stdout, 'account: no drift\ncontact: no drift\n');

    // `ferry metadata pull` of unchanged tables writes the committed files byte for byte.
    const out = await mkdtemp(path.join(os.tmpdir(), 'ferry-pull-cli-'));
    try {
      const pulled = await ferry([
        'metadata',
        'pull',
        '--dataverse',
        same.url,
        '--table',
        'contact,opportunity',
        '--out',
        out,
      ]);
      assert.equal(pulled.code, 0, pulled.stderr);
      for (const t of ['contact', 'opportunity']) {
        assert.equal(
          await readFile(path.join(out, `${t}.json`), 'utf8'),
          await readFile(path.join(FIXTURES, `${t}.json`), 'utf8'),
        );
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }

    const one = await ferry(['metadata', 'diff', '--dataverse', live.url, '--table', 'account']);
    assert.equal(one.code, 1, one.stderr);
    assert.match(one.stdout, /^account: column name MaxLength: 160 → 200$/m);
    assert.match(one.stdout, /^account: option industrycode=100000000 added$/m);
  });
});

async function ferry(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const root = path.resolve(import.meta.dirname, '../..');
  const state = await mkdtemp(path.join(os.tmpdir(), 'ferry-diff-state-'));
  try {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args, '--metadata', FIXTURES, '--state', state],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', (c) => resolve(c)));
    return { code, stdout, stderr };
  } finally {
    await rm(state, { recursive: true, force: true });
  }
}
