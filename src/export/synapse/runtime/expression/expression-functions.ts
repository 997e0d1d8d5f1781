import { randomUUID } from 'node:crypto';
import {
  addToTicks,
  formatTicks,
  msFromTicks,
  parseTimestamp,
  type Ticks,
  ticksFromMs,
  wallClockToUtc,
  zoneOffsetMinutes,
} from './date-time.js';
import { ExpressionError } from './expression-error.js';
import { isObject, type Json, type JsonObject, jsonEquals, textOf } from './json-value.js';

/** What a function may ask of the run: the injectable clock and a random source. */
export interface FunctionEnvironment {
  /** Current UTC time (the runtime's injectable clock). */
  now(): Ticks;
  /** A number in [0, 1); default `Math.random`. */
  random?(): number;
}

type Fn = (args: Json[], env: FunctionEnvironment) => Json;

const arity = (name: string, args: Json[], min: number, max = min) => {
  if (args.length < min || args.length > max) {
    const want = min === max ? `${min}` : max === Number.POSITIVE_INFINITY ? `at least ${min}` : `${min} to ${max}`;
    throw new ExpressionError(`\`${name}()\` takes ${want} argument(s), got ${args.length}.`);
  }
};

const str = (name: string, v: Json, what = 'a string'): string => {
  if (typeof v !== 'string') throw new ExpressionError(`\`${name}()\` expects ${what}, got \`${JSON.stringify(v)}\`.`);
  return v;
};

const num = (name: string, v: Json): number => {
  if (typeof v !== 'number') throw new ExpressionError(`\`${name}()\` expects a number, got \`${JSON.stringify(v)}\`.`);
  return v;
};

const int = (name: string, v: Json): number => {
  const n = num(name, v);
  if (!Number.isInteger(n)) throw new ExpressionError(`\`${name}()\` expects an integer, got \`${n}\`.`);
  return n;
};

const arr = (name: string, v: Json): Json[] => {
  if (!Array.isArray(v)) throw new ExpressionError(`\`${name}()\` expects an array, got \`${JSON.stringify(v)}\`.`);
  return v;
};

const fmt = (name: string, v: Json | undefined): string | undefined =>
  v === undefined ? undefined : str(name, v, 'a format string');

const compare = (name: string, a: Json, b: Json): number => {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  throw new ExpressionError(
    `\`${name}()\` compares two integers, floats or strings, got \`${JSON.stringify(a)}\` and \`${JSON.stringify(b)}\`.`,
  );
};

/** Integer division when both are integers, as documented (`div(11, 5)` is 2). */
const divide = (a: number, b: number): number => {
  if (b === 0) throw new ExpressionError('`div()` by zero; check the divisor.');
  return Number.isInteger(a) && Number.isInteger(b) ? Math.trunc(a / b) : a / b;
};

const dateFn =
  (name: string, unit: string, sign = 1): Fn =>
  (args) => {
    arity(name, args, 2, 3);
    const t = parseTimestamp(args[0]!, name);
    return formatTicks(addToTicks(t, sign * num(name, args[1]!), unit, name), fmt(name, args[2]));
  };

const startOf =
  (name: string, unit: 'day' | 'hour' | 'month'): Fn =>
  (args) => {
    arity(name, args, 1, 2);
    const d = new Date(msFromTicks(parseTimestamp(args[0]!, name)));
    const ms =
      unit === 'month'
        ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
        : unit === 'day'
          ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
          : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
    return formatTicks(ticksFromMs(ms), fmt(name, args[1]));
  };

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (name: string, s: string) => {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new ExpressionError(`\`${name}()\` got \`${s}\`, which is not base64.`);
  return Buffer.from(s, 'base64').toString('utf8');
};
const DATA_URI = /^data:([^;,]*)(;charset=[^;,]*)?(;base64)?,(.*)$/s;
const fromDataUri = (name: string, s: string) => {
  const m = DATA_URI.exec(s);
  if (!m)
    throw new ExpressionError(
      `\`${name}()\` got \`${s}\`, which is not a data URI (\`data:text/plain;charset=utf-8;base64,…\`).`,
    );
  return m[3] ? Buffer.from(m[4]!, 'base64').toString('utf8') : decodeURIComponent(m[4]!);
};

const collectionLength = (name: string, v: Json): number => {
  if (typeof v === 'string' || Array.isArray(v)) return v.length;
  if (isObject(v)) return Object.keys(v).length;
  throw new ExpressionError(`\`${name}()\` expects a string, array or object, got \`${JSON.stringify(v)}\`.`);
};

const setOp = (name: string, args: Json[], keepAll: boolean): Json => {
  arity(name, args, 1, Number.POSITIVE_INFINITY);
  if (args.every(isObject)) {
    const objects = args as JsonObject[];
    const out: JsonObject = {};
    if (keepAll) for (const o of objects) Object.assign(out, o);
    else {
      for (const [k, v] of Object.entries(objects[objects.length - 1]!)) {
        if (objects.every((o) => k in o && jsonEquals(o[k]!, v))) out[k] = v;
      }
    }
    return out;
  }
  if (args.every(Array.isArray)) {
    const arrays = args as Json[][];
    const out: Json[] = [];
    const seen = (v: Json) => out.some((x) => jsonEquals(x, v));
    if (keepAll) {
      for (const a of arrays) for (const v of a) if (!seen(v)) out.push(v);
    } else {
      for (const v of arrays[0]!) if (!seen(v) && arrays.every((a) => a.some((x) => jsonEquals(x, v)))) out.push(v);
    }
    return out;
  }
  throw new ExpressionError(`\`${name}()\` takes arrays only or objects only, all of the same type.`);
};

const GUID_FORMATS: Record<string, (g: string) => string> = {
  N: (g) => g.replaceAll('-', ''),
  D: (g) => g,
  B: (g) => `{${g}}`,
  P: (g) => `(${g})`,
  X: (g) => {
    const h = g.replaceAll('-', '');
    const p = (s: string) => `0x${s}`;
    const bytes = h.slice(16).match(/../g)!.map(p).join(',');
    return `{${p(h.slice(0, 8))},${p(h.slice(8, 12))},${p(h.slice(12, 16))},{${bytes}}}`;
  },
};

/**
 * The function catalogue of pipeline expressions (learn.microsoft.com/azure/data-factory/
 * control-flow-expression-language-functions). The run-context functions (`pipeline`, `activity`, `variables`,
 * `trigger`, `item`, `dataset`, `linkedService`) and the lazily evaluated `if`/`and`/`or` live in the evaluator.
 */
export const EXPRESSION_FUNCTIONS: Readonly<Record<string, Fn>> = {
  // String functions.
  concat: (a) => {
    arity('concat', a, 1, Number.POSITIVE_INFINITY);
    if (a.every(Array.isArray)) return (a as Json[][]).flat();
    return a.map((v) => textOf(v)).join('');
  },
  endsWith: (a) => {
    arity('endsWith', a, 2);
    return str('endsWith', a[0]!).toLowerCase().endsWith(str('endsWith', a[1]!).toLowerCase());
  },
  startsWith: (a) => {
    arity('startsWith', a, 2);
    return str('startsWith', a[0]!).toLowerCase().startsWith(str('startsWith', a[1]!).toLowerCase());
  },
  guid: (a) => {
    arity('guid', a, 0, 1);
    const format = a[0] === undefined ? 'D' : str('guid', a[0]).toUpperCase();
    const f = GUID_FORMATS[format];
    if (!f) throw new ExpressionError(`\`guid()\` format \`${a[0]}\` is unknown; use N, D, B, P or X.`);
    return f(randomUUID());
  },
  indexOf: (a) => {
    arity('indexOf', a, 2);
    return str('indexOf', a[0]!).toLowerCase().indexOf(str('indexOf', a[1]!).toLowerCase());
  },
  lastIndexOf: (a) => {
    arity('lastIndexOf', a, 2);
    return str('lastIndexOf', a[0]!).toLowerCase().lastIndexOf(str('lastIndexOf', a[1]!).toLowerCase());
  },
  // Case-sensitive; replaces every occurrence (.NET String.Replace).
  replace: (a) => {
    arity('replace', a, 3);
    const old = str('replace', a[1]!);
    if (old === '') throw new ExpressionError('`replace()` cannot replace an empty string; give the text to replace.');
    return str('replace', a[0]!).replaceAll(old, str('replace', a[2]!));
  },
  split: (a) => {
    arity('split', a, 2);
    return str('split', a[0]!).split(str('split', a[1]!));
  },
  substring: (a) => {
    arity('substring', a, 2, 3);
    const s = str('substring', a[0]!);
    const start = int('substring', a[1]!);
    const length = a[2] === undefined ? s.length - start : int('substring', a[2]);
    if (start < 0 || length < 0 || start + length > s.length) {
      throw new ExpressionError(
        `\`substring()\` range start \`${start}\` length \`${length}\` is outside the text of length ${s.length}.`,
      );
    }
    return s.slice(start, start + length);
  },
  toLower: (a) => {
    arity('toLower', a, 1);
    return str('toLower', a[0]!).toLowerCase();
  },
  toUpper: (a) => {
    arity('toUpper', a, 1);
    return str('toUpper', a[0]!).toUpperCase();
  },
  trim: (a) => {
    arity('trim', a, 1);
    return str('trim', a[0]!).trim();
  },

  // Collection functions.
  contains: (a) => {
    arity('contains', a, 2);
    const [c, v] = a as [Json, Json];
    if (typeof c === 'string') return c.includes(str('contains', v));
    if (Array.isArray(c)) return c.some((x) => jsonEquals(x, v));
    if (isObject(c)) return Object.hasOwn(c, str('contains', v, 'a key'));
    throw new ExpressionError(`\`contains()\` expects a string, array or object, got \`${JSON.stringify(c)}\`.`);
  },
  empty: (a) => {
    arity('empty', a, 1);
    // null counts as empty: the docs are silent, and `empty(null)` guarding a missing value is the common idiom.
    return a[0] === null ? true : collectionLength('empty', a[0]!) === 0;
  },
  first: (a) => {
    arity('first', a, 1);
    const c = a[0]!;
    if (typeof c === 'string' || Array.isArray(c)) return c.length === 0 ? null : (c[0] as Json);
    throw new ExpressionError(`\`first()\` expects a string or array, got \`${JSON.stringify(c)}\`.`);
  },
  last: (a) => {
    arity('last', a, 1);
    const c = a[0]!;
    if (typeof c === 'string' || Array.isArray(c)) return c.length === 0 ? null : (c[c.length - 1] as Json);
    throw new ExpressionError(`\`last()\` expects a string or array, got \`${JSON.stringify(c)}\`.`);
  },
  intersection: (a) => setOp('intersection', a, false),
  union: (a) => setOp('union', a, true),
  join: (a) => {
    arity('join', a, 2);
    return arr('join', a[0]!)
      .map((v) => textOf(v))
      .join(str('join', a[1]!));
  },
  length: (a) => {
    arity('length', a, 1);
    return collectionLength('length', a[0]!);
  },
  skip: (a) => {
    arity('skip', a, 2);
    const c = a[0]!;
    const n = Math.max(0, int('skip', a[1]!));
    if (typeof c === 'string' || Array.isArray(c)) return c.slice(n) as Json;
    throw new ExpressionError(`\`skip()\` expects a string or array, got \`${JSON.stringify(c)}\`.`);
  },
  take: (a) => {
    arity('take', a, 2);
    const c = a[0]!;
    const n = Math.max(0, int('take', a[1]!));
    if (typeof c === 'string' || Array.isArray(c)) return c.slice(0, n) as Json;
    throw new ExpressionError(`\`take()\` expects a string or array, got \`${JSON.stringify(c)}\`.`);
  },

  // Logical comparison (and/or/if are in the evaluator).
  not: (a) => {
    arity('not', a, 1);
    if (typeof a[0] !== 'boolean')
      throw new ExpressionError(`\`not()\` expects a boolean, got \`${JSON.stringify(a[0])}\`.`);
    return !a[0];
  },
  equals: (a) => {
    arity('equals', a, 2);
    return jsonEquals(a[0]!, a[1]!);
  },
  greater: (a) => {
    arity('greater', a, 2);
    return compare('greater', a[0]!, a[1]!) > 0;
  },
  greaterOrEquals: (a) => {
    arity('greaterOrEquals', a, 2);
    return compare('greaterOrEquals', a[0]!, a[1]!) >= 0;
  },
  less: (a) => {
    arity('less', a, 2);
    return compare('less', a[0]!, a[1]!) < 0;
  },
  lessOrEquals: (a) => {
    arity('lessOrEquals', a, 2);
    return compare('lessOrEquals', a[0]!, a[1]!) <= 0;
  },

  // Conversion.
  array: (a) => {
    arity('array', a, 1);
    return [a[0]!];
  },
  base64: (a) => {
    arity('base64', a, 1);
    return b64(str('base64', a[0]!));
  },
  base64ToString: (a) => {
    arity('base64ToString', a, 1);
    return unb64('base64ToString', str('base64ToString', a[0]!));
  },
  decodeBase64: (a) => {
    arity('decodeBase64', a, 1);
    return unb64('decodeBase64', str('decodeBase64', a[0]!));
  },
  dataUri: (a) => {
    arity('dataUri', a, 1);
    return `data:text/plain;charset=utf-8;base64,${b64(str('dataUri', a[0]!))}`;
  },
  dataUriToString: (a) => {
    arity('dataUriToString', a, 1);
    return fromDataUri('dataUriToString', str('dataUriToString', a[0]!));
  },
  decodeDataUri: (a) => {
    arity('decodeDataUri', a, 1);
    return fromDataUri('decodeDataUri', str('decodeDataUri', a[0]!));
  },
  encodeUriComponent: (a) => {
    arity('encodeUriComponent', a, 1);
    return encodeURIComponent(str('encodeUriComponent', a[0]!));
  },
  uriComponent: (a) => {
    arity('uriComponent', a, 1);
    return encodeURIComponent(str('uriComponent', a[0]!));
  },
  decodeUriComponent: (a) => {
    arity('decodeUriComponent', a, 1);
    return decodeURIComponent(str('decodeUriComponent', a[0]!));
  },
  uriComponentToString: (a) => {
    arity('uriComponentToString', a, 1);
    return decodeURIComponent(str('uriComponentToString', a[0]!));
  },
  bool: (a) => {
    arity('bool', a, 1);
    const v = a[0]!;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'number') return v !== 0;
    if (typeof v === 'string' && /^(true|false)$/i.test(v.trim())) return v.trim().toLowerCase() === 'true';
    throw new ExpressionError(`\`bool()\` cannot convert \`${JSON.stringify(v)}\`; give true/false or a number.`);
  },
  int: (a) => {
    arity('int', a, 1);
    const v = a[0]!;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (typeof v === 'string' && /^\s*[-+]?\d+\s*$/.test(v)) return Number.parseInt(v, 10);
    throw new ExpressionError(`\`int()\` cannot convert \`${JSON.stringify(v)}\` to an integer; give a whole number.`);
  },
  float: (a) => {
    arity('float', a, 1);
    const v = a[0]!;
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v)) return Number(v);
    throw new ExpressionError(`\`float()\` cannot convert \`${JSON.stringify(v)}\` to a number.`);
  },
  string: (a) => {
    arity('string', a, 1);
    return textOf(a[0]!);
  },
  coalesce: (a) => {
    arity('coalesce', a, 1, Number.POSITIVE_INFINITY);
    return a.find((v) => v !== null) ?? null;
  },
  createArray: (a) => [...a],
  json: (a) => {
    arity('json', a, 1);
    const v = a[0]!;
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as Json;
    } catch (error) {
      throw new ExpressionError(`\`json()\` cannot parse \`${v.slice(0, 200)}\` as JSON.`, { cause: error });
    }
  },

  // Math.
  add: (a) => {
    arity('add', a, 2);
    return num('add', a[0]!) + num('add', a[1]!);
  },
  sub: (a) => {
    arity('sub', a, 2);
    return num('sub', a[0]!) - num('sub', a[1]!);
  },
  mul: (a) => {
    arity('mul', a, 2);
    return num('mul', a[0]!) * num('mul', a[1]!);
  },
  div: (a) => {
    arity('div', a, 2);
    return divide(num('div', a[0]!), num('div', a[1]!));
  },
  mod: (a) => {
    arity('mod', a, 2);
    const d = num('mod', a[1]!);
    if (d === 0) throw new ExpressionError('`mod()` by zero; check the divisor.');
    return num('mod', a[0]!) % d;
  },
  max: (a) => {
    const list = a.length === 1 && Array.isArray(a[0]) ? a[0] : a;
    arity('max', list, 1, Number.POSITIVE_INFINITY);
    return Math.max(...list.map((v) => num('max', v)));
  },
  min: (a) => {
    const list = a.length === 1 && Array.isArray(a[0]) ? a[0] : a;
    arity('min', list, 1, Number.POSITIVE_INFINITY);
    return Math.min(...list.map((v) => num('min', v)));
  },
  rand: (a, env) => {
    arity('rand', a, 2);
    const lo = int('rand', a[0]!);
    const hi = int('rand', a[1]!);
    if (hi <= lo) throw new ExpressionError(`\`rand()\` needs minValue < maxValue, got \`${lo}\`, \`${hi}\`.`);
    return lo + Math.floor((env.random ?? Math.random)() * (hi - lo));
  },
  range: (a) => {
    arity('range', a, 2);
    const start = int('range', a[0]!);
    const count = int('range', a[1]!);
    if (count < 0) throw new ExpressionError(`\`range()\` count must not be negative, got \`${count}\`.`);
    return Array.from({ length: count }, (_, i) => start + i);
  },

  // Date functions.
  addDays: dateFn('addDays', 'Day'),
  addHours: dateFn('addHours', 'Hour'),
  addMinutes: dateFn('addMinutes', 'Minute'),
  addSeconds: dateFn('addSeconds', 'Second'),
  addToTime: (a) => {
    arity('addToTime', a, 3, 4);
    const t = parseTimestamp(a[0]!, 'addToTime');
    return formatTicks(
      addToTicks(t, int('addToTime', a[1]!), str('addToTime', a[2]!), 'addToTime'),
      fmt('addToTime', a[3]),
    );
  },
  subtractFromTime: (a) => {
    arity('subtractFromTime', a, 3, 4);
    const t = parseTimestamp(a[0]!, 'subtractFromTime');
    const unit = str('subtractFromTime', a[2]!);
    return formatTicks(
      addToTicks(t, -int('subtractFromTime', a[1]!), unit, 'subtractFromTime'),
      fmt('subtractFromTime', a[3]),
    );
  },
  getFutureTime: (a, env) => {
    arity('getFutureTime', a, 2, 3);
    const unit = str('getFutureTime', a[1]!);
    return formatTicks(
      addToTicks(env.now(), int('getFutureTime', a[0]!), unit, 'getFutureTime'),
      fmt('getFutureTime', a[2]),
    );
  },
  getPastTime: (a, env) => {
    arity('getPastTime', a, 2, 3);
    const unit = str('getPastTime', a[1]!);
    return formatTicks(
      addToTicks(env.now(), -int('getPastTime', a[0]!), unit, 'getPastTime'),
      fmt('getPastTime', a[2]),
    );
  },
  convertFromUtc: (a) => {
    arity('convertFromUtc', a, 2, 3);
    const t = parseTimestamp(a[0]!, 'convertFromUtc');
    const off = zoneOffsetMinutes(str('convertFromUtc', a[1]!), t);
    // Local time carries no zone designator (the documented convertTimeZone example has none).
    return formatTicks(t + BigInt(off) * 600_000_000n, fmt('convertFromUtc', a[2]) ?? 'o', null);
  },
  convertToUtc: (a) => {
    arity('convertToUtc', a, 2, 3);
    const wall = parseTimestamp(a[0]!, 'convertToUtc');
    return formatTicks(wallClockToUtc(wall, str('convertToUtc', a[1]!)), fmt('convertToUtc', a[2]));
  },
  convertTimeZone: (a) => {
    arity('convertTimeZone', a, 3, 4);
    const utc = wallClockToUtc(parseTimestamp(a[0]!, 'convertTimeZone'), str('convertTimeZone', a[1]!));
    const off = zoneOffsetMinutes(str('convertTimeZone', a[2]!), utc);
    return formatTicks(utc + BigInt(off) * 600_000_000n, fmt('convertTimeZone', a[3]) ?? 'o', null);
  },
  dayOfMonth: (a) => {
    arity('dayOfMonth', a, 1);
    return new Date(msFromTicks(parseTimestamp(a[0]!, 'dayOfMonth'))).getUTCDate();
  },
  dayOfWeek: (a) => {
    arity('dayOfWeek', a, 1);
    return new Date(msFromTicks(parseTimestamp(a[0]!, 'dayOfWeek'))).getUTCDay();
  },
  dayOfYear: (a) => {
    arity('dayOfYear', a, 1);
    const d = new Date(msFromTicks(parseTimestamp(a[0]!, 'dayOfYear')));
    return (
      Math.floor(
        (Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) /
          86_400_000,
      ) + 1
    );
  },
  formatDateTime: (a) => {
    arity('formatDateTime', a, 1, 3);
    if (a[2] !== undefined)
      throw new ExpressionError(
        '`formatDateTime()` with a locale argument is not implemented by the runtime; drop the locale.',
      );
    return formatTicks(parseTimestamp(a[0]!, 'formatDateTime'), fmt('formatDateTime', a[1]));
  },
  startOfDay: startOf('startOfDay', 'day'),
  startOfHour: startOf('startOfHour', 'hour'),
  startOfMonth: startOf('startOfMonth', 'month'),
  ticks: (a) => {
    arity('ticks', a, 1);
    const t = parseTimestamp(a[0]!, 'ticks');
    const n = Number(t);
    // Ticks of present-day dates exceed 2^53; the JSON number is exact to ~100 ticks (10 µs).
    return n;
  },
  utcNow: (a, env) => {
    arity('utcNow', a, 0, 1);
    return formatTicks(env.now(), fmt('utcNow', a[0]));
  },
};

/** Documented functions the runtime deliberately does not implement (binary values, XML); calling one is an error naming it. */
export const UNIMPLEMENTED_FUNCTIONS = [
  'base64ToBinary',
  'binary',
  'dataUriToBinary',
  'uriComponentToBinary',
  'xml',
  'xpath',
  'nthIndexOf',
] as const;
