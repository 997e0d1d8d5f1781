import { formatNumber, formatPercent, formatSeconds } from './figures.js';
import type { ReportData, ReportRun } from './report-data.js';
import { type Bar, barChart, columnChart, escapeHtml, PALETTE, timeLineChart } from './svg-charts.js';

const THROTTLE_COLORS: Record<string, string> = {
  requests: '#4e79a7',
  executionTime: '#e15759',
  concurrency: '#f28e2b',
  unknown: '#bab0ac',
};
const THROTTLE_NAMES: Record<string, string> = {
  requests: 'request count',
  executionTime: 'execution time',
  concurrency: 'concurrency',
  unknown: 'unknown',
};

/** The run report as one self-contained HTML page: inline CSS, SVG and script, nothing fetched. */
export function renderReportHtml(data: ReportData): string {
  const colorOf = pipelineColors(data.pipelines);
  const sections = [
    section(
      'Rows per second',
      'Each run’s throughput: Dataverse writes for inbound runs, rows read for outbound.',
      'rows-per-sec',
      rowsPerSecChart(data, colorOf),
    ),
    section(
      'Run duration against the cadence',
      'Every run should end well inside its schedule; bars above the line overlap the next run.',
      'duration',
      durationChart(data, colorOf),
    ),
    section(
      '429s and Retry-After',
      'Service-protection refusals per run by limit, and the longest pause the service asked for.',
      'throttling',
      throttleCharts(data),
    ),
    section('Time per stage', 'Mean wall time of each stage per pipeline.', 'stages', stageChart(data)),
    section(
      'Dataverse server time against the budget',
      'Server time per 5-minute window against the execution-time limit of one identity on one web server.',
      'server-time',
      serverTimeChart(data, colorOf),
    ),
    section(
      'Rejects by reason',
      'Rows that could not be delivered, across runs. Click a bar (or pick a reason) to see the rows.',
      'rejects',
      rejectsSection(data, colorOf),
    ),
    section(
      'Held-back files',
      'Input files a run could not process; they stay unprocessed and are tried again by the next run.',
      'held-back',
      heldBackSection(data, colorOf),
    ),
    section(
      'Capacity plan',
      'Whether each window’s rows fit the cadence under the service-protection limits.',
      'capacity',
      capacitySection(data),
    ),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ferry report — ${escapeHtml(data.since.slice(0, 16).replace('T', ' '))} to ${escapeHtml(data.generatedAt.slice(0, 16).replace('T', ' '))} UTC</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>dataverse-ferry run report</h1>
  <p class="sub">${escapeHtml(formatRange(data))} · ${data.pipelines.length} pipeline(s) · generated ${escapeHtml(data.generatedAt.replace('T', ' ').slice(0, 19))} UTC${data.emptyScheduledRuns ? ` · ${data.emptyScheduledRuns} empty scheduled run(s) not shown` : ''}</p>
</header>
<main>
${summaryTiles(data)}
${sections.join('\n')}
${runsTable(data)}
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function formatRange(data: ReportData): string {
  return `${data.since.replace('T', ' ').slice(0, 16)} – ${data.generatedAt.replace('T', ' ').slice(0, 16)} UTC`;
}

function pipelineColors(pipelines: readonly string[]): (pipeline: string) => string {
  const map = new Map(pipelines.map((p, i) => [p, PALETTE[i % PALETTE.length]!]));
  return (p) => map.get(p) ?? '#888';
}

function section(title: string, note: string, id: string, body: string): string {
  return `<section class="card" id="${id}" data-chart="${id}"><h2>${escapeHtml(title)}</h2><p class="note">${escapeHtml(note)}</p>${body}</section>`;
}

function summaryTiles(data: ReportData): string {
  const t = data.totals;
  const tiles: Array<[string, string, string?]> = [
    ['runs', formatNumber(t.runs), t.failed ? `${t.failed} not succeeded` : 'all succeeded'],
    ['rows read', formatNumber(t.read)],
    ['upserted', formatNumber(t.upserted)],
    ['written', formatNumber(t.written)],
    ['rejected', formatNumber(t.rejected), t.read ? `${formatPercent(t.rejected / t.read)} of read` : undefined],
    [
      '429s',
      formatNumber(t.throttled),
      t.throttled ? `longest Retry-After ${formatSeconds(t.maxRetryAfterSec)}` : 'none',
    ],
  ];
  return `<div class="tiles">${tiles
    .map(
      ([label, value, sub]) =>
        `<div class="tile${label === 'rejected' && t.rejected ? ' warn' : ''}${label === 'runs' && t.failed ? ' bad' : ''}"><div class="value">${escapeHtml(value)}</div><div class="label">${escapeHtml(label)}</div>${sub ? `<div class="tile-sub">${escapeHtml(sub)}</div>` : ''}</div>`,
    )
    .join('')}</div>`;
}

function runTitle(r: ReportRun): string {
  return `${r.pipeline} · ${r.startedAt.replace('T', ' ').slice(0, 19)} · ${r.status}\n${r.runId}`;
}

function shortTime(iso: string): string {
  return iso.slice(11, 16);
}

function rowsPerSecChart(data: ReportData, colorOf: (p: string) => string): string {
  // Inbound runs are held to Dataverse's pace and outbound ones to the disk's: one axis would flatten one of them.
  const chart = (runs: readonly ReportRun[], yLabel: string, emptyMessage: string) =>
    timeLineChart({
      series: data.pipelines
        .map((p) => ({
          name: p,
          color: colorOf(p),
          points: runs
            .filter((r) => r.pipeline === p && r.rowsPerSec !== null && r.rowsPerSec > 0)
            .map((r) => ({
              x: Date.parse(r.startedAt),
              y: r.rowsPerSec!,
              title: `${runTitle(r)}\n${formatNumber(r.rowsPerSec!, 1)} rows/s`,
            })),
        }))
        .filter((s) => s.points.length > 0),
      yLabel,
      yFormat: (v) => formatNumber(v),
      height: 260,
      emptyMessage,
    });
  const inbound = data.runs.filter((r) => r.requests !== null);
  const outbound = data.runs.filter((r) => r.requests === null);
  if (inbound.length === 0 || outbound.length === 0)
    return chart(data.runs, 'rows/s', 'No run moved rows in this period.');
  return `<h3>Inbound: rows written to Dataverse per second</h3>${chart(inbound, 'rows/s', '')}<h3>Outbound: rows read per second</h3>${chart(outbound, 'rows/s', '')}`;
}

function durationChart(data: ReportData, colorOf: (p: string) => string): string {
  const cadences = [...new Set(data.runs.map((r) => data.cadenceSec[r.pipeline] ?? 900))].sort((a, b) => a - b);
  const bars: Bar[] = data.runs
    .filter((r) => r.durationMs !== null)
    .map((r) => ({
      label: shortTime(r.startedAt),
      title: runTitle(r),
      segments: [{ value: r.durationMs! / 1000, color: colorOf(r.pipeline), name: 'duration' }],
    }));
  const top = Math.max(...cadences, 1);
  const ticks = [0.1, 1, 10, 60, 300, 900, 3600].filter((t) => t <= top * 1.01);
  return columnChart({
    bars,
    yLabel: 'duration (log scale)',
    yFormat: (v) => formatSeconds(v),
    log: { min: 0.1, max: top, ticks },
    refLines: cadences.map((c) => ({ value: c, label: `cadence ${formatSeconds(c)}` })),
    legend: data.pipelines.map((p) => ({ name: p, color: colorOf(p) })),
    emptyMessage: 'No finished runs in this period.',
  });
}

function throttleCharts(data: ReportData): string {
  const writers = data.runs.filter((r) => r.requests !== null);
  const kinds = ['requests', 'executionTime', 'concurrency', 'unknown'];
  const counts = columnChart({
    bars: writers.map((r) => ({
      label: shortTime(r.startedAt),
      title: `${runTitle(r)}\n${formatNumber(r.requests ?? 0)} requests`,
      segments: kinds.map((k) => ({
        value: r.throttled[k] ?? 0,
        color: THROTTLE_COLORS[k]!,
        name: `429 (${THROTTLE_NAMES[k]})`,
      })),
    })),
    yLabel: '429 responses',
    yFormat: (v) => formatNumber(v),
    height: 240,
    legend: kinds.map((k) => ({ name: THROTTLE_NAMES[k]!, color: THROTTLE_COLORS[k]! })),
    emptyMessage: `No 429s in ${formatNumber(writers.length)} run(s) that wrote to Dataverse.`,
  });
  const waits = columnChart({
    bars: writers.map((r) => ({
      label: shortTime(r.startedAt),
      title: runTitle(r),
      segments: [{ value: r.maxRetryAfterSec, color: '#b07aa1', name: 'longest Retry-After' }],
    })),
    yLabel: 'longest Retry-After (s)',
    yFormat: (v) => formatNumber(v, v < 10 && v % 1 ? 1 : 0),
    height: 200,
    emptyMessage: 'The service asked for no pause in this period.',
  });
  return `<h3>429 responses per run</h3>${counts}<h3>Longest Retry-After per run</h3><div data-chart="retry-after">${waits}</div>`;
}

function stageChart(data: ReportData): string {
  const stageNames = [...new Set(data.runs.flatMap((r) => Object.keys(r.stageMs)))];
  const colorOf = new Map(stageNames.map((s, i) => [s, PALETTE[(i + 2) % PALETTE.length]!]));
  const bars: Bar[] = data.pipelines.flatMap((p) => {
    const runs = data.runs.filter((r) => r.pipeline === p && Object.keys(r.stageMs).length > 0);
    if (runs.length === 0) return [];
    const stages = stageNames.filter((s) => runs.some((r) => s in r.stageMs));
    return [
      {
        label: p,
        title: `${p} · mean of ${runs.length} run(s)`,
        segments: stages.map((s) => ({
          name: s,
          color: colorOf.get(s)!,
          value: runs.reduce((a, r) => a + (r.stageMs[s] ?? 0), 0) / runs.length / 1000,
        })),
      },
    ];
  });
  return barChart({
    bars,
    xLabel: 'mean time per run',
    xFormat: (v) => formatSeconds(v),
    seconds: true,
    legend: stageNames.map((s) => ({ name: s, color: colorOf.get(s)! })),
    emptyMessage: 'No stage timings in this period.',
  });
}

function serverTimeChart(data: ReportData, colorOf: (p: string) => string): string {
  const writers = data.runs.filter((r) => r.serverSec !== null && r.durationMs !== null);
  const budget = Math.min(...writers.map((r) => (r.executionBudgetPerSec ?? 4) * 300), 1200);
  return columnChart({
    bars: writers.map((r) => {
      // A run longer than the window spreads its server time over several windows.
      const windows = Math.max(1, r.durationMs! / 1000 / 300);
      return {
        label: shortTime(r.startedAt),
        title: `${runTitle(r)}\n${formatSeconds(r.serverSec!)} server time over ${formatSeconds(r.durationMs! / 1000)}`,
        segments: [{ value: r.serverSec! / windows, color: colorOf(r.pipeline), name: 'server time per 5 min' }],
      };
    }),
    yLabel: 'server time per 5 min',
    yFormat: (v) => formatSeconds(v),
    seconds: true,
    refLines: [{ value: budget, label: `limit ${formatNumber(budget)} s per identity and web server` }],
    legend: [...new Set(writers.map((r) => r.pipeline))].map((p) => ({ name: p, color: colorOf(p) })),
    emptyMessage: 'No run wrote to Dataverse in this period.',
  });
}

function rejectsSection(data: ReportData, colorOf: (p: string) => string): string {
  const chart = barChart({
    bars: data.rejectReasons.map((r) => ({
      label: r.reason,
      filter: r.reason,
      title: `${r.reason}: ${formatNumber(r.count)} row(s) in ${r.runs} run(s)`,
      segments: r.pipelines.map((p) => ({
        name: p,
        color: colorOf(p),
        value: data.runs
          .filter((run) => run.pipeline === p)
          .reduce((a, run) => a + (run.rejectsByReason[r.reason] ?? 0), 0),
      })),
    })),
    xLabel: 'rejected rows',
    xFormat: (v) => formatNumber(v),
    legend: [...new Set(data.rejectReasons.flatMap((r) => r.pipelines))].map((p) => ({ name: p, color: colorOf(p) })),
    emptyMessage: 'No rejected rows in this period.',
    labelWidth: 250,
  });
  if (data.rejectRows.length === 0) return chart;
  const options = data.rejectReasons
    .map((r) => `<option value="${escapeHtml(r.reason)}">${escapeHtml(r.reason)} (${r.count})</option>`)
    .join('');
  const rows = data.rejectRows
    .map(
      (r) =>
        `<tr data-reason="${escapeHtml(r.reason)}"><td class="nowrap"><code>${escapeHtml(r.reason)}</code></td><td class="key">${escapeHtml(r.key ?? '')}</td><td class="file">${escapeHtml(r.sourceFile ? `${r.sourceFile}${r.rowNumber ? `:${r.rowNumber}` : ''}` : '')}</td><td class="msg">${escapeHtml(r.message)}</td><td class="run"><span>${escapeHtml(r.runId)}</span><br>${escapeHtml(r.status)}</td></tr>`,
    )
    .join('');
  const more =
    data.rejectRowsTotal > data.rejectRows.length
      ? `<p class="note">Showing ${formatNumber(data.rejectRows.length)} of ${formatNumber(data.rejectRowsTotal)} rows; <code>ferry rejects --run &lt;id&gt; --format csv</code> lists them all.</p>`
      : '';
  return `${chart}<div class="filter"><label>Reason <select id="reject-filter"><option value="">all reasons</option>${options}</select></label> <span id="reject-count"></span></div><div class="table-wrap"><table id="reject-rows"><thead><tr><th>reason</th><th>key</th><th>file:row</th><th>message</th><th>run, status</th></tr></thead><tbody>${rows}</tbody></table></div>${more}`;
}

function heldBackSection(data: ReportData, colorOf: (p: string) => string): string {
  const chart = columnChart({
    bars: data.runs.map((r) => ({
      label: shortTime(r.startedAt),
      title: `${runTitle(r)}\n${r.heldBackFiles.join('\n')}`,
      segments: [{ value: r.heldBackFiles.length, color: colorOf(r.pipeline), name: 'held-back files' }],
    })),
    yLabel: 'files held back',
    yFormat: (v) => formatNumber(v),
    height: 200,
    emptyMessage: 'No file was held back in this period.',
  });
  if (data.heldBack.length === 0) return chart;
  const rows = data.heldBack
    .flatMap((h) =>
      h.files.map(
        (file) =>
          `<tr><td>${escapeHtml(h.startedAt.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(h.pipeline)}</td><td class="mono">${escapeHtml(file)}</td><td class="mono">${escapeHtml(h.runId)}</td></tr>`,
      ),
    )
    .join('');
  return `${chart}<div class="table-wrap"><table><thead><tr><th>run started</th><th>pipeline</th><th>file</th><th>run</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function capacitySection(data: ReportData): string {
  const plan = data.capacity;
  if (!plan)
    return `<p class="empty">${escapeHtml(data.capacityNote ?? 'No capacity plan: no run wrote to Dataverse.')}</p>`;
  const t = plan.totals;
  const total: Bar = {
    label: 'all tables',
    title: `All tables, one after another: ${formatSeconds(t.windowSec)} per window`,
    segments: plan.tables.map((table, i) => ({
      value: table.windowSec,
      color: PALETTE[i % PALETTE.length]!,
      name: table.table,
    })),
  };
  const chart = barChart({
    seconds: true,
    bars: [
      ...plan.tables.map((table, i) => ({
        label: table.table,
        title: `${table.table}: ${formatNumber(table.rowsPerWindow)} rows per window at ${formatNumber(table.serverMsPerRow, 2)} ms per row (${table.costSource}); bound by ${table.boundBy}`,
        segments: [{ value: table.windowSec, color: PALETTE[i % PALETTE.length]!, name: 'time per window' }],
      })),
      total,
    ],
    xLabel: `time per window with ${plan.identities} identit${plan.identities === 1 ? 'y' : 'ies'}`,
    xFormat: (v) => formatSeconds(v),
    refLine: { value: plan.cadenceSec, label: `cadence ${formatSeconds(plan.cadenceSec)}` },
    emptyMessage: 'The plan has no tables.',
  });
  const verdict = t.fitsCadence
    ? `<span class="ok">fits</span>: a window takes ${formatSeconds(t.windowSec)}, ${formatPercent(t.cadenceShare)} of the ${formatSeconds(plan.cadenceSec)} cadence`
    : `<span class="bad-text">does not fit</span>: a window takes ${formatSeconds(t.windowSec)}, ${formatPercent(t.cadenceShare)} of the ${formatSeconds(plan.cadenceSec)} cadence; ${t.identitiesNeeded} identities would make it`;
  const facts = [
    verdict,
    `identities needed: <b>${t.identitiesNeeded}</b> (planned ${plan.identities}, ${plan.servers} web server(s))`,
    `requests per day: <b>${formatNumber(t.requestsPerDay)}</b>, ${formatPercent(t.entitlementShare)} of ${formatNumber(plan.dailyEntitlement * plan.identities)} daily entitlement${t.entitlementShare > 1 ? ' — <span class="bad-text">over the entitlement</span> (a licensing matter, not a throughput setting)' : ''}`,
    `initial load: ${formatSeconds(t.secPerMillionRows)} per million rows${t.initialLoadSec !== null ? `; the given initial load takes ${formatSeconds(t.initialLoadSec)}` : ''}`,
  ];
  return `${chart}<ul class="facts">${facts.map((x) => `<li>${x}</li>`).join('')}</ul><details><summary>Assumptions</summary><ul>${plan.assumptions.map((a) => `<li>${escapeHtml(a)}</li>`).join('')}</ul></details>`;
}

function runsTable(data: ReportData): string {
  const recent = [...data.runs].reverse().slice(0, 100);
  if (recent.length === 0) return '';
  const rows = recent
    .map(
      (r) =>
        `<tr class="status-${escapeHtml(r.status)}"><td>${escapeHtml(r.startedAt.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(r.pipeline)}</td><td>${escapeHtml(r.status)}</td><td class="num">${r.durationMs === null ? '' : escapeHtml(formatSeconds(r.durationMs / 1000))}</td><td class="num">${formatNumber(r.counts.read)}</td><td class="num">${formatNumber(r.counts.upserted + r.counts.written)}</td><td class="num">${formatNumber(r.counts.rejected)}</td><td class="num">${r.rowsPerSec === null ? '' : formatNumber(r.rowsPerSec, 1)}</td><td class="num">${formatNumber(r.throttledTotal)}</td><td class="mono">${escapeHtml(r.runId)}</td></tr>`,
    )
    .join('');
  return `<section class="card" id="runs"><h2>Runs</h2><p class="note">Newest first${data.runs.length > 100 ? ` (100 of ${data.runs.length})` : ''}.</p><div class="table-wrap"><table><thead><tr><th>started (UTC)</th><th>pipeline</th><th>status</th><th class="num">duration</th><th class="num">read</th><th class="num">upserted / written</th><th class="num">rejected</th><th class="num">rows/s</th><th class="num">429s</th><th>run</th></tr></thead><tbody>${rows}</tbody></table></div></section>`;
}

const CSS = `
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff; --accent:#4e79a7; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:24px 32px 8px; }
h1 { margin:0; font-size:24px; font-weight:650; }
.sub { margin:4px 0 0; color:var(--muted); }
main { padding:8px 32px 40px; max-width:1040px; }
.tiles { display:grid; grid-template-columns:repeat(6,1fr); gap:12px; margin:12px 0 20px; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.tile .value { font-size:24px; font-weight:650; font-variant-numeric:tabular-nums; }
.tile .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile-sub { color:var(--muted); font-size:12px; margin-top:2px; }
.tile.warn .value { color:#b7791f; } .tile.bad .value { color:#c0392b; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 20px 18px; margin:0 0 18px; }
h2 { margin:0; font-size:17px; font-weight:650; }
h3 { margin:14px 0 2px; font-size:13px; font-weight:600; color:var(--muted); }
.note { margin:2px 0 8px; color:var(--muted); font-size:13px; }
.empty { margin:12px 0 4px; padding:18px; text-align:center; color:var(--muted); background:var(--bg); border-radius:8px; }
svg.chart { width:100%; height:auto; display:block; }
svg .grid { stroke:#eef0f3; } svg .axis { stroke:#9aa5b1; }
svg .tick { fill:#616e7c; font-size:11px; font-variant-numeric:tabular-nums; }
svg .axis-label { fill:#616e7c; font-size:12px; }
svg .series { fill:none; stroke-width:2; opacity:.8; }
svg .ref { stroke-width:1.5; stroke-dasharray:6 4; }
svg .ref-label { font-size:11px; font-weight:600; }
svg .bar-label { fill:#1f2933; font-size:12px; }
svg .bar-value { fill:#616e7c; font-size:11px; font-variant-numeric:tabular-nums; }
svg .mark:hover { opacity:.75; } svg rect[data-filter] { cursor:pointer; }
.legend { display:flex; flex-wrap:wrap; gap:6px 16px; margin:6px 0 0 68px; font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
.table-wrap { overflow:auto; max-height:420px; margin-top:10px; border:1px solid var(--line); border-radius:8px; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
td.msg { min-width:220px; } td.run { max-width:170px; } td.key { word-break:break-word; } td.run span { font-size:11px; color:var(--muted); word-break:break-all; }
td.file { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:11.5px; word-break:break-all; min-width:150px; } td.nowrap { white-space:nowrap; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { position:sticky; top:0; background:#fafbfc; font-weight:600; color:var(--muted); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.mono, code { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
tr.status-failed td, tr.status-rejects_exceeded td { background:#fdf0ef; }
.filter { margin-top:10px; color:var(--muted); } select { font:inherit; padding:2px 6px; }
.facts { margin:10px 0 6px; padding-left:18px; } .facts li { margin:3px 0; }
.ok { color:#2f855a; font-weight:650; } .bad-text { color:#c0392b; font-weight:650; }
details { color:var(--muted); font-size:13px; } summary { cursor:pointer; }
@media (max-width:800px) { .tiles { grid-template-columns:repeat(3,1fr); } main, header { padding-left:14px; padding-right:14px; } }
`;

/** Filters the reject rows by reason (select box or a click on a reason's bar). */
const SCRIPT = `
(function () {
  var select = document.getElementById('reject-filter');
  var table = document.getElementById('reject-rows');
  if (!select || !table) return;
  var count = document.getElementById('reject-count');
  function apply() {
    var shown = 0;
    table.querySelectorAll('tbody tr').forEach(function (tr) {
      var on = !select.value || tr.getAttribute('data-reason') === select.value;
      tr.style.display = on ? '' : 'none';
      if (on) shown++;
    });
    count.textContent = shown + ' row(s)';
  }
  select.addEventListener('change', apply);
  document.querySelectorAll('[data-filter]').forEach(function (el) {
    el.addEventListener('click', function () {
      select.value = el.getAttribute('data-filter');
      apply();
      table.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    });
  });
  apply();
})();
`;
