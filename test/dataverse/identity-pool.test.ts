import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BulkWriter, type WriteRow } from '../../src/connectors/dataverse/bulk-writer.js';
import { DataverseClient } from '../../src/connectors/dataverse/dataverse-client.js';
import {
  createIdentityPool,
  emulatorTokenFor,
  identitiesFromEnv,
} from '../../src/connectors/dataverse/identity-pool.js';
import type { RunningEmulator } from '../../src/emulator/server.js';
import { accountRow, accountsByNumber, chunks, emulator } from './helpers.js';

const ACCOUNT = { logicalName: 'account', entitySet: 'accounts', primaryId: 'accountid' } as const;

/** A client that records which keys are in flight through it, into a map shared by the pool. */
class WatchedClient extends DataverseClient {
  constructor(
    name: string,
    url: string,
    readonly inFlight: Map<string, string>,
    readonly overlaps: string[],
  ) {
    super({ url, identity: name, getToken: emulatorTokenFor(name), retry: { baseDelayMs: 5, maxDelayMs: 50 } });
  }

  override async upsertMultiple(entitySet: string, targets: readonly string[], options = {}) {
    const keys = targets.map((t) => String((JSON.parse(t) as Record<string, unknown>)['@odata.id']));
    for (const k of keys) {
      const other = this.inFlight.get(k);
      if (other !== undefined) this.overlaps.push(`${k} through ${other} and ${this.identity}`);
      this.inFlight.set(k, this.identity!);
    }
    try {
      return await super.upsertMultiple(entitySet, targets, options);
    } finally {
      for (const k of keys) this.inFlight.delete(k);
    }
  }
}

describe('identity pool: settings', () => {
  it('reads the pool from FERRY_DATAVERSE_IDENTITIES and per-identity variables', () => {
    const settings = identitiesFromEnv({
      FERRY_DATAVERSE_IDENTITIES: 'loader1, loader-2',
      AZURE_TENANT_ID: 't',
      FERRY_IDENTITY_LOADER1_CLIENT_ID: 'c1',
      FERRY_IDENTITY_LOADER1_CLIENT_SECRET: 's1',
      FERRY_IDENTITY_LOADER_2_CLIENT_ID: 'c2',
      FERRY_IDENTITY_LOADER_2_CLIENT_SECRET: 's2',
      FERRY_IDENTITY_LOADER_2_TENANT_ID: 't2',
    });
    assert.deepEqual(settings, [
      { name: 'loader1', tenantId: 't', clientId: 'c1', clientSecret: 's1' },
      { name: 'loader-2', tenantId: 't2', clientId: 'c2', clientSecret: 's2' },
    ]);
    assert.equal(identitiesFromEnv({}), undefined);
  });

  it('refuses an identity without a credential, a name listed twice and one user listed as two', () => {
    const url = 'https://org.crm.dynamics.com';
    assert.throws(
      () => createIdentityPool(url, [{ name: 'loader1', tenantId: 't' }]),
      /Identity `loader1` has no credential; set FERRY_IDENTITY_LOADER1_CLIENT_ID/,
    );
    assert.throws(() => createIdentityPool(url, [{ name: 'a' }, { name: 'A' }]), /`A` is listed twice/);
    assert.throws(
      () =>
        createIdentityPool(url, [
          { name: 'a', tenantId: 't', clientId: 'same', clientSecret: 'x' },
          { name: 'b', tenantId: 't', clientId: 'SAME', clientSecret: 'y' },
        ]),
      /Client id `SAME` \(identity `b`\) is used by two identities/,
    );
    assert.throws(() => createIdentityPool(url, []), /identity pool for `https:\/\/org.crm.dynamics.com` is empty/);
  });

  it('gives each identity its own emulator token on loopback, and the secret goes nowhere into it', async () => {
    const pool = createIdentityPool('http://127.0.0.1:1', [
      { name: 'a', clientId: 'app-a', clientSecret: 'secret-a', tenantId: 't' },
      { name: 'b' },
    ]);
    const [ta, tb] = await Promise.all(pool.map((p) => p.getToken!()));
    assert.notEqual(ta, tb);
    const claims = JSON.parse(Buffer.from(ta!.split('.')[1]!, 'base64url').toString('utf8'));
    assert.equal(claims.appid, 'app-a');
    assert.ok(
      !ta!.includes(Buffer.from('secret-a').toString('base64url')) && !JSON.stringify(claims).includes('secret'),
    );
  });
});

describe('identity pool: the bulk writer against the throttling emulator', () => {
  let emu: RunningEmulator;
  before(async () => {
    // One web server, a 3 s window (300 s at time scale 100), at most 6 requests per user in it.
    emu = await emulator({ profile: 'trial', timeScale: 100 });
    emu.throttle!.update({
      maxRequests: 6,
      baseMs: 0,
      perRecordMs: { ...emu.throttle!.profile.perRecordMs, upsert: 1 },
    });
  });
  after(() => emu.close());

  it('spreads chunks over the identities, pauses only the throttled one, never sends a key through two at once', async () => {
    const inFlight = new Map<string, string>();
    const overlaps: string[] = [];
    const [a, b, c] = ['pool-a', 'pool-b', 'pool-c'].map((n) => new WatchedClient(n, emu.url, inFlight, overlaps));
    // Identity a has spent its window already: its first request is throttled, and it waits for Retry-After.
    for (let i = 0; i < 6; i++) await a!.getJson('WhoAmI');
    // 12 keys, each in three versions (later rows win), 36 rows in chunks of 3.
    const rows: WriteRow[] = [];
    for (let v = 0; v < 3; v++)
      for (let k = 0; k < 12; k++) rows.push(accountRow(rows.length, `P${k}`, { name: `P${k} v${v}` }));
    const upserted: WriteRow[] = [];
    const writer = new BulkWriter({
      client: b!,
      identities: [a!, b!, c!],
      table: ACCOUNT,
      mode: 'upsert-multiple',
      batchSize: 3,
      maxConcurrency: 2,
      onUpserted: (r) => upserted.push(...r),
    });
    const result = await writer.write(chunks(rows, 36));

    assert.equal(result.upserted, 36);
    assert.deepEqual(overlaps, [], 'no key was in flight through two identities at once');
    const stored = accountsByNumber(emu);
    for (let k = 0; k < 12; k++) {
      assert.equal(stored.get(`P${k}`)?.length, 1, `P${k} stored once`);
      assert.equal(stored.get(`P${k}`)![0]!.attributes.name, `P${k} v2`, `P${k} holds its latest version`);
    }
    const throttled = (client: DataverseClient) => Object.values(client.stats.throttled).reduce((x, y) => x + y, 0);
    assert.ok(throttled(a!) >= 1, 'the exhausted identity was throttled');
    assert.equal(throttled(b!) + throttled(c!), 0, 'the others kept their own budgets');
    assert.ok(b!.stats.requests > 1 && c!.stats.requests > 0, 'chunks went through the other identities');
    assert.equal(result.metrics.identities, 3);
    assert.equal((result.metrics.perIdentity as unknown[]).length, 3);
  });

  it('refuses identities of another environment', () => {
    const x = new DataverseClient({ url: emu.url });
    const y = new DataverseClient({ url: 'http://127.0.0.1:9' });
    assert.throws(
      () => new BulkWriter({ client: x, identities: [x, y], table: ACCOUNT }),
      /identities of one writer must all reach/,
    );
  });
});
