import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type RuntimeServices,
  resolveDataset,
  resolveLinkedService,
} from '../../src/export/synapse/runtime/activities/runtime-services.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { evaluateValue } from '../../src/export/synapse/runtime/expression/dynamic-value.js';
import type { ExpressionScope } from '../../src/export/synapse/runtime/expression/expression-evaluator.js';
import type { ActivityContext } from '../../src/export/synapse/runtime/pipeline-engine.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const exported = path.resolve(here, '..', '..', 'synapse');

/** The exported artifacts of one kind, as files under `synapse/<kind>/`. */
async function read(kind: string): Promise<{ name: string; properties: Record<string, unknown> }[]> {
  const dir = path.join(exported, kind);
  return Promise.all(
    (await readdir(dir))
      .filter((f) => f.endsWith('.json'))
      .map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8'))),
  );
}

/** Resolves a dataset reference the way an activity does, outside any pipeline (no `pipeline()` needed). */
function resolve(store: ArtifactStore, reference: object) {
  const scope: ExpressionScope = { now: () => 0 as never };
  const ctx = { name: 'Probe', scope, evaluate: (v: unknown) => evaluateValue(v, scope) } as unknown as ActivityContext;
  return resolveDataset({ artifacts: store } as RuntimeServices, reference, ctx);
}

describe('linked-service parameters in the local runtime (the exported artifacts)', () => {
  let linkedServices: Awaited<ReturnType<typeof read>>;
  let datasets: Awaited<ReturnType<typeof read>>;
  before(async () => {
    linkedServices = await read('linkedService');
    datasets = await read('dataset');
  });

  it('resolves @{linkedService().x} from the exported defaults, from an environment, and from a value a reference passes', async () => {
    const store = await ArtifactStore.load(exported);
    const dv = resolve(store, { referenceName: 'ds_ferry_dataverse_account', type: 'DatasetReference' }).linkedService;
    const exportedUrl = (
      linkedServices.find((l) => l.name === 'ls_ferry_dataverse')!.properties.parameters as Record<
        string,
        { defaultValue: string }
      >
    ).dataverseUrl!.defaultValue;
    assert.equal(dv.parameters.dataverseUrl, exportedUrl);
    assert.equal(dv.typeProperties.serviceUri, exportedUrl);
    // The Key Vault reference is untouched: a secret name, never a value.
    assert.deepEqual(
      (dv.typeProperties.servicePrincipalCredential as Record<string, unknown>).type,
      'AzureKeyVaultSecret',
    );

    const prod = store.withLinkedServiceParameters({
      dataverseUrl: 'https://contoso-prod.crm.dynamics.com',
      sqlServer: 'contoso-prod.database.windows.net',
      sqlDatabase: 'ferry_prod',
    });
    const dvProd = resolve(prod, {
      referenceName: 'ds_ferry_dataverse_account',
      type: 'DatasetReference',
    }).linkedService;
    assert.equal(dvProd.typeProperties.serviceUri, 'https://contoso-prod.crm.dynamics.com');
    const sql = resolve(prod, {
      referenceName: 'ds_ferry_sql_table',
      type: 'DatasetReference',
      parameters: { schemaName: 'ferry', tableName: 'runs' },
    });
    assert.equal(sql.linkedService.typeProperties.server, 'contoso-prod.database.windows.net');
    assert.equal(sql.linkedService.typeProperties.database, 'ferry_prod');
    assert.equal(sql.typeProperties.table, 'runs');

    // A dataset (or activity) that passes its own value wins over the environment's, as in Synapse.
    const passing = ArtifactStore.fromObjects({
      linkedService: linkedServices,
      dataset: [
        {
          name: 'ds_other_db',
          properties: {
            type: 'AzureSqlTable',
            linkedServiceName: {
              referenceName: 'ls_ferry_sql',
              type: 'LinkedServiceReference',
              parameters: { sqlDatabase: '@dataset().db' },
            },
            parameters: { db: { type: 'String' } },
            typeProperties: { schema: 'dbo', table: 't' },
          },
        },
      ],
    }).withLinkedServiceParameters({ sqlDatabase: 'ferry_prod' });
    const other = resolve(passing, {
      referenceName: 'ds_other_db',
      type: 'DatasetReference',
      parameters: { db: 'archive' },
    });
    assert.equal(other.linkedService.typeProperties.database, 'archive');
    assert.equal(other.linkedService.parameters.sqlDatabase, 'archive');
  });

  it('refuses a value no linked service declares, and a reference naming an undeclared parameter', async () => {
    const store = await ArtifactStore.load(exported);
    assert.throws(
      () => store.withLinkedServiceParameters({ dataverseURL: 'x' }),
      /`dataverseURL`.*declared by no linked service.*dataverseUrl/,
    );
    const scope: ExpressionScope = { now: () => 0 as never };
    const ctx = {
      name: 'Probe',
      scope,
      evaluate: (v: unknown) => evaluateValue(v, scope),
    } as unknown as ActivityContext;
    assert.throws(
      () =>
        resolveLinkedService(
          { artifacts: store } as RuntimeServices,
          { referenceName: 'ls_ferry_adls', type: 'LinkedServiceReference', parameters: { url: 'x' } },
          ctx,
        ),
      /linked service `ls_ferry_adls` has no parameter `url`; declared: storageUrl/,
    );
  });

  describe('a pipeline run', () => {
    let dir: string;
    const pipeline = {
      name: 'pl_probe',
      properties: {
        activities: [
          {
            name: 'Probe',
            type: 'GetMetadata',
            typeProperties: {
              dataset: {
                referenceName: 'ds_ferry_lake_parquet',
                type: 'DatasetReference',
                parameters: { fileSystem: 'lake', folderPath: 'inbound' },
              },
              fieldList: ['exists'],
            },
          },
        ],
      },
    };
    /** The exported linked services with no default for `storageUrl`: a value must come from the environment. */
    const withoutDefault = () =>
      linkedServices.map((l) =>
        l.name === 'ls_ferry_adls'
          ? { ...l, properties: { ...l.properties, parameters: { storageUrl: { type: 'String' } } } }
          : l,
      );
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'synapse-ls-params-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('fails the activity naming the linked service and the parameter when no value reaches it, and runs once the environment gives it', async () => {
      const bare = ArtifactStore.fromObjects({
        linkedService: withoutDefault(),
        dataset: datasets,
        pipeline: [pipeline],
      });
      const rt = await SynapseRuntime.open({
        artifacts: bare,
        workspaceDir: path.join(dir, 'a'),
        startTime: '2026-03-01T00:00:00Z',
      });
      const failed = await rt.runPipeline('pl_probe');
      await rt.close();
      assert.equal(failed.status, 'Failed');
      assert.match(
        failed.activityRuns[0]!.error!.message,
        /linked service `ls_ferry_adls` needs parameter `storageUrl`/,
      );

      const rt2 = await SynapseRuntime.open({
        artifacts: bare,
        workspaceDir: path.join(dir, 'b'),
        startTime: '2026-03-01T00:00:00Z',
        linkedServiceParameters: { storageUrl: 'https://contosoprod.dfs.core.windows.net/' },
      });
      const ok = await rt2.runPipeline('pl_probe');
      await rt2.close();
      assert.equal(ok.status, 'Succeeded', ok.message);
      assert.deepEqual(ok.activityRuns[0]!.output, { exists: false });
    });
  });
});
