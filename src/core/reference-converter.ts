import type { ChoiceOptionPlan, ColumnPlan, ConversionPlan, ConversionReason, LookupTargetPlan } from './mapping.js';
import { MIN_DATE, UNSAFE_KEY_CHARACTERS } from './mapping.js';

/**
 * A small, row-at-a-time TypeScript implementation of the conversion rules, written independently of the SQL
 * compilers. It is the oracle of the differential test: on any row, it and the SQL must agree on the reject reason
 * (and the column) or on the payload and key. It is not used on the data path (one row at a time is far too slow).
 *
 * Row values are what a staged row holds: `string` (VARCHAR, or DECIMAL as its exact text), `bigint`/integral
 * `number` (integers), non-integral `number` (DOUBLE), `boolean`, `Date` (TIMESTAMP, UTC), or null.
 */
export type ReferenceResult =
  | {
      readonly ok: true;
      readonly payload: string;
      readonly key: string;
      readonly keyPredicate: string;
      readonly keySafe: boolean;
    }
  | { readonly ok: false; readonly reason: ConversionReason; readonly column: number };

type Verdict = { reason: ConversionReason } | { json: string | null; keyText?: string | null };

/** Converts one row per the plan. */
export function referenceConvert(
  plan: ConversionPlan,
  row: Readonly<Record<string, unknown>>,
  /** Source column → its staged type (DuckDB names) when not text: a TIMESTAMPTZ value is an instant. */
  sourceTypes?: Readonly<Record<string, string>>,
): ReferenceResult {
  const verdicts = new Map<number, Verdict>();
  const choiceValue = new Map<number, number | null>();
  for (const column of plan.columns) {
    verdicts.set(column.index, convertColumn(column, row, choiceValue, sourceTypes));
  }
  // statuscode must belong to statecode (checked at the status column, after its own value check).
  for (const column of plan.columns) {
    if (column.rule !== 'choice' || !column.stateCheck) continue;
    const v = verdicts.get(column.index)!;
    const status = choiceValue.get(column.index);
    const state = choiceValue.get(column.stateCheck.stateColumn);
    if ('reason' in v || status === null || status === undefined || state === null || state === undefined) continue;
    const belongs = column.stateCheck.stateOf.find(([s]) => s === status)?.[1];
    if (belongs !== state) verdicts.set(column.index, { reason: 'status.invalid_for_state' });
  }

  const blanks = plan.key.map((k) => isBlank(row[k.source]));
  const firstBlank = blanks.indexOf(true);
  if (firstBlank >= 0) return { ok: false, reason: 'key.missing', column: plan.key[firstBlank]!.column };
  for (const column of plan.columns) {
    const v = verdicts.get(column.index)!;
    if ('reason' in v) return { ok: false, reason: v.reason, column: column.index };
  }

  const keyTexts = plan.key.map((k) => {
    const v = verdicts.get(k.column)!;
    return 'keyText' in v ? (v.keyText ?? null) : null;
  });
  if (keyTexts.some((t) => t === null)) throw new Error('reference: a key text is missing without a reason');
  const key = plan.key.map((k, i) => `${k.attribute}=${keyTexts[i]}`).join(',');
  const keyPredicate = plan.key
    .map((k, i) => `${k.attribute}=${k.literal === 'string' ? quoteKey(keyTexts[i]!) : keyTexts[i]}`)
    .join(',');
  const keySafe = plan.key.every((k, i) => k.literal !== 'string' || !hasUnsafe(keyTexts[i]!));
  const members: string[] = [];
  for (const column of plan.columns) {
    if (!column.inPayload) continue;
    const v = verdicts.get(column.index)!;
    if ('json' in v && v.json !== null)
      members.push(column.rule === 'lookup' ? v.json : `${JSON.stringify(column.attribute)}:${v.json}`);
  }
  return { ok: true, payload: `{${members.join(',')}}`, key, keyPredicate, keySafe };
}

// --- text helpers ------------------------------------------------------------------------------------------------

/** Spaces only, like SQL TRIM. */
function trimSpaces(s: string): string {
  return s.replace(/^ +| +$/g, '');
}

function asText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

/** Trimmed text, null when null or empty. */
function trimmedText(v: unknown): string | null {
  const t = asText(v);
  if (t === null) return null;
  const s = trimSpaces(t);
  return s === '' ? null : s;
}

function isBlank(v: unknown): boolean {
  return trimmedText(v) === null;
}

function hasUnsafe(s: string): boolean {
  return UNSAFE_KEY_CHARACTERS.some((c) => s.includes(c));
}

function quoteKey(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

function isInteger(v: unknown): v is bigint | number {
  return typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v));
}

/** sign, integer digits without leading zeros, fraction digits without trailing zeros; null when not a number. */
function parseNumber(t: string): { sign: string; int: string; frac: string } | null {
  const m = /^([+-]?)0*([0-9]*)(?:\.([0-9]*?)0*)?$/.exec(t);
  if (!m || !/[0-9]/.test(t)) return null;
  return { sign: m[1]!, int: m[2]!, frac: m[3] ?? '' };
}

// --- rules -----------------------------------------------------------------------------------------------------

function convertColumn(
  column: ColumnPlan,
  row: Readonly<Record<string, unknown>>,
  choiceValue: Map<number, number | null>,
  sourceTypes: Readonly<Record<string, string>> | undefined,
): Verdict {
  const nullJson = column.nullMeans === 'clear' ? 'null' : null;
  const v = row[column.sources[0]!];
  switch (column.rule) {
    case 'string': {
      const t = asText(v);
      if (t === null) return { json: nullJson, keyText: null };
      // Dataverse counts UTF-16 code units, as JS does.
      if (t.length > column.maxLength) return { reason: 'string.too_long' };
      return { json: JSON.stringify(t), keyText: t };
    }
    case 'integer': {
      if (v === null || v === undefined) return { json: nullJson, keyText: null };
      let n: bigint;
      if (isInteger(v)) {
        n = BigInt(v);
      } else if (typeof v === 'number') {
        if (Number.isNaN(v)) return { reason: 'number.unparsable' };
        if (!Number.isFinite(v)) return { reason: 'number.out_of_range' };
        return { reason: 'number.precision' };
      } else {
        const t = trimmedText(v);
        if (t === null) return { json: nullJson, keyText: null };
        const p = parseNumber(t);
        if (!p) return { reason: 'number.unparsable' };
        if (p.frac !== '') return { reason: 'number.precision' };
        if (p.int.length > 38) return { reason: 'number.out_of_range' };
        n = BigInt(`${p.sign}${p.int || '0'}`);
      }
      if (n < BigInt(column.min) || n > BigInt(column.max)) return { reason: 'number.out_of_range' };
      return { json: n.toString(), keyText: n.toString() };
    }
    case 'decimal': {
      if (v === null || v === undefined) return { json: nullJson };
      let t: string | null;
      if (typeof v === 'number' && !Number.isInteger(v)) {
        if (Number.isNaN(v)) return { reason: 'number.unparsable' };
        if (!Number.isFinite(v) || Math.abs(v) >= 1e28) return { reason: 'number.out_of_range' };
        t = v.toFixed(10);
      } else {
        t = trimmedText(v);
      }
      if (t === null) return { json: nullJson };
      const p = parseNumber(t);
      if (!p) return { reason: 'number.unparsable' };
      if (p.frac.length > column.precision) return { reason: 'number.precision' };
      if (p.int.length > 28) return { reason: 'number.out_of_range' };
      const scaled = BigInt(`${p.sign}${p.int || '0'}${p.frac.padEnd(column.precision, '0')}`);
      const limit = (d: string) => BigInt(d.replace('.', ''));
      if (scaled < limit(column.min) || scaled > limit(column.max)) return { reason: 'number.out_of_range' };
      return { json: `${scaled < 0n ? '-' : ''}${p.int || '0'}${p.frac ? `.${p.frac}` : ''}` };
    }
    case 'double': {
      if (v === null || v === undefined) return { json: nullJson };
      let d: number;
      if (typeof v === 'number' || typeof v === 'bigint') {
        d = Number(v);
        if (Number.isNaN(d)) return { reason: 'number.unparsable' };
      } else {
        const t = trimmedText(v);
        if (t === null) return { json: nullJson };
        if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(t)) return { reason: 'number.unparsable' };
        d = Number(t);
      }
      if (!Number.isFinite(d) || d < column.min || d > column.max) return { reason: 'number.out_of_range' };
      return { json: String(d) };
    }
    case 'boolean': {
      if (typeof v === 'boolean') return { json: String(v) };
      if (isInteger(v)) {
        const n = BigInt(v);
        return n === 1n ? { json: 'true' } : n === 0n ? { json: 'false' } : { reason: 'boolean.invalid' };
      }
      const t = trimmedText(v);
      if (t === null) return { json: nullJson };
      const l = t.toLowerCase();
      if (l === 'true' || l === '1' || l === 'yes' || l === 'y') return { json: 'true' };
      if (l === 'false' || l === '0' || l === 'no' || l === 'n') return { json: 'false' };
      return { reason: 'boolean.invalid' };
    }
    case 'datetime': {
      // UserLocal sends the UTC instant, TimeZoneIndependent the wall clock as written (offset dropped), DateOnly
      // the calendar date as written. No offset: a wall clock in the source time zone. An instant (a TIMESTAMPTZ
      // source, or a Date): the wall clock in the source time zone.
      if (v === null || v === undefined) return { json: nullJson };
      const zone = column.sourceTimeZone;
      let local: Date;
      let instant: Date;
      const typed = sourceTypes?.[column.sources[0]!]?.toUpperCase();
      if (v instanceof Date || typed === 'TIMESTAMPTZ' || typed === 'TIMESTAMP WITH TIME ZONE') {
        const at = v instanceof Date ? v : parseDateTime(String(v).trim())?.instant;
        if (!at) return { reason: 'date.unparsable' };
        instant = at;
        local = new Date(at.getTime() + zoneOffsetMinutes(zone, at.getTime()) * 60_000);
      } else {
        const t = trimmedText(v);
        if (t === null) return { json: nullJson };
        const parsed = parseDateTime(t);
        if (!parsed) return { reason: 'date.unparsable' };
        local = parsed.local;
        instant = parsed.hasOffset ? parsed.instant : new Date(wallClockToUtc(zone, local.getTime()));
      }
      if (column.behavior === 'DateOnly') {
        const day = formatYear(local);
        if (day < MIN_DATE) return { reason: 'date.before_min' };
        return { json: JSON.stringify(day) };
      }
      const sent = column.behavior === 'TimeZoneIndependent' ? local : instant;
      if (sent.getTime() < Date.parse(`${MIN_DATE}T00:00:00Z`)) return { reason: 'date.before_min' };
      return { json: JSON.stringify(`${sent.toISOString().slice(0, 19)}Z`) };
    }
    case 'guid': {
      const t = trimmedText(v);
      if (t === null) return { json: nullJson };
      if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(t))
        return { reason: 'guid.invalid' };
      return { json: JSON.stringify(t.toLowerCase()) };
    }
    case 'choice': {
      const t = trimmedText(v);
      if (t === null) {
        choiceValue.set(column.index, null);
        return { json: nullJson };
      }
      const r = resolveChoice(t, column.mode, column.options);
      choiceValue.set(column.index, r);
      if (r === null) {
        const looksNumeric = /^[+-]?[0-9]+$/.test(t);
        const reason =
          column.mode === 'value'
            ? 'choice.unknown_value'
            : column.mode === 'label'
              ? 'choice.unknown_label'
              : looksNumeric
                ? 'choice.unknown_value'
                : 'choice.unknown_label';
        return { reason };
      }
      return { json: String(r) };
    }
    case 'multiselect': {
      const t = asText(v);
      if (t === null) return { json: nullJson };
      const members = t
        .split(column.separator)
        .map(trimSpaces)
        .filter((x) => x !== '')
        .map((x) => resolveChoice(x, column.mode, column.options));
      if (members.some((m) => m === null)) return { reason: 'multiselect.invalid_member' };
      if (members.length === 0) return { json: nullJson };
      const unique = members.filter((m, i) => members.indexOf(m) === i);
      return { json: JSON.stringify(unique.join(',')) };
    }
    case 'lookup':
      return convertLookup(column, row);
  }
}

function resolveChoice(
  t: string,
  mode: 'label' | 'value' | 'auto',
  options: readonly ChoiceOptionPlan[],
): number | null {
  let byValue: number | null = null;
  if (/^[+-]?[0-9]+$/.test(t) && t.length <= 12) {
    const n = Number(t);
    if (options.some((o) => o.value === n)) byValue = n === 0 ? 0 : n;
  }
  const l = t.toLowerCase();
  const byLabel = options.find((o) => o.label.trim().toLowerCase() === l)?.value ?? null;
  if (mode === 'value') return byValue;
  if (mode === 'label') return byLabel;
  return byValue ?? byLabel;
}

const DATETIME =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9])(?:\.([0-9]+))?)?)? ?(Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?$/;

/** Minutes to add to UTC to get the wall clock of `zone` at the instant `utcMs`. */
function zoneOffsetMinutes(zone: string, utcMs: number): number {
  if (zone === 'UTC') return 0;
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    era: 'short',
  }).formatToParts(new Date(utcMs));
  const n = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  const year = parts.find((p) => p.type === 'era')!.value === 'BC' ? 1 - n('year') : n('year');
  const wall = new Date(0);
  wall.setUTCFullYear(year, n('month') - 1, n('day'));
  wall.setUTCHours(n('hour'), n('minute'), n('second'), 0);
  return Math.round((wall.getTime() - (utcMs - (((utcMs % 1000) + 1000) % 1000))) / 60_000);
}

/**
 * The UTC instant of a wall clock in `zone`: its offset looked up twice (once at the wall clock read as UTC, once at
 * the first guess), which settles every time outside the hour a DST change skips or repeats.
 */
function wallClockToUtc(zone: string, wallMs: number): number {
  if (zone === 'UTC') return wallMs;
  const first = wallMs - zoneOffsetMinutes(zone, wallMs) * 60_000;
  return wallMs - zoneOffsetMinutes(zone, first) * 60_000;
}

function parseDateTime(t: string): { local: Date; instant: Date; hasOffset: boolean } | null {
  const m = DATETIME.exec(t);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as number[];
  const leap = (y! % 4 === 0 && y! % 100 !== 0) || y! % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (mo! < 1 || mo! > 12 || d! < 1 || d! > days[mo! - 1]!) return null;
  const local = new Date(0);
  local.setUTCFullYear(y!, mo! - 1, d!);
  local.setUTCHours(h!, mi!, s!, 0);
  const z = (m[8] ?? '').replace(':', '');
  const offset =
    z === '' || z === 'Z'
      ? 0
      : (z[0] === '-' ? -1 : 1) * (Number(z.slice(1, 3)) * 60 + (z.length === 5 ? Number(z.slice(3, 5)) : 0));
  return { local, instant: new Date(local.getTime() - offset * 60_000), hasOffset: z !== '' };
}

/** `YYYY-MM-DD` of a UTC date, years zero-padded to 4 digits (toISOString switches to ±YYYYYY outside 0..9999). */
function formatYear(d: Date): string {
  const y = d.getUTCFullYear();
  const pad = (n: number, w: number) => String(n).padStart(w, '0');
  return `${y < 0 ? '-' : ''}${pad(Math.abs(y), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
}

function convertLookup(column: ColumnPlan & { rule: 'lookup' }, row: Readonly<Record<string, unknown>>): Verdict {
  const nullFragment = (t: LookupTargetPlan) =>
    column.nullMeans === 'clear' ? `${JSON.stringify(`${t.navigationProperty}@odata.bind`)}:null` : null;
  const evaluate = (target: LookupTargetPlan): { blank: boolean; verdict: Verdict } => {
    const member = (bind: string) => ({
      json: `${JSON.stringify(`${target.navigationProperty}@odata.bind`)}:${JSON.stringify(bind)}`,
    });
    if (target.key === null) {
      const g = trimmedText(row[target.guidSource!]);
      if (g === null) return { blank: true, verdict: { json: nullFragment(target) } };
      if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(g))
        return { blank: false, verdict: { reason: 'guid.invalid' } };
      return { blank: false, verdict: member(`/${target.entitySetName}(${g.toLowerCase()})`) };
    }
    const parts = target.key.map((part) => {
      const v = row[part.source];
      if (part.literal === 'string') {
        const raw = asText(v);
        const blank = raw === null || trimSpaces(raw) === '';
        return { part, blank, bad: false, unsafe: !blank && hasUnsafe(raw!), literal: blank ? '' : quoteKey(raw!) };
      }
      const raw = trimmedText(v);
      const ok = raw !== null && /^[+-]?[0-9]+$/.test(raw) && raw.length <= 38;
      return {
        part,
        blank: raw === null,
        bad: raw !== null && !ok,
        unsafe: false,
        literal: ok ? BigInt(raw!).toString() : '',
      };
    });
    if (parts.every((p) => p.blank)) return { blank: true, verdict: { json: nullFragment(target) } };
    if (parts.some((p) => p.blank)) return { blank: false, verdict: { reason: 'key.missing' } };
    if (parts.some((p) => p.bad)) return { blank: false, verdict: { reason: 'number.unparsable' } };
    if (parts.some((p) => p.unsafe)) return { blank: false, verdict: { reason: 'lookup.key_unsafe' } };
    return {
      blank: false,
      verdict: member(`/${target.entitySetName}(${parts.map((p) => `${p.part.attribute}=${p.literal}`).join(',')})`),
    };
  };
  if (!column.tableFrom) return evaluate(column.targets[0]!).verdict;
  const tt = trimmedText(row[column.tableFrom])?.toLowerCase() ?? null;
  const results = column.targets.map((t) => ({ target: t, ...evaluate(t) }));
  if (tt === null && results.every((r) => r.blank)) return { json: nullFragment(column.targets[0]!) };
  const chosen = results.find((r) => r.target.table === tt);
  if (!chosen) return { reason: 'lookup.target_unknown' };
  return chosen.verdict;
}
