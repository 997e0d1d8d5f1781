import { ExpressionError } from './expression-error.js';

/**
 * A UTC instant with .NET precision: ticks of 100 ns since 0001-01-01T00:00:00Z, as .NET `DateTime.Ticks` counts
 * them (the `ticks()` function returns "the ticks property", learn.microsoft.com/azure/data-factory/
 * control-flow-expression-language-functions#ticks).
 */
export type Ticks = bigint;

const TICKS_PER_MS = 10_000n;
/** Ticks between 0001-01-01 and 1970-01-01. */
const EPOCH_TICKS = 621_355_968_000_000_000n;

export function ticksFromMs(ms: number): Ticks {
  const whole = Math.floor(ms);
  // File times carry sub-millisecond precision; keep it in ticks.
  return BigInt(whole) * TICKS_PER_MS + EPOCH_TICKS + BigInt(Math.round((ms - whole) * 10_000));
}

export function msFromTicks(ticks: Ticks): number {
  return Number((ticks - EPOCH_TICKS) / TICKS_PER_MS - ((ticks - EPOCH_TICKS) % TICKS_PER_MS < 0n ? 1n : 0n));
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;
const US = /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*(AM|PM))?)?$/i;

/**
 * Reads a timestamp string. Accepted: ISO 8601 (`2018-03-15T12:00:00`, fractions up to 7 digits, `Z` or an offset,
 * converted to UTC) and the invariant-culture `MM/dd/yyyy HH:mm:ss` the documentation's examples use. A timestamp
 * without zone is UTC. The docs are silent on other formats, so anything else is an error naming the value.
 */
export function parseTimestamp(text: unknown, fn: string): Ticks {
  if (typeof text !== 'string') {
    throw new ExpressionError(`\`${fn}\` expects a timestamp string, got \`${JSON.stringify(text)}\`.`);
  }
  const value = text.trim();
  let m = ISO.exec(value);
  if (m) {
    const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m;
    let ms = utcMs(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
    if (zone && zone.toUpperCase() !== 'Z') {
      const sign = zone.startsWith('-') ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      ms -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60_000;
    }
    if (Number.isNaN(ms)) throw badTimestamp(text, fn);
    return ticksFromMs(ms) + BigInt((frac || '0').padEnd(7, '0'));
  }
  m = US.exec(value);
  if (m) {
    const [, mo, d, y, hRaw = '0', mi = '0', s = '0', ampm] = m;
    let h = Number(hRaw);
    if (ampm) h = (h % 12) + (ampm.toUpperCase() === 'PM' ? 12 : 0);
    return ticksFromMs(utcMs(Number(y), Number(mo) - 1, Number(d), h, Number(mi), Number(s)));
  }
  throw badTimestamp(text, fn);
}

/** `Date.UTC` without its 1900 offset for years 0–99. */
function utcMs(y: number, mo: number, d: number, h: number, mi: number, s: number): number {
  const date = new Date(Date.UTC(2000, mo, d, h, mi, s));
  date.setUTCFullYear(y);
  return date.getTime();
}

function badTimestamp(text: string, fn: string): ExpressionError {
  return new ExpressionError(
    `\`${fn}\` cannot read the timestamp \`${text}\`; use ISO 8601 (\`2018-03-15T12:00:00Z\`) or \`MM/dd/yyyy HH:mm:ss\`.`,
  );
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Standard format strings expanded to custom patterns, invariant culture (learn.microsoft.com/dotnet/standard/base-types/standard-date-and-time-format-strings). */
const STANDARD: Record<string, string> = {
  o: "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
  O: "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
  s: "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
  u: "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
  R: "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
  r: "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
  d: 'MM/dd/yyyy',
  D: 'dddd, dd MMMM yyyy',
  t: 'HH:mm',
  T: 'HH:mm:ss',
  f: 'dddd, dd MMMM yyyy HH:mm',
  F: 'dddd, dd MMMM yyyy HH:mm:ss',
  g: 'MM/dd/yyyy HH:mm',
  G: 'MM/dd/yyyy HH:mm:ss',
  M: 'MMMM dd',
  m: 'MMMM dd',
  Y: 'yyyy MMMM',
  y: 'yyyy MMMM',
};

/**
 * Formats a UTC instant with a .NET standard or custom date and time format string, invariant culture
 * (learn.microsoft.com/dotnet/standard/base-types/custom-date-and-time-format-strings). Default `o`, as the
 * expression functions document. `offsetMinutes` is the offset of the local time being formatted (0 = UTC), which
 * drives `K` (`Z` for UTC) and `z`.
 */
export function formatTicks(ticks: Ticks, format = 'o', offsetMinutes: number | null = 0): string {
  const pattern = format.length === 1 ? STANDARD[format] : format;
  if (pattern === undefined) {
    throw new ExpressionError(
      `Format string \`${format}\` is not a .NET standard date and time format; use one of ${Object.keys(STANDARD).join(', ')} or a custom pattern such as \`yyyy-MM-dd\`.`,
    );
  }
  const localTicks = ticks + BigInt(offsetMinutes ?? 0) * 60n * 10_000_000n;
  const date = new Date(msFromTicks(localTicks));
  const fraction = String(((localTicks % 10_000_000n) + 10_000_000n) % 10_000_000n).padStart(7, '0');
  let out = '';
  let i = 0;
  const run = (ch: string) => {
    let n = 0;
    while (pattern[i + n] === ch) n++;
    return n;
  };
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === "'" || c === '"') {
      const end = pattern.indexOf(c, i + 1);
      if (end < 0) throw new ExpressionError(`Unterminated quoted text in format string \`${format}\`.`);
      out += pattern.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    if (c === '\\') {
      out += pattern[i + 1] ?? '';
      i += 2;
      continue;
    }
    if (c === '%') {
      i++;
      continue;
    }
    const n = run(c);
    const pad = (v: number, w: number) => String(v).padStart(w, '0');
    switch (c) {
      case 'y': {
        const y = date.getUTCFullYear();
        out += n === 1 ? String(y % 100) : n === 2 ? pad(y % 100, 2) : pad(y, n);
        break;
      }
      case 'M': {
        const mo = date.getUTCMonth();
        out += n === 1 ? String(mo + 1) : n === 2 ? pad(mo + 1, 2) : n === 3 ? MONTHS[mo]!.slice(0, 3) : MONTHS[mo]!;
        break;
      }
      case 'd': {
        const day = date.getUTCDate();
        const wd = date.getUTCDay();
        out += n === 1 ? String(day) : n === 2 ? pad(day, 2) : n === 3 ? DAYS[wd]!.slice(0, 3) : DAYS[wd]!;
        break;
      }
      case 'H':
        out += pad(date.getUTCHours(), Math.min(n, 2));
        break;
      case 'h': {
        const h = date.getUTCHours() % 12 || 12;
        out += pad(h, Math.min(n, 2));
        break;
      }
      case 'm':
        out += pad(date.getUTCMinutes(), Math.min(n, 2));
        break;
      case 's':
        out += pad(date.getUTCSeconds(), Math.min(n, 2));
        break;
      case 'f':
        if (n > 7) throw new ExpressionError(`Format string \`${format}\` has more than 7 \`f\`.`);
        out += fraction.slice(0, n);
        break;
      case 'F': {
        if (n > 7) throw new ExpressionError(`Format string \`${format}\` has more than 7 \`F\`.`);
        const digits = fraction.slice(0, n).replace(/0+$/, '');
        // .NET drops the decimal point before an all-zero `F` fraction.
        if (digits === '' && out.endsWith('.')) out = out.slice(0, -1);
        out += digits;
        break;
      }
      case 't': {
        const ampm = date.getUTCHours() < 12 ? 'AM' : 'PM';
        out += n === 1 ? ampm[0] : ampm;
        break;
      }
      case 'K':
        out += offsetMinutes === null ? '' : offsetMinutes === 0 ? 'Z' : offsetText(offsetMinutes, true);
        break;
      case 'z': {
        const off = offsetMinutes ?? 0;
        const sign = off < 0 ? '-' : '+';
        const hh = Math.floor(Math.abs(off) / 60);
        out += n === 1 ? `${sign}${hh}` : n === 2 ? `${sign}${pad(hh, 2)}` : offsetText(off, true);
        break;
      }
      case 'g':
        out += 'A.D.';
        break;
      default:
        out += c.repeat(n);
    }
    i += n;
  }
  return out;
}

function offsetText(minutes: number, colon: boolean): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${sign}${hh}${colon ? ':' : ''}${mm}`;
}

/** Calendar arithmetic in UTC: `Month`/`Year` keep the day clamped to the month's end, as .NET `AddMonths` does. */
export function addToTicks(ticks: Ticks, amount: number, unit: string, fn: string): Ticks {
  const second = 10_000_000n;
  const fixed: Record<string, bigint> = {
    second,
    minute: 60n * second,
    hour: 3600n * second,
    day: 86_400n * second,
    week: 7n * 86_400n * second,
  };
  const key = unit.toLowerCase();
  if (fixed[key] !== undefined) {
    // Fractional amounts are allowed by .NET AddMinutes etc.; round to whole ticks.
    return ticks + BigInt(Math.round(amount * Number(fixed[key]!)));
  }
  if (key === 'month' || key === 'year') {
    if (!Number.isInteger(amount))
      throw new ExpressionError(`\`${fn}\` needs a whole number of ${unit}s, got \`${amount}\`.`);
    const months = key === 'year' ? amount * 12 : amount;
    const sub = ((ticks % 864_000_000_000n) + 864_000_000_000n) % 864_000_000_000n;
    const date = new Date(msFromTicks(ticks));
    const y = date.getUTCFullYear();
    const m = date.getUTCMonth() + months;
    const targetY = y + Math.floor(m / 12);
    const targetM = ((m % 12) + 12) % 12;
    const lastDay = new Date(Date.UTC(targetY, targetM + 1, 0)).getUTCDate();
    const day = Math.min(date.getUTCDate(), lastDay);
    return ticksFromMs(Date.UTC(targetY, targetM, day)) + sub;
  }
  throw new ExpressionError(
    `\`${fn}\` does not know the time unit \`${unit}\`; use Second, Minute, Hour, Day, Week, Month or Year.`,
  );
}

/** Windows time-zone names (the "Microsoft Time Zone Index" the docs use) the runtime knows, mapped to IANA. */
const WINDOWS_ZONES: Record<string, string> = {
  UTC: 'UTC',
  'Coordinated Universal Time': 'UTC',
  'GMT Standard Time': 'Europe/London',
  'W. Europe Standard Time': 'Europe/Berlin',
  'Romance Standard Time': 'Europe/Paris',
  'Central Europe Standard Time': 'Europe/Budapest',
  'Central European Standard Time': 'Europe/Warsaw',
  'E. Europe Standard Time': 'Europe/Chisinau',
  'FLE Standard Time': 'Europe/Kiev',
  'Pacific Standard Time': 'America/Los_Angeles',
  'Mountain Standard Time': 'America/Denver',
  'Central Standard Time': 'America/Chicago',
  'Eastern Standard Time': 'America/New_York',
  'AUS Eastern Standard Time': 'Australia/Sydney',
  'Tokyo Standard Time': 'Asia/Tokyo',
  'India Standard Time': 'Asia/Kolkata',
  'China Standard Time': 'Asia/Shanghai',
  'Singapore Standard Time': 'Asia/Singapore',
};

/** Offset in minutes of a Windows time zone at a UTC instant (DST included). Unknown names are an error naming them. */
export function zoneOffsetMinutes(zone: string, atTicks: Ticks): number {
  const iana = WINDOWS_ZONES[zone];
  if (!iana) {
    throw new ExpressionError(
      `Time zone \`${zone}\` is not one the runtime knows; use a Windows time-zone name such as ${Object.keys(WINDOWS_ZONES).slice(0, 4).join(', ')} (see src/export/synapse/runtime/expression/date-time.ts).`,
    );
  }
  const ms = msFromTicks(atTicks);
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: iana,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(ms));
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(ms / 1000) * 1000) / 60_000);
}

/** UTC instant of a wall-clock time in a Windows time zone. */
export function wallClockToUtc(wallTicks: Ticks, zone: string): Ticks {
  let guess = wallTicks;
  for (let i = 0; i < 3; i++) {
    const off = zoneOffsetMinutes(zone, guess);
    guess = wallTicks - BigInt(off) * 600_000_000n;
  }
  return guess;
}
