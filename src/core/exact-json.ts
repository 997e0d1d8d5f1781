import { FerryError } from './errors.js';

/**
 * JSON that keeps 64-bit integers exact. `JSON.parse` turns `9223372036854775807` (an Int64 column's `MaxValue`) into
 * the double 2^63, which `JSON.stringify` then writes as `9223372036854776000`; Node 20 has neither the reviver's
 * source text nor `JSON.rawJSON`. Here an integer literal outside ±(2^53 − 1) becomes a `bigint`, and the writer
 * prints a `bigint` as its digits, so text → value → text is the identity for such documents.
 */
export function parseExactJson(text: string, source = 'JSON text'): unknown {
  const reader = new Reader(text, source);
  reader.space();
  const value = reader.value();
  reader.space();
  if (reader.at < text.length) reader.fail('unexpected text after the JSON value');
  return value;
}

/** `JSON.stringify(value, null, indent)` that also writes `bigint` values as exact integer literals. */
export function stringifyExactJson(value: unknown, indent = 0): string {
  return write(value, ' '.repeat(indent), '') ?? 'null';
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// JSON strings may not hold raw control characters (RFC 8259 §7), so the class excludes U+0000–U+001F.
// biome-ignore lint/suspicious/noControlCharactersInRegex: excluding them is the point.
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const LITERALS: ReadonlyArray<readonly [string, unknown]> = [
  ['true', true],
  ['false', false],
  ['null', null],
];

class Reader {
  at = 0;
  constructor(
    readonly text: string,
    readonly source: string,
  ) {}

  fail(what: string): never {
    throw new FerryError('json.invalid', `\`${this.source}\` is not valid JSON at offset ${this.at}: ${what}.`);
  }

  space(): void {
    while (this.at < this.text.length && ' \t\r\n'.includes(this.text[this.at])) this.at += 1;
  }

  value(): unknown {
    const c = this.text[this.at];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    for (const [word, value] of LITERALS) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.at;
    const m = NUMBER.exec(this.text);
    if (!m) return this.fail(c === undefined ? 'the text ends early' : `unexpected \`${c}\``);
    this.at += m[0].length;
    const n = Number(m[0]);
    return /^-?\d+$/.test(m[0]) && !Number.isSafeInteger(n) ? BigInt(m[0]) : n;
  }

  string(): string {
    STRING.lastIndex = this.at;
    const m = STRING.exec(this.text);
    if (!m) return this.fail('a string is not closed or holds a bad escape');
    this.at += m[0].length;
    return JSON.parse(m[0]) as string;
  }

  object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.at += 1;
    this.space();
    if (this.text[this.at] === '}') {
      this.at += 1;
      return out;
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail('expected a property name');
      const key = this.string();
      this.space();
      if (this.text[this.at] !== ':') this.fail('expected `:`');
      this.at += 1;
      this.space();
      // Define rather than assign so a `__proto__` key stays data, as with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.space();
      const c = this.text[this.at];
      this.at += 1;
      if (c === '}') return out;
      if (c !== ',') this.fail('expected `,` or `}`');
    }
  }

  array(): unknown[] {
    const out: unknown[] = [];
    this.at += 1;
    this.space();
    if (this.text[this.at] === ']') {
      this.at += 1;
      return out;
    }
    for (;;) {
      this.space();
      out.push(this.value());
      this.space();
      const c = this.text[this.at];
      this.at += 1;
      if (c === ']') return out;
      if (c !== ',') this.fail('expected `,` or `]`');
    }
  }
}

function write(value: unknown, indent: string, current: string): string | undefined {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const inner = current + indent;
  const open = indent ? `\n${inner}` : '';
  const close = indent ? `\n${current}` : '';
  const separator = indent ? `,\n${inner}` : ',';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const items = value.map((v) => write(v, indent, inner) ?? 'null');
    return `[${open}${items.join(separator)}${close}]`;
  }
  const members: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const text = write(v, indent, inner);
    if (text !== undefined) members.push(`${JSON.stringify(k)}:${indent ? ' ' : ''}${text}`);
  }
  if (members.length === 0) return '{}';
  return `{${open}${members.join(separator)}${close}}`;
}
