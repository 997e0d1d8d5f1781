/** A JSON value as expressions see it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Text of a value where a string is needed (`@{…}` interpolation, `string()`): strings as they are, null as empty,
 * objects and arrays as JSON text (documented for `string()`). Booleans render as `True`/`False` — the docs are
 * silent and the engine is .NET-based, so this follows .NET `Boolean.ToString()`; confirm against a workspace.
 */
export function textOf(value: Json | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') return String(value);
  return JSON.stringify(value);
}

/** Deep equality with the documented bool/number coercion (`equals(true, 1)` is true). */
export function jsonEquals(a: Json, b: Json): boolean {
  if (typeof a === 'boolean' && typeof b === 'number') return (a ? 1 : 0) === b;
  if (typeof a === 'number' && typeof b === 'boolean') return a === (b ? 1 : 0);
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEquals(x, b[i]!));
  }
  if (isObject(a) || isObject(b)) {
    if (!isObject(a) || !isObject(b)) return false;
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && jsonEquals(a[k]!, b[k]!));
  }
  return a === b;
}
