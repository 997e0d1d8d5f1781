/**
 * The runtime's Delete activity against the examples of learn.microsoft.com/azure/data-factory/delete-activity
 * ("Delete specific folders or files": folderPath, fileName, recursive → what remains).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { inspectArtifacts } from '../../src/export/synapse/runtime/artifact-inspector.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

const STORE = {
  linkedService: [
    {
      name: 'ls_adls',
      properties: { type: 'AzureBlobFS', typeProperties: { url: 'https://lake.dfs.core.windows.net/' } },
    },
  ],
  dataset: [
    {
      name: 'ds_files',
      properties: {
        type: 'Parquet',
        linkedServiceName: { referenceName: 'ls_adls', type: 'LinkedServiceReference' },
        parameters: { folderPath: { type: 'String' }, fileName: { type: 'String', defaultValue: '' } },
        typeProperties: {
          location: {
            type: 'AzureBlobFSLocation',
            fileSystem: 'root',
            folderPath: '@dataset().folderPath',
            fileName: '@dataset().fileName',
          },
        },
      },
    },
  ],
};
const pipeline = (typeProperties: JsonObject, fileName = '') => ({
  name: 'pl_delete',
  properties: {
    activities: [
      {
        name: 'DeleteThem',
        type: 'Delete',
        typeProperties: {
          dataset: {
            referenceName: 'ds_files',
            type: 'DatasetReference',
            parameters: { folderPath: 'Folder_A_2', fileName },
          },
          ...typeProperties,
        },
      },
    ],
  },
});

describe('runtime: Delete activity (delete-activity doc examples)', () => {
  let dir: string;
  const files = async (): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (rel: string) => {
      for (const e of await readdir(path.join(dir, 'root', rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          out.push(`${r}/`);
          await walk(r);
        } else out.push(r);
      }
    };
    await walk('');
    return out.sort();
  };
  const run = async (typeProperties: JsonObject, fileName = '') => {
    const artifacts = ArtifactStore.fromObjects({ ...STORE, pipeline: [pipeline(typeProperties, fileName)] });
    const rt = await SynapseRuntime.open({
      artifacts,
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-12-06T12:00:00Z',
      fileSystems: { root: path.join(dir, 'root') },
    });
    try {
      return await rt.runPipeline('pl_delete');
    } finally {
      await rt.close();
    }
  };
  beforeEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-delete-'));
    for (const f of [
      'Folder_A_1/1.txt',
      'Folder_A_1/2.txt',
      'Folder_A_1/3.csv',
      'Folder_A_2/4.txt',
      'Folder_A_2/5.csv',
      'Folder_A_2/Folder_B_1/6.txt',
      'Folder_A_2/Folder_B_1/7.csv',
      'Folder_A_2/Folder_B_2/8.txt',
    ]) {
      await mkdir(path.dirname(path.join(dir, 'root', f)), { recursive: true });
      await writeFile(path.join(dir, 'root', f), f);
    }
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const A1 = ['Folder_A_1/', 'Folder_A_1/1.txt', 'Folder_A_1/2.txt', 'Folder_A_1/3.csv'];

  it('a folder, not recursive: the files directly in it', async () => {
    const r = await run({ storeSettings: { type: 'AzureBlobFSReadSettings', recursive: false } });
    assert.equal(r.status, 'Succeeded');
    assert.deepEqual(await files(), [
      ...A1,
      'Folder_A_2/',
      'Folder_A_2/Folder_B_1/',
      'Folder_A_2/Folder_B_1/6.txt',
      'Folder_A_2/Folder_B_1/7.csv',
      'Folder_A_2/Folder_B_2/',
      'Folder_A_2/Folder_B_2/8.txt',
    ]);
    assert.equal((r.activityRuns[0]!.output as { filesDeleted: number }).filesDeleted, 2);
  });

  it('a folder, recursive: the folder and everything below it', async () => {
    const r = await run({ storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true } });
    assert.equal(r.status, 'Succeeded');
    assert.deepEqual(await files(), A1);
    assert.equal((r.activityRuns[0]!.output as { filesDeleted: number }).filesDeleted, 5);
  });

  it('*.txt, not recursive / recursive (typeProperties.recursive, the REST model)', async () => {
    await run({}, '*.txt');
    assert.deepEqual(await files(), [
      ...A1,
      'Folder_A_2/',
      'Folder_A_2/5.csv',
      'Folder_A_2/Folder_B_1/',
      'Folder_A_2/Folder_B_1/6.txt',
      'Folder_A_2/Folder_B_1/7.csv',
      'Folder_A_2/Folder_B_2/',
      'Folder_A_2/Folder_B_2/8.txt',
    ]);
    await run({ recursive: true }, '*.txt');
    assert.deepEqual(await files(), [
      ...A1,
      'Folder_A_2/',
      'Folder_A_2/5.csv',
      'Folder_A_2/Folder_B_1/',
      'Folder_A_2/Folder_B_1/7.csv',
      'Folder_A_2/Folder_B_2/',
    ]);
  });

  it('modifiedDatetimeEnd selects files last modified before it and leaves the folders', async () => {
    const old = new Date('2018-01-01T00:00:00Z');
    await utimes(path.join(dir, 'root', 'Folder_A_2/4.txt'), old, old);
    await utimes(path.join(dir, 'root', 'Folder_A_2/Folder_B_1/6.txt'), old, old);
    const r = await run({
      storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true, modifiedDatetimeEnd: '2019-01-01T00:00:00Z' },
    });
    assert.equal(r.status, 'Succeeded');
    assert.deepEqual(await files(), [
      ...A1,
      'Folder_A_2/',
      'Folder_A_2/5.csv',
      'Folder_A_2/Folder_B_1/',
      'Folder_A_2/Folder_B_1/7.csv',
      'Folder_A_2/Folder_B_2/',
      'Folder_A_2/Folder_B_2/8.txt',
    ]);
  });

  it('refuses what it does not implement, by name, and a missing folder fails', async () => {
    const logged = await run({ enableLogging: true, storeSettings: { type: 'AzureBlobFSReadSettings' } });
    assert.equal(logged.status, 'Failed');
    assert.match(logged.activityRuns[0]!.error!.message, /enableLogging/);
    await rm(path.join(dir, 'root', 'Folder_A_2'), { recursive: true });
    const missing = await run({ storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true } });
    assert.equal(missing.activityRuns[0]!.error?.errorCode, 'PathNotFound');
    const findings = inspectArtifacts(
      ArtifactStore.fromObjects({
        ...STORE,
        pipeline: [pipeline({ storeSettings: { type: 'x', wildcardFileName: '*' } })],
      }),
    );
    assert.deepEqual(
      findings.map((f) => f.detail),
      ['`wildcardFileName`'],
    );
  });
});
