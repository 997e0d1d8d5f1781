import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeSynapse } from '../export/fake-synapse-server.js';

/** `ferry init`, `ferry doctor` and `ferry demo` as a user outside this repository runs them. */
const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'ferry.js');

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const base = { ...process.env };
    for (const key of Object.keys(base)) if (key.startsWith('FERRY_') || key.startsWith('AZURE_')) delete base[key];
    // The project's own `node --test` reports to its own stdout, not to this test runner.
    delete base.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, args, { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const ferry = (args: readonly string[], cwd: string, env?: Record<string, string>) => run([BIN, ...args], cwd, env);

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-project-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('ferry init: a project that depends on dataverse-ferry instead of forking it', () => {
  let project: string;
  before(async () => {
    project = path.join(dir, 'crm-migration');
    const r = await ferry(['init', 'crm-migration'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created crm-migration\/ferry\.config\.json/);
    // What `npm install` would put there: the package (this checkout) and tsx, which it depends on.
    fs.mkdirSync(path.join(project, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'dataverse-ferry'), 'dir');
    fs.symlinkSync(path.join(ROOT, 'node_modules', 'tsx'), path.join(project, 'node_modules', 'tsx'), 'dir');
  });

  test('its pipeline imports the package, and its own test passes (a run against the emulator)', async () => {
    const pipeline = fs.readFileSync(path.join(project, 'pipelines', 'regions-inbound.ts'), 'utf8');
    assert.match(pipeline, /from 'dataverse-ferry'/);
    const r = await run(['--import', 'tsx', '--test', 'test/regions-inbound.test.ts'], project);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# pass 1/);
  });

  test('init refuses to overwrite a project', async () => {
    const r = await ferry(['init', 'crm-migration'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /already has `package\.json`.*pass --force/);
  });

  test('ferry doctor from a subfolder finds the project root and checks the local target', async () => {
    const r = await ferry(['doctor'], path.join(project, 'pipelines'));
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    assert.match(
      lines[0]!,
      new RegExp(`^ok +config +${escapeRegExp(path.join(project, 'ferry.config.json'))}, target \`local\``),
    );
    assert.match(
      r.stdout,
      /^ok +dataverse +WhoAmI at http:\/\/127\.0\.0\.1:\d+ \(built-in emulator\): user [0-9a-f-]+, x-ms-dop-hint \d+/m,
    );
    assert.match(r.stdout, /^ok +metadata +1 snapshot\(s\) in .* match the service/m);
    assert.match(
      r.stdout,
      new RegExp(
        `^ok +lake +${escapeRegExp(path.join(project, 'lake'))}: listed \\d+ entr(y|ies); wrote and deleted a probe file`,
        'm',
      ),
    );
    assert.match(r.stdout, /^ok +state /m);
    assert.match(r.stdout, /^All checks passed\.$/m);
    assert.deepEqual(
      fs.readdirSync(path.join(project, 'lake')).filter((f) => f.includes('doctor')),
      [],
      'probe removed',
    );
  });

  test('ferry doctor reaches the Synapse workspace when one is configured', async () => {
    const synapse = await startFakeSynapse();
    try {
      const r = await ferry(['doctor'], project, { FERRY_SYNAPSE_ENDPOINT: synapse.url });
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, new RegExp(`^ok +synapse +${escapeRegExp(synapse.url)}: reached`, 'm'));
      assert.ok(synapse.requests.some((q) => q.method === 'GET' && q.path.startsWith('/pipelines/')));
    } finally {
      await synapse.close();
    }
    const gone = await ferry(['doctor'], project, { FERRY_SYNAPSE_ENDPOINT: synapse.url });
    assert.notEqual(gone.code, 0);
    assert.match(gone.stdout, /^fail +synapse +.* — check the workspace name/m);
  });

  test('ferry doctor on a target it cannot resolve fails its config check, exit 2, one JSON object per check', async () => {
    const r = await ferry(['doctor', '--target', 'prod', '--json'], project);
    assert.equal(r.code, 2);
    const checks = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { check: string; status: string; detail: string; fix?: string });
    assert.equal(checks[0]!.check, 'config');
    assert.equal(checks[0]!.status, 'fail');
    assert.match(
      checks[0]!.detail,
      /Environment variable `FERRY_PROD_DATAVERSE_URL` \(used by `targets\.prod\.dataverse`\) is not set/,
    );
    assert.ok(checks[0]!.fix);
  });

  test('ferry doctor warns about a lake whose pipeline folders hold nothing, and skips metadata without Dataverse', async () => {
    const empty = path.join(dir, 'empty-lake');
    fs.mkdirSync(empty);
    const r = await ferry(['doctor', '--lake', empty], project);
    assert.equal(r.code, 0, r.stdout);
    assert.match(
      r.stdout,
      new RegExp(
        `^warn +inputs +1 of 1 folder\\(s\\) the pipelines read hold nothing in ${escapeRegExp(empty)}: \`inbound/regions\` \\(regions-inbound\\) — runs there read nothing`,
        'm',
      ),
    );
    assert.match(r.stdout, /^All checks passed \(1 warning\(s\)\)\.$/m);
    const filled = await ferry(['doctor'], project);
    assert.match(filled.stdout, /^ok +inputs +the 1 folder\(s\) the pipelines read hold files$/m);

    const bare = path.join(dir, 'bare');
    fs.mkdirSync(path.join(bare, 'lake'), { recursive: true });
    const none = await ferry(['doctor', '--lake', path.join(bare, 'lake'), '--state', path.join(bare, 'state')], bare);
    assert.equal(none.code, 2, none.stdout);
    assert.match(none.stdout, /^fail +dataverse +no Dataverse target — .*--emulator/m);
    assert.match(none.stdout, /^skip +metadata +needs Dataverse \(see above\)$/m);
  });

  test('ferry doctor with a broken lake and an unreadable configuration', async () => {
    const broken = path.join(dir, 'broken');
    fs.mkdirSync(broken);
    fs.writeFileSync(
      path.join(broken, 'ferry.config.json'),
      JSON.stringify({
        targets: {
          local: { dataverse: 'emulator', lake: 'missing-lake', metadata: path.join(ROOT, 'fixtures', 'metadata') },
        },
      }),
    );
    const r = await ferry(['doctor', '--target', 'local'], broken);
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stdout, /^ok +dataverse /m);
    assert.match(r.stdout, /^fail +lake +Lake folder `.*missing-lake` does not exist.* — check --lake/m);
    assert.match(r.stdout, /^1 check\(s\) failed\.$/m);
    fs.writeFileSync(path.join(broken, 'ferry.config.json'), '{ "targets": { "local": { "lake": "x", } } }');
    const bad = await ferry(['doctor'], broken);
    assert.equal(bad.code, 2);
    assert.match(bad.stdout, /^fail +config +Configuration file `.*ferry\.config\.json` is not valid JSON/m);
  });
});

describe('ferry demo outside the repository', () => {
  test('runs on the package’s fixtures, prints human text only, and names the real run ids', async () => {
    const elsewhere = path.join(dir, 'elsewhere');
    fs.mkdirSync(elsewhere);
    const r = await ferry(['demo'], elsewhere);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /^\s*[{[]/m, 'no raw JSON lines');
    assert.match(r.stdout, /^Synapse Link export: folder \S+; rows: .*account \d+/m);
    const ids = [...r.stdout.matchAll(/npx ferry rejects --run (\S+) +# (\S+)/g)];
    assert.ok(ids.length > 0, r.stdout);
    const runs = await ferry(['runs', '--json', '--limit', '100'], elsewhere);
    const known = new Set(
      runs.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { runId: string }).runId),
    );
    for (const [, id] of ids) assert.ok(known.has(id!), `${id} is a run of this demo`);
    assert.ok(fs.existsSync(path.join(elsewhere, 'lake', 'warehouse')));
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
