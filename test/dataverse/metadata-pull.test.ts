import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataverseClient } from '../../src/connectors/dataverse/dataverse-client.js';
import { pullMetadata, writeSnapshot } from '../../src/connectors/dataverse/metadata-pull.js';
import { parseExactJson } from '../../src/core/exact-json.js';
import { loadMetadata, snapshotText } from '../../src/core/table-metadata.js';
import type { RunningEmulator } from '../../src/emulator/server.js';
import { emulator, FIXTURES, metadataCopy } from './helpers.js';

/**
 * A snapshot with defaults made explicit, so fixture and pull compare on meaning: the service (and the emulator)
 * always name option sets and say whether they are global, hand-written fixtures often leave that out.
 */
function normalise(table: unknown): unknown {
  const t = structuredClone(table) as Record<string, unknown>;
  t.SupportsBulk ??= true;
  t.Keys = (t.Keys as Array<Record<string, unknown>>).map((k) => ({ EntityKeyIndexStatus: 'Active', ...k }));
  for (const a of t.Attributes as Array<{ OptionSet?: Record<string, unknown> }>) {
    delete a.OptionSet?.IsGlobal;
    delete a.OptionSet?.Name;
  }
  return t;
}

describe('metadata pull', () => {
  let emu: RunningEmulator;
  let client: DataverseClient;
  before(async () => {
    emu = await emulator();
    client = new DataverseClient({ url: emu.url });
  });
  after(() => emu.close());

  for (const table of ['account', 'contact', 'opportunity']) {
    it(`pulls ${table} back into exactly the snapshot the emulator serves`, async () => {
      const pulled = await pullMetadata(client, table);
      const fixture = await loadMetadata(FIXTURES, table);
      assert.deepEqual(normalise(pulled), normalise(fixture));
      for (const a of fixture.Attributes as ReadonlyArray<{ LogicalName: string; OptionSet?: { Name?: string } }>) {
        if (!a.OptionSet?.Name) continue;
        const got = pulled.Attributes.find((p) => p.LogicalName === a.LogicalName) as { OptionSet?: { Name?: string } };
        assert.equal(got.OptionSet?.Name, a.OptionSet.Name);
      }
    });
  }

  it('writes every committed snapshot back byte for byte when nothing changed (key order, exact Int64 limits)', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'ferry-pull-bytes-'));
    try {
      for (const name of (await readdir(FIXTURES)).filter((n) => n.endsWith('.json'))) {
        const table = name.slice(0, -'.json'.length);
        const file = await writeSnapshot(out, await pullMetadata(client, table));
        assert.equal(await readFile(file, 'utf8'), await readFile(path.join(FIXTURES, name), 'utf8'), name);
      }
      const contact = await pullMetadata(client, 'contact');
      const big = contact.Attributes.find((a) => a.AttributeTypeName.Value === 'BigIntType') as unknown as {
        MinValue: bigint;
        MaxValue: bigint;
      };
      assert.equal(big.MinValue, -9223372036854775808n);
      assert.equal(big.MaxValue, 9223372036854775807n);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('reads type-specific properties through casts: option sets, status→state, booleans, lookups, limits', async () => {
    const pulled = await pullMetadata(client, 'account');
    const byName = new Map(pulled.Attributes.map((a) => [a.LogicalName, a as unknown as Record<string, unknown>]));
    assert.equal(byName.get('name')!.MaxLength, 160);
    assert.deepEqual((byName.get('statuscode')!.OptionSet as { Options: unknown[] }).Options[0], {
      Value: 1,
      Label: 'Active',
      State: 0,
    });
    assert.ok((byName.get('creditonhold')!.OptionSet as { TrueOption?: unknown }).TrueOption);
    assert.deepEqual(byName.get('parentaccountid')!.Targets, ['account']);
    assert.equal(byName.get('name')!.RequiredLevel, 'ApplicationRequired');
    const region = pulled.ManyToOneRelationships.find((r) => r.ReferencingAttribute === 'ferry_regionid');
    assert.equal(region?.ReferencingEntityNavigationPropertyName, 'ferry_RegionId');
  });

  it('records tables without bulk support and writes the snapshot file atomically', async () => {
    const meta = await metadataCopy({ contact: (t) => (t.SupportsBulk = false) });
    const emu2 = await emulator({ metadataDir: meta.dir });
    const out = await mkdtemp(path.join(os.tmpdir(), 'ferry-pull-'));
    try {
      const pulled = await pullMetadata(new DataverseClient({ url: emu2.url }), 'contact');
      assert.equal(pulled.SupportsBulk, false);
      const file = await writeSnapshot(out, pulled);
      assert.equal(file, path.join(out, 'contact.json'));
      assert.equal(await readFile(file, 'utf8'), snapshotText(pulled));
      assert.equal((parseExactJson(await readFile(file, 'utf8')) as { SupportsBulk?: boolean }).SupportsBulk, false);
      assert.equal((await loadMetadata(out, 'contact')).EntitySetName, 'contacts');
    } finally {
      await emu2.close();
      await meta.cleanup();
      await rm(out, { recursive: true, force: true });
    }
  });

  it('names the table when it does not exist', async () => {
    await assert.rejects(pullMetadata(client, 'nosuchtable'), /nosuchtable|404/);
    await assert.rejects(pullMetadata(client, 'Bad Name'), /logical name/);
  });
});
