import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';

/** The CLI as a user runs it: `bin/ferry.js` in its own process, from a chosen folder. */
const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'ferry.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function ferry(args: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...cleanEnv(), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The environment without ferry's own variables, so a developer's settings do not leak into the tests. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('FERRY_') || key.startsWith('AZURE_')) delete env[key];
  return env;
}

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cli-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('help, version and parse errors', () => {
  test('--help lists every command, the exit codes and how to get a command’s help', async () => {
    const r = await ferry(['--help']);
    assert.equal(r.code, 0);
    for (const c of ['demo', 'run', 'runs', 'status', 'doctor', 'init', 'metadata', 'export', 'deploy'])
      assert.match(r.stdout, new RegExp(`^  ${c} `, 'm'));
    assert.match(r.stdout, /4 {3}nothing done: every input of the run was held back/);
    assert.match(r.stdout, /ferry help <command>/);
    assert.match(r.stdout, /^ {2}130 aborted by a second Ctrl-C/m);
  });

  test('ferry help run: options with defaults and environment variables, global options, examples', async () => {
    const r = await ferry(['help', 'run']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: ferry run <pipeline>/m);
    assert.match(r.stdout, /--reprocess +read every input again/);
    assert.match(r.stdout, /--lake <dir\|url> [\s\S]*?default:\s+<project>\/lake; env:\s+FERRY_LAKE/);
    assert.match(r.stdout, /--dataverse <url> [\s\S]*?env:\s+FERRY_DATAVERSE_URL/);
    assert.match(r.stdout, /Examples:\n.*\n {4}ferry run accounts-inbound --emulator/);
  });

  test('--version prints the package version', async () => {
    const r = await ferry(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });

  test('the two-word command groups have help of their own', async () => {
    for (const [group, sub] of [
      ['metadata', 'pull'],
      ['export', 'synapse'],
      ['deploy', 'synapse'],
    ]) {
      const r = await ferry([group!, '--help']);
      assert.equal(r.code, 0, `${group} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: ferry ${group} <command>`, 'm'));
      assert.match(r.stdout, new RegExp(`^  ${sub} `, 'm'));
    }
    const nested = await ferry(['help', 'metadata', 'pull']);
    assert.equal(nested.code, 0);
    assert.match(nested.stdout, /--table <logicalname> +table to pull/);
  });

  test('a value that is not a number is a usage error in plain words', async () => {
    const r = await ferry(['runs', '--limit', 'abc']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /argument 'abc' is invalid\. `abc` is not a whole number \(e\.g\. 20\)\./);
    assert.match(r.stderr, /ferry help runs/);
    assert.doesNotMatch(r.stderr, /datatype mismatch|at .*\.ts:\d+/);
  });

  test('a mistyped pipeline name suggests the nearest one, in run and in runs', async () => {
    const run = await ferry(['run', 'acounts-inbound', '--emulator', '--state', path.join(dir, 'typo-state')]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^Unknown pipeline `acounts-inbound`\. Did you mean `accounts-inbound`\? Known: /m);
    const runs = await ferry(['runs', '--pipeline', 'acounts-inbound', '--state', path.join(dir, 'typo-state')]);
    assert.equal(runs.code, 2);
    assert.match(
      runs.stderr,
      /No runs of `acounts-inbound`, and no pipeline of that name .*Did you mean `accounts-inbound`\?/,
    );
    const none = await ferry(['runs', '--pipeline', 'accounts-inbound', '--state', path.join(dir, 'typo-state')]);
    assert.equal(none.code, 0);
    assert.equal(none.stdout.trim(), 'No runs of `accounts-inbound` yet. Start one with `ferry run accounts-inbound`.');
  });

  test('an unknown command or option suggests the nearest one', async () => {
    const command = await ferry(['rnu', 'accounts-inbound']);
    assert.equal(command.code, 2);
    assert.match(command.stderr, /unknown command 'rnu'\n\(Did you mean run\?\)/);
    const option = await ferry(['runs', '--jsno']);
    assert.equal(option.code, 2);
    assert.match(option.stderr, /unknown option '--jsno'\n\(Did you mean --json\?\)/);
  });

  test('output piped into a reader that goes away does not crash (EPIPE)', async () => {
    const state = path.join(dir, 'epipe-state');
    const store = SqliteStateStore.openIn(state);
    for (let i = 0; i < 3000; i += 1) store.recordSkipped('accounts-inbound', 'manual', 'test:1', `skipped ${i}`);
    store.close();
    const r = await new Promise<Result>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'runs', '--limit', '3000', '--json', '--state', state], {
        cwd: ROOT,
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      // Like `| head -1`: read the first chunk, then close the pipe.
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('exit', (code) => resolve({ code, stdout: '', stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|Unhandled|Error:/);
  });
});

describe('nothing that did nothing reports success', () => {
  let lake: string;
  before(() => {
    lake = path.join(dir, 'lake');
    fs.mkdirSync(path.join(lake, 'inbound', 'accounts'), { recursive: true });
  });

  test('a missing lake folder is a configuration error (exit 2) naming it', async () => {
    const r = await ferry(['run', 'accounts-inbound', '--emulator', '--lake', path.join(dir, 'no-such-dir')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Lake folder `.*no-such-dir` does not exist/);
  });

  test('a URL scheme with digits (s3://) is not taken for a folder', async () => {
    const r = await ferry(['run', 'accounts-inbound', '--emulator', '--lake', 's3://bucket/x']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Lake `s3:\/\/bucket\/x` is neither a folder nor an ADLS Gen2 URL/);
  });

  test('a run without a Dataverse URL, target or --emulator writes nowhere and exits 2', async () => {
    const r = await ferry(['run', 'accounts-inbound', '--lake', lake, '--state', path.join(dir, 'no-target-state')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /No Dataverse to write to: pass --dataverse .* or pass --emulator/);
    assert.equal(fs.existsSync(path.join(dir, 'no-target-state', 'emulator')), false, 'no emulator was started');
  });

  test('a run whose every input was held back ends `held_back`, exit 4, and status shows it', async () => {
    const heldLake = path.join(dir, 'held-lake');
    const state = path.join(dir, 'held-state');
    fs.mkdirSync(path.join(heldLake, 'inbound', 'accounts'), { recursive: true });
    // A regions delta where accounts are expected: every mapped account column is missing.
    const regions = path.join(ROOT, 'fixtures', 'inbound', 'regions');
    const file = fs.readdirSync(regions).find((f) => f.endsWith('.parquet'))!;
    fs.copyFileSync(path.join(regions, file), path.join(heldLake, 'inbound', 'accounts', file));
    const r = await ferry(['run', 'accounts-inbound', '--emulator', '--lake', heldLake, '--state', state, '--json']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr.split('\n')[0]!, /^target \(flags and environment\): the built-in Dataverse emulator/);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(report.status, 'held_back');
    assert.equal(report.counts.read, 0);
    assert.match(report.error.message, /All 1 input\(s\) of `accounts-inbound` were held back/);
    const status = await ferry(['status', '--pipelines', 'accounts-inbound', '--state', state]);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /last run: +held_back \(manual\)/);
  });

  test('export synapse with a settings file that does not exist is an error', async () => {
    const r = await ferry(['export', 'synapse', '--check', '--settings', path.join(dir, 'missing.json')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Export settings `.*missing\.json` do not exist/);
  });

  test('FERRY_STATE below a file gets a message, not ENOTDIR', async () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const r = await ferry(['runs'], { env: { FERRY_STATE: path.join(file, 'state') } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /State folder `.*a-file\/state` cannot be created: `.*a-file` is a file/);
    assert.doesNotMatch(r.stderr, /ENOTDIR/);
  });
});

describe('targets and credentials', () => {
  test('a credential that cannot sign in fails before any data is read, exit 2, naming it and why', async () => {
    const project = path.join(dir, 'cred-project');
    const lake = path.join(project, 'lake', 'inbound', 'accounts');
    fs.mkdirSync(lake, { recursive: true });
    const accounts = path.join(ROOT, 'fixtures', 'inbound', 'accounts');
    for (const f of fs.readdirSync(accounts)) fs.copyFileSync(path.join(accounts, f), path.join(lake, f));
    fs.writeFileSync(
      path.join(project, 'ferry.config.json'),
      JSON.stringify({
        defaultTarget: 'prod',
        targets: {
          prod: {
            dataverse: 'https://contoso.crm.dynamics.com',
            identities: [
              {
                name: 'writer-1',
                tenantId: '00000000-0000-0000-0000-000000000001',
                clientId: '00000000-0000-0000-0000-000000000002',
                certificatePath: 'no-such-cert.pem',
              },
            ],
            metadata: path.join(ROOT, 'fixtures', 'metadata'),
          },
        },
      }),
    );
    const r = await ferry(['run', 'accounts-inbound', '--pipelines-dir', path.join(ROOT, 'pipelines')], {
      cwd: project,
    });
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.match(
      lines[0]!,
      /^target `prod`: Dataverse https:\/\/contoso\.crm\.dynamics\.com as writer-1 \(certificate/,
    );
    assert.match(
      r.stderr,
      /Credential `writer-1` could not get a token for `https:\/\/contoso\.crm\.dynamics\.com`: .*no-such-cert\.pem/,
    );
    assert.ok(lines.length <= 3, `short: ${r.stderr}`);
    const runs = await ferry(['runs', '--json'], { cwd: project });
    assert.equal(runs.stdout.trim(), '', 'no run was started: nothing was read');
  });

  test('a sign-in endpoint that cannot be reached is named, not MSAL’s error page', async () => {
    // An existing, empty lake: the lake check comes before the credential, and a clean clone has no `lake/` folder.
    const lake = path.join(dir, 'net-lake');
    fs.mkdirSync(lake, { recursive: true });
    const r = await ferry(
      [
        'run',
        'accounts-inbound',
        '--dataverse',
        'https://contoso.crm.dynamics.com',
        '--lake',
        lake,
        '--state',
        path.join(dir, 'net'),
      ],
      {
        env: {
          // A closed loopback port: the sign-in request fails at once, as behind a firewall.
          AZURE_AUTHORITY_HOST: 'https://127.0.0.1:9',
          AZURE_TENANT_ID: '00000000-0000-0000-0000-000000000001',
          AZURE_CLIENT_ID: '00000000-0000-0000-0000-000000000002',
          AZURE_CLIENT_SECRET: 'not-a-secret',
        },
      },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /Credential DefaultAzureCredential could not get a token for `https:\/\/contoso\.crm\.dynamics\.com`: the sign-in endpoint \(https:\/\/127\.0\.0\.1:9\) could not be reached: check the network, proxy and AZURE_AUTHORITY_HOST\. Nothing was read or written\./,
    );
    assert.doesNotMatch(r.stderr, /aka\.ms|not-a-secret/);
  });

  test('an unknown --target names the known ones', async () => {
    const r = await ferry(['runs', '--target', 'staging'], { cwd: path.join(dir, 'cred-project') });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Target `staging` is not in `.*ferry\.config\.json`; known: prod\./);
  });
});

describe('pipeline files', () => {
  test('a broken pipeline file is named and does not stop status or run of the others', async () => {
    const pipelines = path.join(dir, 'project', 'pipelines');
    fs.mkdirSync(pipelines, { recursive: true });
    fs.writeFileSync(path.join(dir, 'project', 'package.json'), '{ "type": "module" }');
    const good = fs
      .readFileSync(path.join(ROOT, 'pipelines', 'contacts-outbound.ts'), 'utf8')
      .replaceAll("'../src/", `'${path.join(ROOT, 'src')}/`);
    fs.writeFileSync(path.join(pipelines, 'contacts-outbound.ts'), good);
    fs.writeFileSync(path.join(pipelines, 'broken.ts'), 'export default definePipeline({ name: "broken", \n');
    const state = path.join(dir, 'broken-state');
    const status = await ferry(['status', '--pipelines-dir', pipelines, '--state', state]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^contacts-outbound \(outbound/m);
    assert.match(
      status.stderr,
      /Pipeline file `.*broken\.ts` cannot be loaded \(.*broken\.ts:2:\d+: ERROR: .*\); skipped\. Fix the file\./,
    );
    const lake = path.join(dir, 'broken-lake');
    fs.mkdirSync(lake, { recursive: true });
    const run = await ferry([
      'run',
      'contacts-outbound',
      '--pipelines-dir',
      pipelines,
      '--state',
      state,
      '--lake',
      lake,
    ]);
    assert.notEqual(run.code, 2, run.stderr);
    assert.match(run.stderr, /broken\.ts/);
    const asked = await ferry(['run', 'broken', '--pipelines-dir', pipelines, '--state', state, '--lake', lake]);
    assert.equal(asked.code, 2);
    assert.match(asked.stderr, /Pipeline file `.*broken\.ts` cannot be loaded/);
  });
});

describe('day-to-day output', () => {
  test('a first Ctrl-C in the demo finishes the current run and starts no other (exit 75)', async () => {
    const where = path.join(dir, 'demo-stop');
    fs.mkdirSync(where);
    const child = spawn(process.execPath, [BIN, 'demo'], {
      cwd: where,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Once the demo has seeded the lake, the first run is starting.
    await new Promise<void>((resolve) =>
      child.stderr.on('data', (d) => {
        stderr += d;
        if (stderr.includes('Copied ')) resolve();
      }),
    );
    child.kill('SIGINT');
    assert.equal(await exited, 75, stderr);
    assert.match(stderr, /SIGINT received: finishing the current batch, then stopping/);
    const lines = stdout.trim().split('\n');
    assert.match(
      lines.at(-1)!,
      /^Stopped after \d+ run\(s\); nothing is lost: `npx ferry demo` again repeats the windows/,
    );
    assert.ok(lines.filter((l) => /^\S+-(in|out)bound: /.test(l)).length < 7, stdout);
    assert.doesNotMatch(stdout, /MISMATCH/);
  });

  test('schedule says when its first tick is; status shows it holds the lease; SIGTERM stops it cleanly', async () => {
    const state = path.join(dir, 'schedule-state');
    const lake = path.join(dir, 'schedule-lake');
    fs.mkdirSync(lake, { recursive: true });
    const child = spawn(
      process.execPath,
      [BIN, 'schedule', '--pipelines', 'contacts-outbound', '--every', '1d', '--lake', lake, '--state', state],
      { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('\n')) resolve();
      });
      child.on('exit', () => reject(new Error(`schedule exited early: ${stderr}`)));
    });
    const line = stdout.split('\n')[0]!;
    const at = /^Scheduling contacts-outbound every 1d; first tick at (\S+) \(in (\d+) s\)\. Stop with Ctrl-C\.$/.exec(
      line,
    );
    assert.ok(at, line);
    assert.match(at[1]!, /T00:00:00Z$/, 'a daily cadence ticks at midnight UTC');
    assert.ok(Date.parse(at[1]!) > Date.now());
    const status = await ferry(['status', '--pipelines', 'contacts-outbound', '--state', state, '--lake', lake]);
    assert.match(
      status.stdout,
      /^scheduler: running \(\S+:\d+ holds the lease until \S+\); no scheduler has ticked yet$/m,
    );
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    const after = await ferry(['status', '--pipelines', 'contacts-outbound', '--state', state, '--lake', lake]);
    assert.match(after.stdout, /^scheduler: not running/m);
  });

  test('backfill --dry-run prints a run of empty windows as one line', async () => {
    const lake = path.join(dir, 'backfill-lake');
    const accounts = path.join(ROOT, 'fixtures', 'inbound', 'accounts');
    fs.mkdirSync(path.join(lake, 'inbound', 'accounts'), { recursive: true });
    for (const f of fs.readdirSync(accounts))
      fs.copyFileSync(path.join(accounts, f), path.join(lake, 'inbound', 'accounts', f));
    const r = await ferry([
      'backfill',
      'accounts-inbound',
      '--from',
      '2026-11-20',
      '--to',
      '2026-11-21',
      '--dry-run',
      '--lake',
      lake,
      '--state',
      path.join(dir, 'backfill-state'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(
      lines[0]!,
      /^windows 1–36\/96 2026-11-20T00:00:00Z\.\.2026-11-20T09:00:00Z: no inputs \(36 windows\)$/,
    );
    assert.match(
      r.stdout,
      /^window 37\/96 .*: 1 item\(s\)\n {4}inbound\/accounts\/2026-11-20T09-00-00Z\.parquet \d+ rows$/m,
    );
    assert.match(lines.at(-2)!, /^windows 40–96\/96 .*: no inputs \(57 windows\)$/);
    assert.match(lines.at(-1)!, /^plan: 96 window\(s\), 3 item\(s\), \d+ row\(s\); nothing changed \(dry run\)\.$/);
    assert.ok(lines.length < 12, `${lines.length} lines`);

    // The backfill itself: consecutive empty windows as one line each run of them, the windows with inputs in full.
    const real = await ferry([
      'backfill',
      'accounts-inbound',
      '--from',
      '2026-11-20',
      '--to',
      '2026-11-21',
      '--emulator',
      '--lake',
      lake,
      '--state',
      path.join(dir, 'backfill-state'),
    ]);
    const out = real.stdout.trim().split('\n');
    assert.ok(
      out.includes('windows 1–36 2026-11-20T00:00:00Z..2026-11-20T09:00:00Z: done, no inputs (36 windows)'),
      real.stdout,
    );
    assert.ok(
      out.includes('windows 40–96 2026-11-20T09:45:00Z..2026-11-21T00:00:00Z: done, no inputs (57 windows)'),
      real.stdout,
    );
    assert.equal(
      out.filter((l) => /^window 3[789] .*: \w+, run \S+, 1 item\(s\), read \d+/.test(l)).length,
      3,
      real.stdout,
    );
    assert.match(out.at(-1)!, /^backfill \w+: 96 window\(s\)\.$/);
    assert.equal(out.length, 6, real.stdout);
  });
});
