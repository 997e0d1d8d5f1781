import { FerryError } from '../../core/errors.js';

/** A value of one alternate-key column. Strings are quoted in URLs; numbers, booleans and GUID lookups are not. */
export type KeyValue = string | number | bigint | boolean;

/** One `name=literal` pair of a key predicate, with the literal decoded back to a value. */
export interface KeyPart {
  readonly name: string;
  /** The literal exactly as written in the predicate (`'A''1'`, `42`, a GUID). */
  readonly literal: string;
  /** The decoded value: quotes undoubled for strings; numbers as numbers; GUIDs and other bare words as text. */
  readonly value: string | number | boolean | null;
}

/**
 * Characters that break a key segment even percent-encoded (reference §1.1: `/ < > * % & : \ ?`). Rows whose key
 * holds one are found by `$filter` and written by GUID instead.
 */
const UNSAFE_KEY_CHARS = /[/\\<>*%&:?]/;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when the value may travel inside a key segment of a URL (see `UNSAFE_KEY_CHARS`). */
export function isKeyValueSafe(value: KeyValue): boolean {
  return typeof value !== 'string' || !UNSAFE_KEY_CHARS.test(value);
}

/**
 * OData literal of one key value: strings in single quotes with inner quotes doubled (`'Men''s Shoes'`), numbers
 * and booleans bare. Pass `{ guid: true }` for lookup columns in a key (`_parentid_value=<guid>`), which are bare.
 */
export function formatKeyLiteral(value: KeyValue, options: { guid?: boolean } = {}): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw keyError(`Key value \`${value}\` is not a finite number; fix the source key.`);
    return String(value);
  }
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (options.guid) {
    if (!GUID.test(value))
      throw keyError(`Key value \`${value}\` is not a GUID; a lookup column in a key needs a GUID.`);
    return value.toLowerCase();
  }
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * The key predicate inside `<set>(...)`: `accountnumber='A1'`, composite `k1='a',k2=2`. Entries keep the order
 * given. Throws when a value cannot go into a URL; check `isKeyValueSafe` first.
 */
export function formatKeyPredicate(
  entries: ReadonlyArray<readonly [string, KeyValue]>,
  guidColumns: readonly string[] = [],
): string {
  if (entries.length === 0) throw keyError('A key needs at least one column; check the table key in the mapping.');
  return entries
    .map(([name, value]) => {
      if (!isKeyValueSafe(value)) {
        throw keyError(
          `Key value \`${String(value)}\` of \`${name}\` holds a character that breaks key URLs (/ \\ < > * % & : ?); write the row by \`$filter\` and GUID instead.`,
        );
      }
      return `${name}=${formatKeyLiteral(value, { guid: guidColumns.includes(name) })}`;
    })
    .join(',');
}

/**
 * Splits a key predicate (`k1='a,b',k2=2`) into its parts. Quotes inside string literals are doubled, so a comma
 * or `=` inside quotes is data. A bare literal (no `name=`) is a primary-key GUID and gets the name `''`.
 */
export function parseKeyPredicate(predicate: string): KeyPart[] {
  const parts: KeyPart[] = [];
  let i = 0;
  const n = predicate.length;
  while (i < n) {
    let name = '';
    const eq = findNameEnd(predicate, i);
    if (eq >= 0) {
      name = predicate.slice(i, eq).trim();
      i = eq + 1;
    }
    let literal: string;
    let value: string | number | boolean | null;
    if (predicate[i] === "'") {
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= n)
          throw keyError(
            `Key predicate \`${predicate}\` has an unterminated string literal; double quotes inside values ('').`,
          );
        const ch = predicate[j]!;
        if (ch === "'") {
          if (predicate[j + 1] === "'") {
            text += "'";
            j += 2;
            continue;
          }
          break;
        }
        text += ch;
        j += 1;
      }
      literal = predicate.slice(i, j + 1);
      value = text;
      i = j + 1;
    } else {
      let j = i;
      while (j < n && predicate[j] !== ',') j += 1;
      literal = predicate.slice(i, j).trim();
      value = decodeBare(literal);
      i = j;
    }
    if (literal === '')
      throw keyError(`Key predicate \`${predicate}\` has an empty value; every key column needs a value.`);
    parts.push({ name, literal, value });
    while (i < n && predicate[i] === ' ') i += 1;
    if (i < n) {
      if (predicate[i] !== ',')
        throw keyError(
          `Key predicate \`${predicate}\` has unexpected text at position ${i}; separate key columns with commas.`,
        );
      i += 1;
    }
  }
  if (parts.length === 0) throw keyError('Key predicate is empty; every row needs its key.');
  return parts;
}

/** `$filter` text matching the key: `k1 eq 'a' and k2 eq 2` (literals reused as written, so quoting stays right). */
export function keyFilter(parts: readonly KeyPart[]): string {
  return parts.map((p) => `${p.name} eq ${p.literal}`).join(' and ');
}

/**
 * The URL form of `<set>(<predicate>)`: literal contents are percent-encoded (spaces, `#`, non-ASCII), while the
 * structure (`=`, `,`, quotes) stays readable as OData expects.
 */
export function keySegment(entitySet: string, predicate: string): string {
  const encoded = parseKeyPredicate(predicate)
    .map((p) => `${p.name ? `${p.name}=` : ''}${encodeLiteral(p.literal)}`)
    .join(',');
  return `${entitySet}(${encoded})`;
}

/** Lower-cased key identity used to keep one key out of two concurrent requests (Dataverse compares keys case-insensitively). */
export function keyIdentity(predicate: string): string {
  return predicate.toLowerCase();
}

function encodeLiteral(literal: string): string {
  // encodeURIComponent leaves ' ( ) ! * ~ alone; parentheses inside a value would confuse some parsers.
  return encodeURIComponent(literal).replaceAll('(', '%28').replaceAll(')', '%29');
}

function findNameEnd(text: string, from: number): number {
  for (let j = from; j < text.length; j += 1) {
    const ch = text[j];
    if (ch === '=') return j;
    if (ch === "'" || ch === ',') return -1;
  }
  return -1;
}

function decodeBare(literal: string): string | number | boolean | null {
  if (literal === 'null') return null;
  if (literal === 'true') return true;
  if (literal === 'false') return false;
  if (GUID.test(literal)) return literal;
  if (/^-?\d+(\.\d+)?$/.test(literal)) {
    const n = Number(literal);
    if (Number.isSafeInteger(n) || literal.includes('.')) return n;
  }
  return literal;
}

function keyError(message: string): FerryError {
  return new FerryError('dataverse.key', message);
}
