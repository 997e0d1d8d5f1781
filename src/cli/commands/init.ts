import fs from 'node:fs/promises';
import path from 'node:path';
import { EXIT, UsageError } from '../../core/errors.js';
import type { Command } from '../command.js';
import { PACKAGE_ROOT } from '../project.js';

/**
 * `ferry init [dir]`: scaffolds a project that keeps its pipelines in its own repository and depends on
 * `dataverse-ferry`: `ferry.config.json` with a `local` target (the built-in emulator) and an example `prod` target,
 * one pipeline, its metadata snapshot, a sample delta and a test that runs the pipeline against the emulator.
 */
export const initCommand: Command = {
  name: 'init',
  summary: 'scaffold a ferry project (config with targets, a pipeline, metadata, sample data, a test)',
  usage: 'init [dir] [--force]',
  options: {
    force: { type: 'boolean', default: false, description: 'overwrite files that already exist' },
  },
  description:
    'The project depends on dataverse-ferry instead of forking it: pipelines import definePipeline and the stage factories from the package. Afterwards: npm install, npm test, npx ferry doctor, npx ferry run regions-inbound.',
  examples: [
    { text: 'A new project in ./crm-migration:', command: 'ferry init crm-migration' },
    { text: 'Into the current folder:', command: 'ferry init' },
  ],
  loadsSettings: true,
  async run(input) {
    const [dirArg, ...extra] = input.positionals;
    if (extra.length) throw new UsageError(`Unexpected argument \`${extra[0]}\`; usage: ferry init [dir].`);
    const dir = path.resolve(input.cwd ?? process.cwd(), dirArg ?? '.');
    const files = await scaffoldFiles(path.basename(dir));
    if (!input.values.force) {
      const existing: string[] = [];
      for (const name of Object.keys(files)) {
        if (
          await fs.stat(path.join(dir, name)).then(
            () => true,
            () => false,
          )
        )
          existing.push(name);
      }
      if (existing.length)
        throw new UsageError(
          `\`${dir}\` already has ${existing.map((e) => `\`${e}\``).join(', ')}; pick an empty folder or pass --force to overwrite.`,
        );
    }
    for (const [name, content] of Object.entries(files)) {
      const file = path.join(dir, name);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, content);
      const shown = path.relative(input.cwd ?? process.cwd(), file);
      if (!input.json) input.print(`created ${shown.startsWith('..') ? file : shown}`);
    }
    if (input.json) input.print(JSON.stringify({ dir, files: Object.keys(files) }));
    else {
      input.print('');
      input.print(`Next, in ${dir}:`);
      input.print('  npm install                          # installs dataverse-ferry');
      input.print('  npm test                             # runs the sample pipeline against the built-in emulator');
      input.print(
        '  npx ferry doctor                     # checks the local target; --target prod once it is filled in',
      );
      input.print('  npx ferry run regions-inbound        # one run on the local target');
    }
    return EXIT.ok;
  },
};

async function scaffoldFiles(name: string): Promise<Record<string, string | Buffer>> {
  const pkg = JSON.parse(await fs.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  const packageName =
    name
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'ferry-project';
  const fixtures = path.join(PACKAGE_ROOT, 'fixtures');
  const sample = (await fs.readdir(path.join(fixtures, 'inbound', 'regions'))).find((f) => f.endsWith('.parquet'))!;
  return {
    'package.json': `${JSON.stringify(
      {
        name: packageName,
        private: true,
        type: 'module',
        scripts: {
          test: 'node --import tsx --test test/*.test.ts',
          ferry: 'ferry',
          doctor: 'ferry doctor',
        },
        dependencies: { 'dataverse-ferry': `^${pkg.version}` },
      },
      null,
      2,
    )}\n`,
    'ferry.config.json': `${JSON.stringify(
      {
        defaultTarget: 'local',
        targets: {
          local: { dataverse: 'emulator', lake: 'lake', state: '.ferry', metadata: 'metadata' },
          prod: {
            dataverse: '${env:FERRY_PROD_DATAVERSE_URL}',
            identities: [
              {
                name: 'ferry-writer-1',
                tenantId: '${env:AZURE_TENANT_ID}',
                clientId: '${env:FERRY_WRITER_CLIENT_ID}',
                clientSecret:
                  '@Microsoft.KeyVault(SecretUri=https://contoso-kv.vault.azure.net/secrets/ferry-writer-1)',
              },
            ],
            lake: 'abfss://lake@contosolake.dfs.core.windows.net/',
            state: '.ferry-prod',
            metadata: 'metadata',
            stagingMemory: '4GB',
            alertWebhook: { keyVault: 'contoso-kv', secret: 'ferry-alert-webhook' },
          },
        },
      },
      null,
      2,
    )}\n`,
    'pipelines/regions-inbound.ts': `import { convertToDataverse, definePipeline, readParquetDeltas, upsertDataverse } from 'dataverse-ferry';

/** Legacy sales regions → the custom table ferry_region, by region code. */
export default definePipeline({
  name: 'regions-inbound',
  description: 'Legacy sales regions → ferry_region, by region code.',
  direction: 'inbound',
  stages: [
    readParquetDeltas({ folder: 'inbound/regions' }),
    convertToDataverse({
      table: 'ferry_region',
      key: ['ferry_code'],
      changeTimestamp: 'modified_at',
      columns: {
        ferry_code: 'region_code',
        ferry_name: 'region_name',
        ferry_parentregionid: { from: 'parent_region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
      },
    }),
    upsertDataverse({ table: 'ferry_region' }),
  ],
});
`,
    'metadata/ferry_region.json': await fs.readFile(path.join(fixtures, 'metadata', 'ferry_region.json')),
    [`lake/inbound/regions/${sample}`]: await fs.readFile(path.join(fixtures, 'inbound', 'regions', sample)),
    'test/regions-inbound.test.ts': `import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const ferryBin = path.join(path.dirname(createRequire(import.meta.url).resolve('dataverse-ferry/package.json')), 'bin/ferry.js');
const root = path.resolve(import.meta.dirname, '..');

test('regions-inbound upserts every sample region into the built-in emulator, and a rerun sends nothing', async () => {
  const state = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-project-test-'));
  try {
    const ferry = (...args: string[]) =>
      promisify(execFile)(process.execPath, [ferryBin, ...args, '--target', 'local', '--state', state, '--json'], { cwd: root });
    const first = JSON.parse((await ferry('run', 'regions-inbound')).stdout);
    assert.equal(first.status, 'succeeded');
    assert.equal(first.counts.rejected, 0);
    assert.equal(first.counts.upserted, first.counts.read);
    assert.ok(first.counts.read > 0);
    const again = JSON.parse((await ferry('run', 'regions-inbound')).stdout);
    assert.equal(again.counts.read, 0, 'the processed delta is not read twice');
  } finally {
    await fs.rm(state, { recursive: true, force: true });
  }
});
`,
    '.gitignore': 'node_modules/\n.ferry/\n.ferry-prod/\nlake/warehouse/\n',
    'README.md': `# ${name}

Pipelines for [dataverse-ferry](https://www.npmjs.com/package/dataverse-ferry), kept in this repository.

- \`pipelines/\` — one file per pipeline (\`definePipeline\` and the stage factories from \`dataverse-ferry\`).
- \`metadata/\` — Dataverse table metadata snapshots (\`npx ferry metadata pull --table <name> --target prod\`).
- \`ferry.config.json\` — named targets: \`local\` (the built-in Dataverse emulator) and \`prod\` (fill in the
  environment URL, identities, lake). Values may be \`\${env:NAME}\` or Key Vault references
  (\`@Microsoft.KeyVault(SecretUri=…)\` or \`{ "keyVault": "<vault>", "secret": "<name>" }\`), read at run time.

\`\`\`sh
npm install
npm test                                    # the sample pipeline against the emulator
npx ferry doctor --target prod              # checks identities, Dataverse, lake, state, metadata, Key Vault
npx ferry run regions-inbound --target prod
\`\`\`
`,
  };
}
