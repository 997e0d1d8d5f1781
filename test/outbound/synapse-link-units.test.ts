import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCdmModel } from '../../src/connectors/synapse-link/cdm-model.js';
import { csvRecords } from '../../src/connectors/synapse-link/csv-locator.js';
import { type ListedFolder, planFolders } from '../../src/connectors/synapse-link/folder-plan.js';
import { folderNameFor, timestampFolder } from '../../src/connectors/synapse-link/timestamp-folder.js';

describe('Synapse Link folder names and window planning', () => {
  it('parses the observed dot form and the documented colon form, and rejects other names', () => {
    assert.equal(timestampFolder('2020-01-01T00.15.12Z'), '2020-01-01T00:15:12.000Z');
    assert.equal(timestampFolder('2020-01-01T00:15:12.345Z'), '2020-01-01T00:15:12.345Z');
    assert.equal(timestampFolder('2020-02-30T00.15.12Z'), undefined);
    assert.equal(timestampFolder('OptionsetMetadata'), undefined);
    assert.equal(folderNameFor(new Date('2026-03-04T05:06:07.890Z')), '2026-03-04T05.06.07Z');
  });

  const folders: ListedFolder[] = [
    { name: '2026-01-01T00.45.00Z', hasModel: true },
    { name: '2026-01-01T00.15.00Z', hasModel: true },
    { name: 'Changelog', hasModel: false },
    { name: '2026-01-01T00:30:00Z', hasModel: true },
    { name: '2026-01-01T01.00.00Z', hasModel: false },
    { name: '2026-01-01T01.15.00Z', hasModel: true },
  ];

  it('orders by time, starts after the cursor, and stops at the in-progress folder and everything after it', () => {
    const plan = planFolders({ folders, inProgress: '2026-01-01T01.00.00Z', cursor: '2026-01-01T00.15.00Z' });
    assert.deepEqual(
      plan.folders.map((f) => f.name),
      ['2026-01-01T00:30:00Z', '2026-01-01T00.45.00Z'],
    );
    assert.deepEqual(plan.stoppedAt, { folder: '2026-01-01T01.00.00Z', reason: 'in_progress' });
  });

  it('a folder without model.json stops the window even when changelog.info names a later one', () => {
    const plan = planFolders({ folders, inProgress: '2026-01-01T01.30.00Z', cursor: null });
    assert.deepEqual(
      plan.folders.map((f) => f.name),
      ['2026-01-01T00.15.00Z', '2026-01-01T00:30:00Z', '2026-01-01T00.45.00Z'],
    );
    assert.deepEqual(plan.stoppedAt, { folder: '2026-01-01T01.00.00Z', reason: 'no_model_json' });
  });

  it('passes over an empty folder older than the in-progress one, but not when changelog.info is missing', () => {
    const withEmpty = [
      ...folders.filter((f) => f.name !== '2026-01-01T01.00.00Z'),
      { name: '2026-01-01T00.20.00Z', hasModel: false, isEmpty: true },
    ];
    const plan = planFolders({ folders: withEmpty, inProgress: '2026-01-01T01.15.00Z', cursor: null });
    assert.deepEqual(
      plan.folders.map((f) => f.name),
      ['2026-01-01T00.15.00Z', '2026-01-01T00:30:00Z', '2026-01-01T00.45.00Z'],
    );
    assert.deepEqual(plan.skippedEmpty, ['2026-01-01T00.20.00Z']);
    const unknown = planFolders({ folders: withEmpty, inProgress: null, cursor: null });
    assert.deepEqual(
      unknown.folders.map((f) => f.name),
      ['2026-01-01T00.15.00Z'],
    );
    assert.deepEqual(unknown.stoppedAt, { folder: '2026-01-01T00.20.00Z', reason: 'no_model_json' });
    const withFiles = planFolders({
      folders: withEmpty.map((f) => (f.isEmpty ? { ...f, isEmpty: false } : f)),
      inProgress: '2026-01-01T01.15.00Z',
      cursor: null,
    });
    assert.deepEqual(withFiles.stoppedAt, { folder: '2026-01-01T00.20.00Z', reason: 'no_model_json' });
  });

  it('backfill ranges ignore the cursor; maxFolders caps the window', () => {
    const range = planFolders({
      folders,
      inProgress: null,
      cursor: '2026-01-01T00.45.00Z',
      range: { from: '2026-01-01T00:20:00Z', to: '2026-01-01T00:45:00Z' },
    });
    assert.deepEqual(
      range.folders.map((f) => f.name),
      ['2026-01-01T00:30:00Z'],
    );
    const capped = planFolders({ folders, inProgress: '2026-01-01T01.00.00Z', cursor: null, maxFolders: 2 });
    assert.deepEqual(
      capped.folders.map((f) => f.name),
      ['2026-01-01T00.15.00Z', '2026-01-01T00:30:00Z'],
    );
  });

  it('a backfill window holding more folders than maxFolders fails naming the range (the rest would be lost)', () => {
    const range = { from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:45:00Z' };
    assert.throws(
      () => planFolders({ folders, inProgress: null, cursor: null, range, maxFolders: 1 }),
      (e: Error & { code?: string }) =>
        e.code === 'synapse_link.window_over_max_folders' &&
        e.message.includes('2026-01-01T00:00:00Z..2026-01-01T00:45:00Z') &&
        e.message.includes('--window'),
    );
    const fits = planFolders({ folders, inProgress: null, cursor: null, range, maxFolders: 2 });
    assert.equal(fits.folders.length, 2);
  });
});

describe('model.json and CSV scanning', () => {
  it('reads attributes in order with decimal precision/scale from cdm:traits', () => {
    const model = parseCdmModel(
      JSON.stringify({
        name: 'cdm',
        version: '1.0',
        entities: [
          {
            $type: 'LocalEntity',
            name: 'currency',
            attributes: [
              { name: 'Id', dataType: 'guid', maxLength: -1 },
              {
                name: 'roundingprecision',
                dataType: 'decimal',
                'cdm:traits': [
                  {
                    traitReference: 'is.dataFormat.numeric.shaped',
                    arguments: [
                      { name: 'precision', value: 38 },
                      { name: 'scale', value: 6 },
                    ],
                  },
                ],
              },
            ],
            partitions: [],
          },
        ],
      }),
      'model.json',
    );
    assert.deepEqual(model.entities[0]!.attributes, [
      { name: 'Id', dataType: 'guid', maxLength: -1 },
      { name: 'roundingprecision', dataType: 'decimal', maxLength: -1, precision: 38, scale: 6 },
    ]);
    assert.equal(model.entities[0]!.partitionCount, 0);
  });

  it('scans quoted line breaks and doubled quotes, reporting the physical line each record starts on', () => {
    const records = [...csvRecords('a,"x\ny",1\nb,"say ""hi""",\r\nc\n')];
    assert.deepEqual(
      records.map((r) => [r.line, r.fields]),
      [
        [1, ['a', 'x\ny', '1']],
        [3, ['b', 'say "hi"', null]],
        [4, ['c']],
      ],
    );
  });
});
