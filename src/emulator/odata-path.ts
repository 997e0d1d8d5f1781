/**
 * The emulator's own reading of OData URLs: resource path segments with key predicates, literals and query options.
 * Written independently of the client's key builder on purpose (a bug shared by both would pass every test).
 */

/** A literal in a key predicate or a `$filter`. */
export type ODataLiteral = string | number | boolean | null;

/** `accounts(<guid>)` or `accounts(accountnumber='A1',...)`. */
export type KeyPredicate =
  | { readonly kind: 'id'; readonly id: string }
  | { readonly kind: 'key'; readonly pairs: ReadonlyArray<{ readonly name: string; readonly value: ODataLiteral }> };

/** One path segment: a name with an optional raw key text and its parsed predicate. */
export interface PathSegment {
  readonly name: string;
  /** The text between the parentheses, as it appeared (decoded), for echoing in `OData-EntityId`. */
  readonly keyText?: string;
  readonly key?: KeyPredicate;
}

/** Thrown for URLs the emulator cannot read; the caller maps it to a 400. */
export class ODataSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ODataSyntaxError';
  }
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a GUID in the 8-4-4-4-12 form. */
export function isGuid(text: string): boolean {
  return GUID.test(text);
}

/** Percent-decodes a URL part; `+` stays a plus (OData clients encode spaces as `%20`). */
export function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ODataSyntaxError(`Bad Request - Error in query syntax: invalid percent-encoding in \`${text}\`.`);
  }
}

/** A URL (absolute, server-relative or already relative) as a path relative to the service root `api/data/vX.Y/`. */
export function serviceRelativePath(url: string): string {
  return url
    .replace(/^[a-z]+:\/\/[^/]+/i, '')
    .replace(/^\/?api\/data\/v\d+\.\d+\//i, '')
    .replace(/^\/+/, '');
}

/** Splits a decoded resource path into segments, ignoring `/` inside quoted literals and parentheses. */
export function parseODataPath(decodedPath: string): PathSegment[] {
  const segments: PathSegment[] = [];
  let i = 0;
  const text = decodedPath.replace(/^\/+/, '');
  while (i < text.length) {
    let name = '';
    while (i < text.length && text[i] !== '(' && text[i] !== '/') name += text[i++];
    let keyText: string | undefined;
    if (text[i] === '(') {
      const start = ++i;
      let depth = 1;
      let inQuote = false;
      while (i < text.length) {
        const c = text[i];
        if (inQuote) {
          if (c === "'") {
            if (text[i + 1] === "'") i += 1;
            else inQuote = false;
          }
        } else if (c === "'") inQuote = true;
        else if (c === '(') depth += 1;
        else if (c === ')') {
          depth -= 1;
          if (depth === 0) break;
        }
        i += 1;
      }
      if (i >= text.length)
        throw new ODataSyntaxError(`Bad Request - Error in query syntax: unbalanced \`(\` in \`${text}\`.`);
      keyText = text.slice(start, i);
      i += 1;
    }
    if (text[i] === '/') i += 1;
    if (name === '' && keyText === undefined) continue;
    // `WhoAmI()`: empty parentheses call a function; there is no key.
    if (keyText === undefined || keyText.trim() === '') segments.push({ name });
    else segments.push({ name, keyText, key: parseKeyPredicate(keyText) });
  }
  return segments;
}

/** Reads the inside of `(...)`: a bare GUID, a single literal, or `name=literal` pairs. */
export function parseKeyPredicate(text: string): KeyPredicate {
  const trimmed = text.trim();
  if (isGuid(trimmed)) return { kind: 'id', id: trimmed.toLowerCase() };
  const pairs: Array<{ name: string; value: ODataLiteral }> = [];
  let i = 0;
  while (i < trimmed.length) {
    const eq = trimmed.indexOf('=', i);
    if (eq < 0) {
      // `EntityDefinitions('account')` style: one unnamed literal.
      if (pairs.length === 0) {
        const { value, end } = readLiteral(trimmed, i);
        if (trimmed.slice(end).trim() === '') return { kind: 'key', pairs: [{ name: '', value }] };
      }
      throw new ODataSyntaxError(`Bad Request - Error in query syntax: cannot read the key \`(${text})\`.`);
    }
    const name = trimmed.slice(i, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new ODataSyntaxError(
        `Bad Request - Error in query syntax: bad key property name \`${name}\` in \`(${text})\`.`,
      );
    }
    const { value, end } = readLiteral(trimmed, eq + 1);
    pairs.push({ name, value });
    i = end;
    while (trimmed[i] === ' ') i += 1;
    if (i < trimmed.length) {
      if (trimmed[i] !== ',') {
        throw new ODataSyntaxError(`Bad Request - Error in query syntax: expected \`,\` at \`${trimmed.slice(i)}\`.`);
      }
      i += 1;
    }
  }
  if (pairs.length === 0) throw new ODataSyntaxError('Bad Request - Error in query syntax: empty key `()`.');
  return { kind: 'key', pairs };
}

/** Reads one literal starting at `start`: `'text'` with `''` escapes, a GUID, a number, true/false/null. */
export function readLiteral(text: string, start: number): { value: ODataLiteral; end: number } {
  let i = start;
  while (text[i] === ' ') i += 1;
  if (text[i] === "'") {
    let out = '';
    i += 1;
    for (;;) {
      if (i >= text.length)
        throw new ODataSyntaxError(`Bad Request - Error in query syntax: unterminated string in \`${text}\`.`);
      const c = text[i];
      if (c === "'") {
        if (text[i + 1] === "'") {
          out += "'";
          i += 2;
          continue;
        }
        return { value: out, end: i + 1 };
      }
      out += c;
      i += 1;
    }
  }
  let j = i;
  while (j < text.length && text[j] !== ',' && text[j] !== ')' && text[j] !== ' ') j += 1;
  const raw = text.slice(i, j);
  if (raw === '') throw new ODataSyntaxError(`Bad Request - Error in query syntax: missing value in \`${text}\`.`);
  if (isGuid(raw)) return { value: raw.toLowerCase(), end: j };
  if (raw === 'true' || raw === 'false') return { value: raw === 'true', end: j };
  if (raw === 'null') return { value: null, end: j };
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?[mMdDfFlL]?$/.test(raw))
    return { value: Number(raw.replace(/[mMdDfFlL]$/, '')), end: j };
  // Unquoted date/time literals are kept as text; comparisons treat them like strings.
  if (/^\d{4}-\d{2}-\d{2}/.test(raw)) return { value: raw, end: j };
  throw new ODataSyntaxError(`Bad Request - Error in query syntax: cannot read the literal \`${raw}\`.`);
}

/** Query options by name, percent-decoded (`+` is kept). Later duplicates win. */
export function parseQueryString(query: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!query) return out;
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = percentDecode(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : percentDecode(part.slice(eq + 1));
    out.set(name, value);
  }
  return out;
}

/** Splits `a,b($select=x,y),c` on top-level commas. */
export function splitTopLevel(text: string, separator = ','): string[] {
  const out: string[] = [];
  let depth = 0;
  let inQuote = false;
  let current = '';
  for (const c of text) {
    if (c === "'") inQuote = !inQuote;
    if (!inQuote) {
      if (c === '(') depth += 1;
      if (c === ')') depth -= 1;
      if (c === separator && depth === 0) {
        out.push(current.trim());
        current = '';
        continue;
      }
    }
    current += c;
  }
  if (current.trim() !== '') out.push(current.trim());
  return out;
}

/** One `$filter` comparison the emulator supports: `<property> eq <literal>` (or an order comparison, see below). */
export interface FilterClause {
  readonly property: string;
  readonly value: ODataLiteral;
  /** `gt`, `ge`, `lt`, `le` when the caller allows order comparisons; absent for `eq`. */
  readonly operator?: 'gt' | 'ge' | 'lt' | 'le' | 'in';
  /** For `in` (the `Microsoft.Dynamics.CRM.In` query function): the values, any of which matches. */
  readonly values?: readonly ODataLiteral[];
}

/**
 * `Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['a','b'])`, inline or with parameter aliases
 * (learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/in): the property and its values.
 */
function readInFunction(text: string, aliases: ReadonlyMap<string, string>): FilterClause | undefined {
  const m = /^Microsoft\.Dynamics\.CRM\.In\(\s*PropertyName\s*=\s*(.+?)\s*,\s*PropertyValues\s*=\s*(.+)\)$/.exec(text);
  if (!m) return undefined;
  const resolve = (t: string) => {
    if (!t.startsWith('@')) return t;
    const alias = aliases.get(t);
    if (alias === undefined) throw new ODataSyntaxError(`The parameter alias \`${t}\` is not defined in the query.`);
    return alias.trim();
  };
  const name = readLiteral(resolve(m[1]!), 0).value;
  if (typeof name !== 'string' || name === '')
    throw new ODataSyntaxError(`In: PropertyName must be a quoted property name; cannot read \`${m[1]}\`.`);
  const list = resolve(m[2]!);
  if (!list.startsWith('[') || !list.endsWith(']'))
    throw new ODataSyntaxError(`In: PropertyValues must be a list \`['a','b']\`; cannot read \`${list}\`.`);
  const values: ODataLiteral[] = [];
  const inner = list.slice(1, -1).trim();
  let i = 0;
  while (i < inner.length) {
    const { value, end } = readLiteral(inner, i);
    // Collection(Edm.String): every value is a string; a GUID is compared as its text.
    values.push(value === null ? null : String(value));
    i = end;
    while (inner[i] === ' ') i += 1;
    if (i < inner.length && inner[i] !== ',') throw new ODataSyntaxError(`In: cannot read the values \`${list}\`.`);
    i += 1;
  }
  if (values.length === 0) throw new ODataSyntaxError('In: PropertyValues must hold at least one value.');
  return { property: name, value: values[0]!, operator: 'in', values };
}

/**
 * Reads a `$filter` made of `eq` comparisons joined by `and` (what the toolkit sends). Parameter aliases (`@p`) are
 * resolved from `aliases`, which may be the whole query (only `@` names are looked up). Anything else throws
 * {@link ODataSyntaxError}.
 */
export function parseFilter(
  filter: string,
  aliases: ReadonlyMap<string, string> = new Map(),
  options: { readonly orderComparisons?: boolean; readonly inFunction?: boolean } = {},
): FilterClause[] {
  const clauses: FilterClause[] = [];
  const operators = options.orderComparisons ? 'eq|gt|ge|lt|le' : 'eq';
  for (const part of splitOutsideQuotes(filter.trim(), ' and ')) {
    const text = part
      .trim()
      .replace(/^\((.*)\)$/, '$1')
      .trim();
    const inClause = options.inFunction ? readInFunction(text, aliases) : undefined;
    if (inClause) {
      clauses.push(inClause);
      continue;
    }
    const m = new RegExp(`^([A-Za-z_][A-Za-z0-9_/]*)\\s+(${operators})\\s+(.+)$`).exec(text);
    if (!m) {
      throw new ODataSyntaxError(
        `The emulator supports only \`<property> ${operators.replaceAll('|', '/')} <value>\` joined by \`and\` in $filter; cannot read \`${text}\`.`,
      );
    }
    const operator = m[2] as 'eq' | 'gt' | 'ge' | 'lt' | 'le';
    let valueText = m[3].trim();
    if (valueText.startsWith('@')) {
      const alias = aliases.get(valueText);
      if (alias === undefined)
        throw new ODataSyntaxError(`The parameter alias \`${valueText}\` is not defined in the query.`);
      valueText = alias;
    }
    const { value, end } = readLiteral(valueText, 0);
    if (valueText.slice(end).trim() !== '')
      throw new ODataSyntaxError(`Cannot read the $filter value \`${valueText}\`.`);
    clauses.push(operator === 'eq' ? { property: m[1], value } : { property: m[1], value, operator });
  }
  return clauses;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const out: string[] = [];
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "'") inQuote = !inQuote;
    if (!inQuote && text.startsWith(separator, i)) {
      out.push(text.slice(start, i));
      start = i + separator.length;
      i = start - 1;
    }
  }
  out.push(text.slice(start));
  return out;
}
