import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DataverseMapping } from '../../src/core/mapping.js';
import { definePipeline, type PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { duckdbDialect } from '../../src/dialects/duckdb/conversion.js';
import { compileConversion as compileDuck } from '../../src/dialects/sql-dialect.js';
import { ArtifactValidator, formatProblems } from '../../src/export/synapse/artifact-validator.js';
import { DEFAULT_SETTINGS, loadExportSettings, mergeSettings } from '../../src/export/synapse/export-settings.js';
import type { SynapseArtifact, SynapseExport } from '../../src/export/synapse/synapse-artifacts.js';
import { isUpToDate, runSynapseExport } from '../../src/export/synapse/synapse-export-run.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { loadConversionPlan } from '../../src/stages/convert-to-dataverse/conversion.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const fixtures = path.join(here, 'fixtures');
const metadataDir = path.join(root, 'fixtures', 'metadata');
const schemaDir = path.join(root, 'synapse', 'schemas');

let defs: PipelineDefinition[];
let out: SynapseExport;
let validator: ArtifactValidator;

before(async () => {
  defs = await loadPipelines(path.join(fixtures, 'pipelines'));
  out = await exportSynapse(defs, { settings: DEFAULT_SETTINGS, metadataDir });
  validator = ArtifactValidator.load(schemaDir);
});

const find = (kind: SynapseArtifact['kind'], name: string) => {
  const a = out.artifacts.find((x) => x.kind === kind && x.name === name);
  assert.ok(a, `${kind} ${name} exists`);
  return a;
};
/** Every activity, those inside If branches included. */
const activities = (a: SynapseArtifact): Record<string, any>[] => {
  const walk = (list: Record<string, any>[]): Record<string, any>[] =>
    list.flatMap((x) => [
      x,
      ...walk((x.typeProperties?.ifTrueActivities as Record<string, any>[] | undefined) ?? []),
      ...walk((x.typeProperties?.activities as Record<string, any>[] | undefined) ?? []),
    ]);
  return walk(a.properties.activities as Record<string, any>[]);
};

describe('export synapse: artifacts', () => {
  test('every generated artifact validates against the Data Factory ARM schema', () => {
    assert.ok(out.artifacts.length >= 20);
    const problems = validator.validateAll(out.artifacts);
    assert.equal(formatProblems(problems), '');
    for (const kind of ['linkedService', 'dataset', 'pipeline', 'trigger']) {
      assert.ok(
        out.artifacts.some((a) => a.kind === kind),
        `has ${kind}`,
      );
    }
  });

  test('inbound pipeline: Copy Parquet → SQL staging → Script (T-SQL conversion) → Copy to Dataverse upsert by alternate key', () => {
    const p = find('pipeline', 'pl_accounts_inbound');
    const acts = activities(p);
    const names = acts.map((a) => a.name);
    for (const n of [
      'BeginRun',
      'LookupWatermark',
      'CopyParquetToStaging',
      'CopyKeyMap_account',
      'ConvertToDataverse',
      'CopyStagingToDataverse',
      'FinishRun',
      'MarkRunFailed',
    ]) {
      assert.ok(names.includes(n), `activity ${n}`);
    }
    const copyIn = acts.find((a) => a.name === 'CopyParquetToStaging')!;
    assert.equal(copyIn.typeProperties.source.type, 'ParquetSource');
    assert.equal(copyIn.typeProperties.source.storeSettings.wildcardFolderPath, 'inbound/accounts');
    assert.equal(copyIn.typeProperties.sink.type, 'AzureSqlSink');
    const script = acts.find((a) => a.name === 'ConvertToDataverse')!;
    // The copy of the run's new files (a ForEach of CopyParquetToStaging) and each key map's read and copy.
    assert.deepEqual(script.dependsOn.map((d: any) => d.activity).sort(), [
      'CopyKeyMap_account',
      'CopyNewFiles',
      'KeyMapSince_account',
    ]);
    const convertSql = out.sqlFiles.find((f) => f.path === 'sql/tsql/accounts-inbound/convert.sql')!;
    // The Script embeds exactly the statements written to sql/tsql (the file adds a header and line breaks).
    const embedded: string = script.typeProperties.scripts[0].text;
    for (const line of embedded.split('\n'))
      assert.ok(convertSql.content.includes(line), `convert.sql holds: ${line.slice(0, 60)}`);
    assert.match(embedded, /FOR JSON PATH, WITHOUT_ARRAY_WRAPPER/);
    assert.match(embedded, /N'string\.too_long'/);
    const copyOut = acts.find((a) => a.name === 'CopyStagingToDataverse')!;
    assert.deepEqual(
      {
        type: copyOut.typeProperties.sink.type,
        writeBehavior: copyOut.typeProperties.sink.writeBehavior,
        key: copyOut.typeProperties.sink.alternateKeyName,
        batch: copyOut.typeProperties.sink.writeBatchSize,
      },
      // The pipeline asks for 100; the connector doc advises 10 or fewer against throttling.
      { type: 'CommonDataServiceForAppsSink', writeBehavior: 'Upsert', key: 'ferry_accountnumber_key', batch: 10 },
    );
    assert.equal(p.properties.concurrency, 1);
  });

  test('lookups by alternate key are resolved to GUIDs in SQL from the key map, unresolved ones become rejects', () => {
    const sink = out.sqlFiles.find((f) => f.path === 'sql/tsql/contacts-inbound/convert.sql')!.content;
    assert.match(sink, /LEFT JOIN \[ferry\]\.\[keymap\] AS km\d+ ON/);
    assert.match(sink, /N'lookup\.target_missing'/);
    assert.match(sink, /\[parentcustomerid@EntityReference\]/);
    assert.match(sink, /MERGE INTO \[ferry\]\.\[keymap\] WITH \(HOLDLOCK\)/);
  });

  test('outbound pipelines: OPENROWSET over Synapse Link CSV (bound by each folder’s model.json) / Delta into typed Parquet by CETAS in a folder per window and run', () => {
    const csv = out.sqlFiles.find((f) => f.path === 'sql/tsql/accounts-outbound/extract-account.sql')!.content;
    // Each window folder's model.json is read (OPENJSON) and binds that folder's CSV columns by their ordinals.
    assert.match(csv, /OPENROWSET\(BULK '\*\/model\.json', DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV'/);
    assert.match(csv, /m\.filepath\(1\) > @window_start AND m\.filepath\(1\) < @window_end/);
    assert.match(csv, /CROSS APPLY OPENJSON\(e\.\[value\], '\$\.attributes'\) AS c/);
    assert.match(csv, /CONCAT\(QUOTENAME\(a2\.\[name\]\), N' NVARCHAR\(4000\) ', a2\.\[ordinal\]\)/);
    assert.doesNotMatch(csv, /\[accountid\] NVARCHAR\(4000\) \d/, 'no column list from the metadata snapshot');
    // Typed from the CDM types: SinkModifiedOn (M/d/yyyy h:mm:ss tt) becomes DATETIME2.
    assert.match(
      csv,
      /WHEN N'dateTime' THEN N'CASE WHEN \{v\} LIKE N''%\/%'' THEN TRY_CONVERT\(DATETIME2\(7\), \{v\}, 101\)/,
    );
    // CETAS into <output>/<window>/<run id>/: no rerun or retry targets a folder that holds data.
    assert.match(
      csv,
      /LOCATION = N''', REPLACE\(CONCAT\(N'account\/', @window_name, N'\/', @run_id, N'\/'\), N'''', N''''''\)/,
    );
    assert.match(csv, /AS \[rows_written\]/);
    // The manifest is the last CETAS: the run's output is published once it exists.
    const manifestAt = csv.indexOf("REPLACE(CONCAT(N'_manifests/account/', @window_name");
    assert.ok(manifestAt > csv.indexOf("REPLACE(CONCAT(N'account/', @window_name"), 'the manifest after the data');
    const delta = out.sqlFiles.find((f) => f.path === 'sql/tsql/contacts-outbound/extract-contact.sql')!.content;
    assert.match(
      delta,
      /OPENROWSET\(BULK N''deltalake\/contact_partitioned\/'', DATA_SOURCE = ''ferry_synapse_link'', FORMAT = ''DELTA''\)/,
    );
    assert.match(
      delta,
      /REPLACE\(CONCAT\(N'contact_deletes\/', @window_name, N'\/', @run_id, N'\/'\)/,
      'separate-file deletes go outside the data folder',
    );
    const extract = activities(find('pipeline', 'pl_accounts_outbound')).find(
      (a) => a.name === 'ExtractToParquet_account',
    )!;
    assert.deepEqual(
      extract.typeProperties.scripts[0].parameters.map((p: { name: string; value: { value: string } }) => [
        p.name,
        p.value.value,
      ]),
      [
        ['window_start', "@variables('windowStart')"],
        ['window_end', "@variables('windowEnd')"],
        ['window_name', "@variables('windowName')"],
        ['run_id', '@pipeline().RunId'],
      ],
    );
    assert.equal(extract.policy.retry, 0, 'a retry would write the same run folder');
    const p = find('pipeline', 'pl_accounts_outbound');
    assert.ok(
      activities(p).some((a) => a.name === 'LookupChangelog'),
      'CSV window stops before the folder in changelog.info',
    );
    const finish = activities(p).find((a) => a.name === 'FinishRun')!;
    assert.match(finish.typeProperties.scripts[0].text.value, /DECLARE @rows BIGINT = @\{variables\('rowsWritten'\)\}/);
  });

  test('triggers: schedule every 15 minutes in dependency order; bounded tumbling 15-minute backfill windows after their parents', () => {
    const sched = find('trigger', 'tr_ferry_every_15m');
    assert.deepEqual((sched.properties.typeProperties as any).recurrence, {
      frequency: 'Minute',
      interval: 15,
      startTime: DEFAULT_SETTINGS.triggerStartTime,
      timeZone: 'UTC',
    });
    const orchestrator = find('pipeline', 'pl_ferry_every_15m');
    const contacts = activities(orchestrator).find((a) => a.name === 'Run_contacts_inbound')!;
    assert.deepEqual(contacts.dependsOn, [{ activity: 'Run_accounts_inbound', dependencyConditions: ['Succeeded'] }]);
    assert.ok(
      out.artifacts.some((a) => a.name === 'tr_ferry_every_60m'),
      'a 1h pipeline gets its own schedule',
    );
    const tw = find('trigger', 'tr_contacts_inbound_backfill').properties as any;
    assert.equal(tw.type, 'TumblingWindowTrigger');
    assert.equal(tw.typeProperties.interval, 15);
    assert.equal(tw.typeProperties.maxConcurrency, DEFAULT_SETTINGS.backfillMaxConcurrency);
    assert.deepEqual(tw.typeProperties.retryPolicy, { count: 2, intervalInSeconds: 120 });
    assert.equal(tw.typeProperties.startTime, DEFAULT_SETTINGS.backfillStartTime);
    assert.equal(tw.typeProperties.endTime, DEFAULT_SETTINGS.backfillEndTime);
    assert.deepEqual(
      tw.typeProperties.dependsOn.map((d: any) => [d.type, d.referenceTrigger.referenceName]),
      [['TumblingWindowTriggerDependencyReference', 'tr_accounts_inbound_backfill']],
    );
    assert.deepEqual(tw.pipeline.parameters, {
      windowStart: '@trigger().outputs.windowStartTime',
      windowEnd: '@trigger().outputs.windowEndTime',
      mode: 'backfill',
    });
  });

  test('secrets appear only as Key Vault references or managed identity', async () => {
    const settings = mergeSettings({
      sqlAuthentication: 'key-vault-password',
      sqlUserName: 'ferry_loader',
      sqlPasswordSecretName: 'ferry-sql-password',
    });
    const kv = await exportSynapse(defs, { settings, metadataDir });
    for (const result of [out, kv]) {
      const text = JSON.stringify(result);
      for (const bad of [
        /AccountKey=/i,
        /Password=/i,
        /SharedAccessSignature|[?&]sig=/i,
        /"SecureString"/,
        /"accountKey"/,
        /"servicePrincipalKey"/,
        /"sasUri"/,
        /eyJ[A-Za-z0-9_-]{10,}\./,
        /client_secret/i,
      ]) {
        assert.doesNotMatch(text, bad);
      }
      // Every credential-bearing property is a Key Vault reference.
      const walk = (v: unknown, at: string) => {
        if (Array.isArray(v)) {
          for (const [i, x] of v.entries()) walk(x, `${at}/${i}`);
          return;
        }
        if (!v || typeof v !== 'object') return;
        for (const [k, x] of Object.entries(v)) {
          if (
            /^(password|accountKey|servicePrincipalKey|servicePrincipalCredential|functionKey|sasToken|connectionString)$/.test(
              k,
            )
          ) {
            assert.equal((x as any)?.type, 'AzureKeyVaultSecret', `${at}/${k} is a Key Vault reference`);
          }
          walk(x, `${at}/${k}`);
        }
      };
      walk(result.artifacts, '');
    }
    const sql = kv.artifacts.find((a) => a.name === 'ls_ferry_sql')!.properties as any;
    assert.equal(sql.typeProperties.password.secretName, 'ferry-sql-password');
    assert.equal(
      (out.artifacts.find((a) => a.name === 'ls_ferry_sql')!.properties as any).typeProperties.authenticationType,
      'SystemAssignedManagedIdentity',
    );
  });

  test('output is deterministic', async () => {
    const again = await exportSynapse([...defs].reverse(), {
      settings: DEFAULT_SETTINGS,
      metadataDir,
    });
    assert.deepEqual(again, out);
  });
});

describe('export synapse: monitoring labels', () => {
  test('every activity of a ferry pipeline names its pipeline, table and window in userProperties', () => {
    for (const a of out.artifacts.filter((x) => x.kind === 'pipeline' && x.name !== 'pl_ferry_every_15m')) {
      if (!(a.properties.annotations as string[]).some((n) => n.startsWith('ferry:'))) continue;
      for (const act of activities(a)) {
        const names = (act.userProperties as { name: string }[]).map((u) => u.name);
        assert.deepEqual(names, ['ferryPipeline', 'table', 'window'], `${a.name}/${act.name}`);
      }
    }
    const copy = activities(find('pipeline', 'pl_accounts_inbound')).find((x) => x.name === 'CopyStagingToDataverse')!;
    assert.deepEqual(copy.userProperties[1], { name: 'table', value: 'account' });
  });
});

describe('export synapse: columns the Dataverse Copy sink cannot write', () => {
  test('a multi-select column is written by UpsertMultiple Web activities after the copies, not by a copy', async () => {
    const real = (await loadPipelines(path.join(root, 'pipelines'))).filter((d) => d.direction === 'inbound');
    const ok = await exportSynapse(real, { settings: DEFAULT_SETTINGS, metadataDir });
    const pipeline = ok.artifacts.find((a) => a.name === 'pl_accounts_inbound')!;
    const text = JSON.stringify(pipeline.properties);
    assert.ok(!/"sink":\{"name":"ferry_interests"/.test(text), 'no copy maps the multi-select column');
    const all = activities(pipeline);
    const byName = (n: string) => all.find((a) => a.name === n)!;
    const deps = (n: string) => (byName(n).dependsOn as { activity: string }[]).map((d) => d.activity);
    // After the copies that create the records, before the state copy (and so before applied versions and files).
    assert.deepEqual(deps('PrepareMultiSelect'), ['CopyLookupsToDataverse']);
    assert.deepEqual(deps('WriteMultiSelect'), ['PrepareMultiSelect']);
    assert.ok(deps('CopyStateToDataverse').includes('WriteMultiSelect'));
    assert.ok(!deps('CopyStateToDataverse').includes('CopyLookupsToDataverse'));
    const each = byName('WriteMultiSelect').typeProperties as {
      items: { value: string };
      activities: {
        type: string;
        typeProperties: { method: string; url: { value: string }; body: { value: string } };
      }[];
    };
    assert.equal(each.items.value, "@json(activity('PrepareMultiSelect').output.resultSets[0].rows[0].chunks)");
    const web = each.activities.find((a) => a.type === 'WebActivity')!;
    assert.equal(web.typeProperties.method, 'POST');
    assert.equal(
      web.typeProperties.url.value,
      '@{pipeline().parameters.dataverseUrl}/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple',
    );
    assert.equal(web.typeProperties.body.value, "@activity('LookupMultiSelectChunk').output.firstRow.body");
    const parameters = pipeline.properties.parameters as Record<string, { defaultValue?: string }>;
    assert.equal(parameters.dataverseUrl?.defaultValue, DEFAULT_SETTINGS.dataverseUrl);
    // The replay pipeline writes them the same way.
    const replay = activities(ok.artifacts.find((a) => a.name === 'pl_accounts_inbound_replay')!);
    assert.ok(replay.some((a) => a.name === 'WriteMultiSelect'));
    // A user's settings that still omit a multi-select column: refused, naming it and what to do.
    await assert.rejects(
      exportSynapse(real, {
        settings: mergeSettings({ omitColumns: { 'accounts-inbound': ['ferry_interests'] } }),
        metadataDir,
      }),
      /`omitColumns.accounts-inbound` lists `ferry_interests`, a MultiSelectPicklist: the Synapse export now writes multi-select columns.*remove it/,
    );
    await assert.rejects(
      exportSynapse(real, { settings: mergeSettings({ omitColumns: { 'accounts-inbound': ['name'] } }), metadataDir }),
      /lists `name`, a String the Copy sink can write/,
    );
    assert.throws(
      () => mergeSettings({ omitColumns: { 'accounts-inbound': 'ferry_interests' } }),
      /must map pipeline names/,
    );
  });
});

describe('export synapse: validation errors are readable', () => {
  const mutate = (a: SynapseArtifact, f: (p: any) => void): SynapseArtifact => {
    const properties = structuredClone(a.properties);
    f(properties);
    return { ...a, properties };
  };
  const cases: { what: string; artifact: () => SynapseArtifact; expect: RegExp }[] = [
    {
      what: 'pipeline: Dataverse sink writeBehavior Insert',
      artifact: () =>
        mutate(find('pipeline', 'pl_accounts_inbound'), (p) => {
          p.activities
            .find((a: any) => a.name === 'IfNewFiles')
            .typeProperties.ifTrueActivities.find(
              (a: any) => a.name === 'CopyStagingToDataverse',
            ).typeProperties.sink.writeBehavior = 'Insert';
        }),
      expect:
        /ifTrueActivities\/\d+\(CopyStagingToDataverse\)\/typeProperties\/sink\/writeBehavior \(CommonDataServiceForAppsSink\) must be one of `Upsert` \(got `"Insert"`\)/,
    },
    {
      what: 'pipeline: unknown activity type',
      artifact: () =>
        mutate(find('pipeline', 'pl_accounts_inbound'), (p) => {
          p.activities[0].type = 'Scrpt';
        }),
      expect: /\(BeginRun\)\/type `Scrpt` is not a known Activity type/,
    },
    {
      what: 'dataset: Parquet without location',
      artifact: () =>
        mutate(find('dataset', 'ds_ferry_lake_parquet'), (p) => {
          delete p.typeProperties.location;
        }),
      expect: /dataset `ds_ferry_lake_parquet`: .*\(Parquet\).*missing required property `location`/,
    },
    {
      what: 'linked service: Dataverse without authenticationType',
      artifact: () =>
        mutate(find('linkedService', 'ls_ferry_dataverse'), (p) => {
          delete p.typeProperties.authenticationType;
        }),
      expect:
        /linkedService `ls_ferry_dataverse`: .*\(CommonDataServiceForApps\).*missing required property `authenticationType`/,
    },
    {
      what: 'trigger: tumbling window without maxConcurrency',
      artifact: () =>
        mutate(find('trigger', 'tr_accounts_inbound_backfill'), (p) => {
          delete p.typeProperties.maxConcurrency;
        }),
      expect:
        /trigger `tr_accounts_inbound_backfill`: .*\(TumblingWindowTrigger\).*missing required property `maxConcurrency`/,
    },
  ];
  for (const c of cases) {
    test(c.what, () => {
      const problems = validator.validate(c.artifact());
      assert.ok(
        problems.length > 0 && problems.length <= 3,
        `a few focused problems, got ${problems.length}: ${formatProblems(problems)}`,
      );
      assert.match(formatProblems(problems), c.expect);
    });
  }
});

describe('export synapse: --check', () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-export-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('a changed mapping changes the exported T-SQL, and --check catches the stale folder', async () => {
    const layout = { synapseDir: 'synapse', sqlDir: 'sql/tsql' };
    const base = { settings: DEFAULT_SETTINGS, metadataDir, root: dir, layout, schemaDir };
    const first = await runSynapseExport({ ...base, pipelines: defs, check: false });
    assert.ok(first.diff.added.length > 20);
    assert.ok(isUpToDate((await runSynapseExport({ ...base, pipelines: defs, check: true })).diff));
    // Map `name` from another source column: the conversion SQL must change.
    const accounts = defs.find((d) => d.name === 'accounts-inbound')!;
    const changed = definePipeline({
      ...accounts,
      stages: accounts.stages.map((s) =>
        s.kind === 'convert-to-dataverse'
          ? ({ ...s, columns: { ...(s as any).columns, name: 'legal_name' } } as typeof s)
          : s,
      ),
    });
    const defs2 = defs.map((d) => (d.name === accounts.name ? changed : d));
    const stale = await runSynapseExport({ ...base, pipelines: defs2, check: true });
    assert.ok(!isUpToDate(stale.diff));
    assert.deepEqual(stale.diff.changed.sort(), [
      'sql/tsql/accounts-inbound/convert.sql',
      // The replay rebuilds the mapped source columns from the error store.
      'sql/tsql/accounts-inbound/replay-begin.sql',
      'synapse/pipeline/pl_accounts_inbound.json',
      'synapse/pipeline/pl_accounts_inbound_replay.json',
    ]);
    const convert = stale.files.find((f) => f.path === 'sql/tsql/accounts-inbound/convert.sql')!.content;
    assert.match(convert, /\[legal_name\]/);
    assert.doesNotMatch(convert, /\[account_name\]/);
    // The local runner's DuckDB SQL, compiled from the same definition through the same plan, changes the same way.
    const duckSql = async (d: PipelineDefinition) => {
      const spec = d.stages.find((x) => x.kind === 'convert-to-dataverse') as unknown as DataverseMapping;
      const plan = await loadConversionPlan(spec, metadataDir);
      const sources = [...plan.sourceColumns].map((name) => ({ name, kind: 'text' as const }));
      return compileDuck(plan, duckdbDialect, { sources }).classify;
    };
    const before = await duckSql(accounts);
    const afterChange = await duckSql(changed);
    assert.match(before, /"account_name"/);
    assert.doesNotMatch(afterChange, /"account_name"/);
    assert.match(afterChange, /"legal_name"/);
    // A pipeline that disappears leaves files --check reports as extra.
    const fewer = await runSynapseExport({
      ...base,
      pipelines: defs.filter((d) => d.name !== 'contacts-outbound'),
      check: true,
    });
    assert.ok(fewer.diff.removed.includes('synapse/pipeline/pl_contacts_outbound.json'));
    assert.ok(fewer.diff.removed.includes('sql/tsql/contacts-outbound/extract-contact.sql'));
  });

  test('the checked-in synapse/ and sql/tsql/ match the pipelines in pipelines/', async () => {
    const outcome = await runSynapseExport({
      pipelines: await loadPipelines(path.join(root, 'pipelines')),
      settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
      metadataDir,
      root,
      layout: { synapseDir: 'synapse', sqlDir: 'sql/tsql' },
      schemaDir,
      check: true,
    });
    assert.deepEqual(
      outcome.diff,
      { added: [], changed: [], removed: [] },
      'run `ferry export synapse` and commit synapse/ and sql/tsql/',
    );
  });

  test('the CLI exits 1 with the stale files listed', async () => {
    const run = promisify(execFile);
    const args = [
      '--import',
      'tsx',
      path.join(root, 'src/cli/main.ts'),
      'export',
      'synapse',
      '--pipelines-dir',
      path.join(fixtures, 'pipelines'),
      '--metadata',
      metadataDir,
    ];
    const outDir = path.join(dir, 'cli', 'synapse');
    // Written in-process (the CLI calls the same function); one CLI run checks the exit code and the listing.
    await runSynapseExport({
      pipelines: defs,
      settings: DEFAULT_SETTINGS,
      metadataDir,
      root: dir,
      layout: { synapseDir: 'cli/synapse', sqlDir: 'cli/synapse/sql/tsql' },
      schemaDir,
      check: false,
    });
    await fs.appendFile(path.join(outDir, 'trigger', 'tr_ferry_every_15m.json'), ' ');
    await assert.rejects(run(process.execPath, [...args, '--out', outDir, '--check'], { cwd: root }), (e: any) => {
      assert.equal(e.code, 1);
      assert.match(e.stdout, /stale .*tr_ferry_every_15m\.json/);
      return true;
    });
  });
});
