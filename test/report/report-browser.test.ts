import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { seedRuns } from './seed-runs.js';

const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const CHARTS = [
  'rows-per-sec',
  'duration',
  'throttling',
  'retry-after',
  'stages',
  'server-time',
  'rejects',
  'held-back',
  'capacity',
];

function ferry(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('ferry report in a real browser', () => {
  let dir: string;
  let html: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-report-'));
    seedRuns(path.join(dir, 'state'), Date.now() - 60_000);
    html = path.join(dir, 'report.html');
    const result = ferry(['report', '--state', path.join(dir, 'state'), '--out', html, '--since', '24h']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /87 run\(s\) of 4 pipeline\(s\).*9 empty scheduled run\(s\) left out/);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is one self-contained page: nothing to fetch', () => {
    const text = fs.readFileSync(html, 'utf8');
    assert.doesNotMatch(text, /<(script|link|img)[^>]+(src|href)=/i, 'no external script, stylesheet or image');
    assert.doesNotMatch(text, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no URL but the SVG namespace');
  });

  it('renders every chart in Chromium without console errors, and filters reject rows', async (t) => {
    if (!fs.existsSync(CHROMIUM))
      return t.skip(`Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set FERRY_CHROMIUM`);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(`file://${html}`);
      for (const chart of CHARTS) {
        const marks = await page.locator(`[data-chart="${chart}"] svg .mark`).count();
        assert.ok(marks > 0, `chart \`${chart}\` draws data marks (found ${marks})`);
        const box = await page.locator(`[data-chart="${chart}"] svg`).first().boundingBox();
        assert.ok(box && box.width > 300 && box.height > 100, `chart \`${chart}\` has a visible size`);
      }
      assert.equal(await page.locator('.empty').count(), 0, 'no chart fell back to "nothing in this period"');
      // The reject table: all rows first, then the rows of the reason whose bar was clicked.
      const all = await page.locator('#reject-rows tbody tr:visible').count();
      assert.ok(all > 100);
      await page.locator('[data-chart="rejects"] rect[data-filter="lookup.target_missing"]').first().click();
      const shown = await page.locator('#reject-rows tbody tr:visible').count();
      assert.ok(shown > 0 && shown < all, `filter shows ${shown} of ${all}`);
      assert.equal(
        await page
          .locator('#reject-rows tbody tr:visible td:nth-child(1)')
          .filter({ hasNotText: 'lookup.target_missing' })
          .count(),
        0,
      );
      await page.selectOption('#reject-filter', '');
      assert.deepEqual(problems, []);
      assert.deepEqual(
        requests.filter((u) => !u.startsWith('file://')),
        [],
        'the page fetches nothing',
      );
      const screenshot = path.join(os.tmpdir(), 'ferry-report-screenshot.png');
      await page.screenshot({ path: screenshot, fullPage: true });
      t.diagnostic(`screenshot: ${screenshot}`);
      console.log(`report screenshot: ${screenshot}`);
    } finally {
      await browser.close();
    }
  });

  it('reports real runs: the demo, drawn from what the runner stored', async (t) => {
    const demo = path.join(dir, 'demo');
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'demo',
        '--lake',
        path.join(demo, 'lake'),
        '--state',
        path.join(demo, 'state'),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(run.status, 0, run.stderr);
    const out = path.join(demo, 'report.html');
    const result = ferry(['report', '--state', path.join(demo, 'state'), '--out', out]);
    assert.equal(result.status, 0, result.stderr);
    // What the runner stored, read back through `ferry runs --json`: the page must show the same.
    const stored = ferry(['runs', '--state', path.join(demo, 'state'), '--json', '--limit', '1000'])
      .stdout.trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { counts: { rejected: number }; metrics: { requests?: number } });
    const writers = stored.filter((r) => typeof r.metrics.requests === 'number').length;
    const rejected = stored.reduce((a, r) => a + r.counts.rejected, 0);
    assert.ok(writers > 0 && rejected > 0);
    assert.match(result.stdout, new RegExp(`: ${stored.length} run\\(s\\) of \\d+ pipeline\\(s\\)`));
    if (!fs.existsSync(CHROMIUM)) return t.skip(`Chromium not found at ${CHROMIUM}`);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`file://${out}`);
      // The demo has throughput, stage timings, server time, rejects and a plan; no 429s and no held-back file.
      for (const chart of ['rows-per-sec', 'duration', 'stages', 'server-time', 'rejects', 'capacity'])
        assert.ok((await page.locator(`[data-chart="${chart}"] svg .mark`).count()) > 0, chart);
      assert.match(
        (await page.locator('#throttling .empty').first().textContent()) ?? '',
        new RegExp(`No 429s in ${writers} run\\(s\\) that wrote to Dataverse`),
      );
      assert.match((await page.locator('#held-back .empty').textContent()) ?? '', /No file was held back/);
      assert.equal(await page.locator('#reject-rows tbody tr').count(), rejected);
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });

  it('writes the same runs as Markdown, JSON and CSV', () => {
    const state = path.join(dir, 'state');
    const md = ferry(['report', '--state', state, '--format', 'md']);
    assert.equal(md.status, 0, md.stderr);
    assert.match(md.stdout, /^# dataverse-ferry run report/);
    assert.match(md.stdout, /\| contacts-inbound \| 21 \|/);
    assert.match(md.stdout, /## Capacity plan/);
    const json = JSON.parse(ferry(['report', '--state', state, '--format', 'json']).stdout) as {
      runs: unknown[];
      rejectReasons: Array<{ reason: string }>;
    };
    assert.equal(json.runs.length, 87);
    assert.deepEqual(json.rejectReasons.map((r) => r.reason).sort(), [
      'choice.unknown_label',
      'lookup.target_missing',
      'number.out_of_range',
      'string.too_long',
    ]);
    const one = JSON.parse(
      ferry(['report', '--state', state, '--format', 'json', '--pipeline', 'contacts-inbound']).stdout,
    ) as {
      runs: Array<{ pipeline: string }>;
    };
    assert.ok(one.runs.length > 0 && one.runs.every((r) => r.pipeline === 'contacts-inbound'));
    const csv = ferry(['report', '--state', state, '--format', 'csv']).stdout.trim().split('\r\n');
    assert.equal(csv.length, 88);
    assert.match(csv[0]!, /^run_id,pipeline,mode,status,started_at,duration_ms/);
    const bad = ferry(['report', '--state', state, '--format', 'pdf']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--format `pdf` is not known; use html, md, json, csv/);
  });
});
