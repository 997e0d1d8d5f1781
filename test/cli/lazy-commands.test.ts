import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { COMMANDS, loadCommand } from '../../src/cli/commands/index.js';

/**
 * Commands are imported on demand: `ferry --help` lists them from their entries in `src/cli/commands/index.ts`, and
 * `ferry status` (what an operator runs most, often in a loop) loads none of the heavy SDKs. Checked on the modules a
 * child process resolves, not on time.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const RECORDER = path.join(ROOT, 'test/cli/register-module-recorder.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-lazy-commands-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Packages `ferry status` has no use for: the Synapse and Service Bus SDKs, ajv, DuckDB, identity, storage… */
const NOT_FOR_STATUS = [
  '@azure/synapse-artifacts',
  '@azure/service-bus',
  '@azure/identity',
  '@azure/storage-blob',
  '@azure/storage-file-datalake',
  '@azure/keyvault-secrets',
  '@azure/monitor-opentelemetry',
  '@azure/functions',
  '@duckdb/node-api',
  'ajv',
  'mssql',
  'rhea',
];

/**
 * Packages `status` still loads because of a change in flight elsewhere, with who removes them. The list can only
 * shrink: an entry no longer loaded fails the test, so it is deleted when the load goes.
 */
const PENDING_ELSEWHERE: ReadonlyArray<{ readonly pkg: string; readonly why: string; readonly owner: string }> = [
  {
    pkg: '@duckdb/node-api',
    why: 'pipeline files import the stage modules that run the stages; they will import the spec modules',
    owner: 'arch-stages',
  },
];

/** Runs ferry in a child process and returns the repository-relative files and the packages it resolved. */
function modulesOf(args: readonly string[]): {
  code: number;
  stderr: string;
  files: Set<string>;
  packages: Set<string>;
} {
  const record = path.join(dir, `modules-${args.join('-').replace(/[^a-z-]/gi, '')}.txt`);
  const result = spawnSync(process.execPath, ['--import', RECORDER, '--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, FERRY_TEST_MODULES: record },
    encoding: 'utf8',
  });
  const urls = fs.existsSync(record) ? fs.readFileSync(record, 'utf8').split('\n').filter(Boolean) : [];
  const files = new Set<string>();
  const packages = new Set<string>();
  for (const url of urls) {
    if (!url.startsWith('file:')) continue;
    const file = fileURLToPath(url);
    const inModules = /[/\\]node_modules[/\\]((?:@[^/\\]+[/\\])?[^/\\]+)/.exec(file);
    if (inModules) packages.add(inModules[1]!.replace(/\\/g, '/'));
    else files.add(path.relative(ROOT, file).split(path.sep).join('/'));
  }
  return { code: result.status ?? -1, stderr: result.stderr, files, packages };
}

test('each entry names, summarises and takes the arguments of the command it loads', async () => {
  const positionals = (usage: string, name: string) =>
    usage
      .slice(name.length)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .filter((_, i, all) => all.slice(0, i + 1).every((t) => /^(<[^>]+>|\[[^-[\]][^\]]*\])(\.\.\.)?$/.test(t)));
  const names = new Set<string>();
  for (const entry of COMMANDS) {
    assert.ok(!names.has(entry.name), `\`${entry.name}\` is listed twice`);
    names.add(entry.name);
    const command = await loadCommand(entry);
    assert.equal(command.name, entry.name, `the entry \`${entry.name}\` loads \`${command.name}\``);
    assert.equal(command.summary, entry.summary, `summary of \`${entry.name}\` in src/cli/commands/index.ts`);
    assert.deepEqual(
      positionals(entry.usage, entry.name),
      positionals(command.usage, command.name),
      `usage of \`${entry.name}\` in src/cli/commands/index.ts: write \`${command.name}\` and its arguments up to the first option`,
    );
  }
});

test('ferry --help lists every command without importing any command module', () => {
  const { code, files } = modulesOf(['--help']);
  assert.equal(code, 0);
  assert.ok(files.has('src/cli/commands/index.ts'), 'the recorder saw the command list');
  const loaded = [...files].filter((f) => f.startsWith('src/cli/commands/') && f !== 'src/cli/commands/index.ts');
  assert.deepEqual(loaded, []);
});

test('ferry status loads none of the SDKs it has no use for', () => {
  const { code, stderr, files, packages } = modulesOf(['status', '--state', path.join(dir, 'state')]);
  assert.equal(code, 0, stderr);
  // The recorder works: status reads the SQLite state store and loads its own command module, not the others.
  assert.ok(packages.has('better-sqlite3'), `recorded packages: ${[...packages].join(', ')}`);
  assert.ok(files.has('src/cli/commands/status.ts'));
  assert.deepEqual(
    [...files].filter((f) => f.startsWith('src/cli/commands/') && !/\/(index|status)\.ts$/.test(f)),
    [],
    'status imports another command module',
  );
  const pending = new Set(PENDING_ELSEWHERE.map((p) => p.pkg));
  const loaded = NOT_FOR_STATUS.filter((pkg) => packages.has(pkg) && !pending.has(pkg));
  assert.deepEqual(loaded, [], 'import these where they are used (a dynamic import, or the command that needs them)');
  const gone = PENDING_ELSEWHERE.filter((p) => !packages.has(p.pkg)).map((p) => `${p.pkg} (${p.owner})`);
  assert.deepEqual(gone, [], 'status no longer loads these: delete their PENDING_ELSEWHERE entries');
});
