/**
 * Small inline-SVG charts for the HTML report: no library, no network. Every data mark has the class `mark` and a
 * `<title>` (the browser's tooltip); a chart without data says so instead of drawing an empty frame.
 */

export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];

const WIDTH = 920;
const MARGIN = { top: 16, right: 24, bottom: 44, left: 68 };

export interface RefLine {
  readonly value: number;
  readonly label: string;
  readonly color?: string;
}

export interface LineSeries {
  readonly name: string;
  readonly color: string;
  readonly points: ReadonlyArray<{ readonly x: number; readonly y: number; readonly title: string }>;
}

export interface BarSegment {
  readonly value: number;
  readonly color: string;
  readonly name: string;
}

export interface Bar {
  readonly label: string;
  readonly segments: readonly BarSegment[];
  readonly title: string;
  /** For `hbarChart`: a `data-filter` value the page's script uses to show the rows behind the bar. */
  readonly filter?: string;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const f = (n: number) => (Math.round(n * 10) / 10).toString();

/** Round tick steps (1, 2, 5 × 10^n) covering 0..max in about `count` steps. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 0.001; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  if (ticks.at(-1)! < max) ticks.push(ticks.at(-1)! + step);
  return ticks;
}

/** Tick values for a seconds axis at round durations (10 s, 1 min, 5 min, 15 min, 1 h ...). */
export function durationTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const steps = [
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  ];
  const step = steps.find((s) => max / s <= count) ?? Math.ceil(max / count / 86400) * 86400;
  const ticks: number[] = [];
  for (let v = 0; v < max + step; v += step) ticks.push(Math.round(v * 1000) / 1000);
  return ticks;
}

function timeLabel(ms: number, spanMs: number): string {
  const iso = new Date(ms).toISOString();
  return spanMs > 36 * 3_600_000 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
}

function frame(height: number, inner: string, ariaLabel: string): string {
  return `<svg class="chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escapeHtml(ariaLabel)}" xmlns="http://www.w3.org/2000/svg">${inner}</svg>`;
}

function empty(message: string): string {
  return `<p class="empty">${escapeHtml(message)}</p>`;
}

function legend(items: ReadonlyArray<{ name: string; color: string }>): string {
  if (items.length === 0) return '';
  return `<div class="legend">${items
    .map((i) => `<span><i style="background:${i.color}"></i>${escapeHtml(i.name)}</span>`)
    .join('')}</div>`;
}

interface YScale {
  readonly ticks: readonly number[];
  readonly toY: (v: number) => number;
}

function linearY(max: number, top: number, bottom: number, seconds = false): YScale {
  const ticks = seconds ? durationTicks(max) : niceTicks(max);
  const hi = ticks.at(-1)!;
  return { ticks, toY: (v) => bottom - (Math.max(0, v) / hi) * (bottom - top) };
}

/** Log scale over powers of ten (values below `min` sit on the axis). */
function logY(min: number, max: number, top: number, bottom: number, ticks: readonly number[]): YScale {
  const lo = Math.log10(min);
  const hi = Math.log10(max);
  return {
    ticks,
    toY: (v) => bottom - ((Math.log10(Math.max(v, min)) - lo) / (hi - lo)) * (bottom - top),
  };
}

function yAxis(scale: YScale, format: (v: number) => string, label: string, height: number): string {
  const right = WIDTH - MARGIN.right;
  const lines = scale.ticks
    .map((t) => {
      const y = f(scale.toY(t));
      return `<line class="grid" x1="${MARGIN.left}" x2="${right}" y1="${y}" y2="${y}"/><text class="tick" x="${MARGIN.left - 8}" y="${y}" dy="0.32em" text-anchor="end">${escapeHtml(format(t))}</text>`;
    })
    .join('');
  const mid = (MARGIN.top + height - MARGIN.bottom) / 2;
  return `${lines}<text class="axis-label" transform="translate(14 ${f(mid)}) rotate(-90)" text-anchor="middle">${escapeHtml(label)}</text>`;
}

function refLines(lines: readonly RefLine[], toY: (v: number) => number): string {
  const right = WIDTH - MARGIN.right;
  return lines
    .map((l) => {
      const y = f(toY(l.value));
      const color = l.color ?? '#c0392b';
      return `<line class="ref" x1="${MARGIN.left}" x2="${right}" y1="${y}" y2="${y}" stroke="${color}"/><text class="ref-label" x="${right - 4}" y="${y}" dy="-0.45em" text-anchor="end" fill="${color}">${escapeHtml(l.label)}</text>`;
    })
    .join('');
}

/** Points joined per series over a time axis. */
export function timeLineChart(options: {
  readonly series: readonly LineSeries[];
  readonly yLabel: string;
  readonly yFormat: (v: number) => string;
  readonly height?: number;
  readonly emptyMessage: string;
}): string {
  const points = options.series.flatMap((s) => s.points);
  if (points.length === 0) return empty(options.emptyMessage);
  const height = options.height ?? 300;
  const bottom = height - MARGIN.bottom;
  const xs = points.map((p) => p.x);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 - x0 < 60_000) {
    x0 -= 60_000;
    x1 += 60_000;
  }
  const toX = (x: number) => MARGIN.left + ((x - x0) / (x1 - x0)) * (WIDTH - MARGIN.left - MARGIN.right);
  const scale = linearY(Math.max(...points.map((p) => p.y)), MARGIN.top, bottom);
  const tickStep =
    [900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000].find(
      (step) => (x1 - x0) / step <= 8,
    ) ?? 86_400_000 * Math.ceil((x1 - x0) / 86_400_000 / 8);
  const xTicks: number[] = [];
  for (let t = Math.ceil(x0 / tickStep) * tickStep; t <= x1; t += tickStep) xTicks.push(t);
  // A short period (runs a few minutes apart) has no round tick inside it: label its ends.
  if (xTicks.length < 2) xTicks.splice(0, xTicks.length, x0, x1);
  const xAxis = xTicks
    .map(
      (t) =>
        `<text class="tick" x="${f(toX(t))}" y="${bottom + 18}" text-anchor="middle">${timeLabel(t, x1 - x0)}</text>`,
    )
    .join('');
  const body = options.series
    .map((s) => {
      const sorted = [...s.points].sort((a, b) => a.x - b.x);
      const path = sorted.map((p, i) => `${i ? 'L' : 'M'}${f(toX(p.x))} ${f(scale.toY(p.y))}`).join(' ');
      const dots = sorted
        .map(
          (p) =>
            `<circle class="mark" cx="${f(toX(p.x))}" cy="${f(scale.toY(p.y))}" r="3.5" fill="${s.color}"><title>${escapeHtml(p.title)}</title></circle>`,
        )
        .join('');
      return `<path class="series" d="${path}" stroke="${s.color}"/>${dots}`;
    })
    .join('');
  const svg = frame(
    height,
    `${yAxis(scale, options.yFormat, options.yLabel, height)}<line class="axis" x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${bottom}" y2="${bottom}"/>${xAxis}${body}`,
    options.yLabel,
  );
  return svg + legend(options.series);
}

/** Vertical bars (stacked segments), one per category in order, with optional reference lines. */
export function columnChart(options: {
  readonly bars: readonly Bar[];
  readonly yLabel: string;
  readonly yFormat: (v: number) => string;
  readonly refLines?: readonly RefLine[];
  /** Log scale from `min` to `max` with the given ticks (durations spanning 0.1 s to 15 min). */
  readonly log?: { readonly min: number; readonly max: number; readonly ticks: readonly number[] };
  /** The values are seconds: ticks at round durations. */
  readonly seconds?: boolean;
  readonly height?: number;
  readonly legend?: ReadonlyArray<{ name: string; color: string }>;
  readonly emptyMessage: string;
  /** Category labels under the axis: every n-th bar. Default: about 10 labels. */
  readonly labelEvery?: number;
}): string {
  const bars = options.bars.filter((b) => b.segments.some((s) => s.value > 0));
  if (bars.length === 0) return empty(options.emptyMessage);
  const height = options.height ?? 300;
  const bottom = height - MARGIN.bottom;
  const totals = options.bars.map((b) => b.segments.reduce((a, s) => a + s.value, 0));
  const top = Math.max(...totals, ...(options.refLines ?? []).map((r) => r.value));
  const scale = options.log
    ? logY(options.log.min, Math.max(options.log.max, top), MARGIN.top, bottom, options.log.ticks)
    : linearY(top, MARGIN.top, bottom, options.seconds);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const slot = plotWidth / options.bars.length;
  const barWidth = Math.max(2, Math.min(36, slot * 0.72));
  const every = options.labelEvery ?? Math.max(1, Math.ceil(options.bars.length / 10));
  const marks = options.bars
    .map((bar, i) => {
      const x = MARGIN.left + slot * i + (slot - barWidth) / 2;
      let acc = 0;
      const rects = bar.segments
        .filter((s) => s.value > 0)
        .map((s) => {
          const y0 = scale.toY(acc);
          acc += s.value;
          const y1 = scale.toY(acc);
          return `<rect class="mark" x="${f(x)}" y="${f(y1)}" width="${f(barWidth)}" height="${f(Math.max(1, y0 - y1))}" fill="${s.color}"><title>${escapeHtml(`${bar.title}\n${s.name}: ${options.yFormat(s.value)}`)}</title></rect>`;
        })
        .join('');
      const label =
        i % every === 0
          ? `<text class="tick" x="${f(x + barWidth / 2)}" y="${bottom + 18}" text-anchor="middle">${escapeHtml(bar.label)}</text>`
          : '';
      return rects + label;
    })
    .join('');
  const svg = frame(
    height,
    `${yAxis(scale, options.yFormat, options.yLabel, height)}<line class="axis" x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${bottom}" y2="${bottom}"/>${marks}${refLines(options.refLines ?? [], scale.toY)}`,
    options.yLabel,
  );
  return svg + legend(options.legend ?? []);
}

/** Horizontal bars (stacked segments) with labels on the left, optionally one vertical reference line. */
export function barChart(options: {
  readonly bars: readonly Bar[];
  readonly xFormat: (v: number) => string;
  readonly xLabel: string;
  readonly refLine?: RefLine;
  readonly legend?: ReadonlyArray<{ name: string; color: string }>;
  readonly emptyMessage: string;
  readonly labelWidth?: number;
  /** The values are seconds: ticks at round durations. */
  readonly seconds?: boolean;
}): string {
  if (options.bars.length === 0 || options.bars.every((b) => b.segments.every((s) => s.value <= 0)))
    return empty(options.emptyMessage);
  const labelWidth = options.labelWidth ?? 210;
  const rowHeight = 26;
  const height = MARGIN.top + options.bars.length * rowHeight + 40;
  const left = labelWidth;
  const right = WIDTH - MARGIN.right - 70;
  const totals = options.bars.map((b) => b.segments.reduce((a, s) => a + s.value, 0));
  const top = Math.max(...totals, options.refLine?.value ?? 0);
  const ticks = options.seconds ? durationTicks(top) : niceTicks(top);
  const hi = ticks.at(-1)!;
  const toX = (v: number) => left + (v / hi) * (right - left);
  const axisY = MARGIN.top + options.bars.length * rowHeight + 4;
  const grid = ticks
    .map(
      (t) =>
        `<line class="grid" x1="${f(toX(t))}" x2="${f(toX(t))}" y1="${MARGIN.top}" y2="${axisY}"/><text class="tick" x="${f(toX(t))}" y="${axisY + 16}" text-anchor="middle">${escapeHtml(options.xFormat(t))}</text>`,
    )
    .join('');
  const rows = options.bars
    .map((bar, i) => {
      const y = MARGIN.top + i * rowHeight + 4;
      let acc = 0;
      const rects = bar.segments
        .filter((s) => s.value > 0)
        .map((s) => {
          const x0 = toX(acc);
          acc += s.value;
          return `<rect class="mark" x="${f(x0)}" y="${y}" width="${f(Math.max(1.5, toX(acc) - x0))}" height="${rowHeight - 8}" fill="${s.color}"${bar.filter ? ` data-filter="${escapeHtml(bar.filter)}"` : ''}><title>${escapeHtml(`${bar.title}\n${s.name}: ${options.xFormat(s.value)}`)}</title></rect>`;
        })
        .join('');
      const total = totals[i]!;
      return `<text class="bar-label" x="${left - 8}" y="${y + (rowHeight - 8) / 2}" dy="0.32em" text-anchor="end">${escapeHtml(bar.label)}</text>${rects}<text class="bar-value" x="${f(toX(total) + 6)}" y="${y + (rowHeight - 8) / 2}" dy="0.32em">${escapeHtml(options.xFormat(total))}</text>`;
    })
    .join('');
  const ref = options.refLine
    ? `<line class="ref" x1="${f(toX(options.refLine.value))}" x2="${f(toX(options.refLine.value))}" y1="${MARGIN.top - 6}" y2="${axisY}" stroke="${options.refLine.color ?? '#c0392b'}"/><text class="ref-label" x="${f(toX(options.refLine.value) - 4)}" y="${MARGIN.top + 2}" text-anchor="end" fill="${options.refLine.color ?? '#c0392b'}">${escapeHtml(options.refLine.label)}</text>`
    : '';
  const svg = frame(
    height + 6,
    `${grid}<line class="axis" x1="${left}" x2="${left}" y1="${MARGIN.top}" y2="${axisY}"/>${rows}${ref}<text class="axis-label" x="${f((left + right) / 2)}" y="${axisY + 34}" text-anchor="middle">${escapeHtml(options.xLabel)}</text>`,
    options.xLabel,
  );
  return svg + legend(options.legend ?? []);
}
