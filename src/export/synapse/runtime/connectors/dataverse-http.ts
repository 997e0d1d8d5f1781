import { UsageError } from '../../../../core/errors.js';
import type { Json } from '../expression/json-value.js';
import { ActivityError } from '../runtime-error.js';

/** What the Copy connector needs to know about a column of a Dataverse table. */
export interface DataverseAttribute {
  readonly logicalName: string;
  /** `AttributeTypeName.Value`, e.g. `StringType`, `LookupType`, `OwnerType`, `MultiSelectPicklistType`. */
  readonly typeName: string;
  readonly targets: readonly string[];
}

export interface DataverseTable {
  readonly logicalName: string;
  readonly entitySetName: string;
  readonly primaryIdAttribute: string;
  readonly attributes: ReadonlyMap<string, DataverseAttribute>;
  readonly keys: ReadonlyMap<string, readonly string[]>;
  /** Navigation property for (lookup attribute, target table). */
  navigationFor(attribute: string, target: string): string | undefined;
}

/** A refusal by the service: HTTP status and the Dataverse error code and message. */
export class DataverseRefusal extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export interface DataverseHttpOptions {
  /** Environment root, e.g. `http://127.0.0.1:5555` (the emulator) — stands in for the linked service `serviceUri`. */
  readonly url: string;
  /** Bearer token sent on every request. Default: a fixed local token (the emulator does not check it). */
  readonly token?: string;
  /** Waits between throttling retries; real time, since the service's clock is. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * The runtime's own small Web API client for the Dataverse connector semantics (it shares no code with
 * `src/connectors/dataverse`): metadata reads, paged queries and one upsert per row by key.
 */
export class DataverseHttp {
  readonly #base: string;
  readonly #token: string;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #tables = new Map<string, Promise<DataverseTable>>();
  /** Counts for the run report: requests sent and throttled answers seen. */
  readonly stats = { requests: 0, throttled: 0 };

  constructor(options: DataverseHttpOptions) {
    this.#base = `${options.url.replace(/\/+$/, '')}/api/data/v9.2/`;
    this.#token = options.token ?? LOCAL_RUNTIME_TOKEN;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  table(logicalName: string): Promise<DataverseTable> {
    let t = this.#tables.get(logicalName);
    if (!t) {
      t = this.#loadTable(logicalName);
      this.#tables.set(logicalName, t);
      t.catch(() => this.#tables.delete(logicalName));
    }
    return t;
  }

  async #loadTable(logicalName: string): Promise<DataverseTable> {
    const def = `EntityDefinitions(LogicalName='${logicalName}')`;
    const entity = (await this.#get(`${def}?$select=LogicalName,EntitySetName,PrimaryIdAttribute`)) as Record<
      string,
      Json
    >;
    const attrs = ((await this.#get(`${def}/Attributes`)) as { value: Record<string, Json>[] }).value;
    const keys = ((await this.#get(`${def}/Keys`)) as { value: Record<string, Json>[] }).value;
    const rels = ((await this.#get(`${def}/ManyToOneRelationships`)) as { value: Record<string, Json>[] }).value;
    const attributes = new Map<string, DataverseAttribute>();
    for (const a of attrs) {
      const typeName = (a.AttributeTypeName as { Value?: string } | null)?.Value ?? `${a.AttributeType}Type`;
      attributes.set(String(a.LogicalName), {
        logicalName: String(a.LogicalName),
        typeName,
        targets: (a.Targets as string[] | null) ?? [],
      });
    }
    return {
      logicalName,
      entitySetName: String(entity.EntitySetName),
      primaryIdAttribute: String(entity.PrimaryIdAttribute),
      attributes,
      keys: new Map(keys.map((k) => [String(k.LogicalName), (k.KeyAttributes as string[]) ?? []])),
      navigationFor: (attribute, target) => {
        const forAttr = rels.filter((r) => r.ReferencingAttribute === attribute);
        const exact =
          forAttr.find((r) => r.ReferencedEntity === target) ?? (forAttr.length === 1 ? forAttr[0] : undefined);
        return exact ? String(exact.ReferencingEntityNavigationPropertyName) : undefined;
      },
    };
  }

  /** Reads rows of a table with `$select`, following `@odata.nextLink`. */
  async query(
    table: DataverseTable,
    columns: readonly string[],
    retry: RetrySettings,
    conditions: readonly FetchCondition[] = [],
  ): Promise<Record<string, Json>[]> {
    const select = columns
      .map((c) => {
        const a = table.attributes.get(c);
        return a && LOOKUP_TYPES.has(a.typeName) ? `_${c}_value` : c;
      })
      .join(',');
    const filter = conditions.map((c) => {
      if (!table.attributes.has(c.attribute) && !['createdon', 'modifiedon'].includes(c.attribute))
        throw new ActivityError(
          'DynamicsOperationFailed',
          `Dynamics operation failed with error code: 0x80041103, error message: 'entity' entity doesn't contain attribute with Name = '${c.attribute}'.`,
        );
      return c.operator === 'in' ? '' : `${c.attribute} ${c.operator} ${odataLiteral(c.value)}`;
    });
    // An `in` condition is the Web API's `In` query function; its values go in groups, so no URL gets too long
    // (the connector itself sends FetchXML through the SDK, where a long list is no URL).
    const among = conditions.filter((c) => c.operator === 'in');
    if (among.length > 1)
      throw new ActivityError(
        'UnsupportedByLocalRuntime',
        'FetchXML with two `in` conditions is not implemented by the local runtime.',
      );
    const list = among[0];
    if (!list) return this.#pages(table, columns, select, filter, retry);
    const rows: Record<string, Json>[] = [];
    const values = list.values ?? [list.value];
    for (let i = 0; i < values.length; i += IN_VALUES_PER_REQUEST) {
      const group = inFunction(list.attribute, values.slice(i, i + IN_VALUES_PER_REQUEST));
      rows.push(...(await this.#pages(table, columns, select, [...filter.filter(Boolean), group], retry)));
    }
    return rows;
  }

  async #pages(
    table: DataverseTable,
    columns: readonly string[],
    select: string,
    filter: readonly string[],
    retry: RetrySettings,
  ): Promise<Record<string, Json>[]> {
    let next: string | undefined =
      `${table.entitySetName}?$select=${select}${filter.length ? `&$filter=${encodeURIComponent(filter.join(' and '))}` : ''}`;
    const rows: Record<string, Json>[] = [];
    while (next) {
      const page = (await this.#send('GET', next, undefined, retry)) as {
        value: Record<string, Json>[];
        '@odata.nextLink'?: string;
      };
      for (const r of page.value) {
        const row: Record<string, Json> = {};
        for (const c of columns) {
          const a = table.attributes.get(c);
          row[c] = (a && LOOKUP_TYPES.has(a.typeName) ? r[`_${c}_value`] : r[c]) ?? null;
        }
        rows.push(row);
      }
      next = page['@odata.nextLink'];
    }
    return rows;
  }

  /** Upsert one record: `PATCH <set>(<key>)`. */
  async upsert(table: DataverseTable, key: string, body: Record<string, Json>, retry: RetrySettings): Promise<void> {
    await this.#send('PATCH', `${table.entitySetName}(${key})`, body, retry);
  }

  async #get(path: string): Promise<unknown> {
    return this.#send('GET', path, undefined, { count: 3, waitMs: 1000 });
  }

  async #send(method: string, path: string, body: unknown, retry: RetrySettings): Promise<unknown> {
    const url = path.startsWith('http') ? path : `${this.#base}${path}`;
    for (let attempt = 0; ; attempt++) {
      this.stats.requests++;
      let response: Response;
      try {
        response = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${this.#token}`,
            accept: 'application/json',
            'odata-version': '4.0',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (error) {
        if (attempt < retry.count) {
          await this.#sleep(retry.waitMs);
          continue;
        }
        throw new ActivityError(
          'DynamicsFailedToRequestServer',
          `Request to Dataverse \`${method} ${path.slice(0, 120)}\` failed: ${error instanceof Error ? error.message : String(error)}; check connectivity.`,
          { cause: error, failureType: 'SystemError' },
        );
      }
      if (response.ok) return response.status === 204 ? undefined : response.json();
      const text = await response.text();
      let code = String(response.status);
      let message = text.slice(0, 500);
      try {
        const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
        code = parsed.error?.code || code;
        message = parsed.error?.message || message;
      } catch {
        // not JSON: keep the text
      }
      if ((response.status === 429 || response.status === 503) && attempt < retry.count) {
        if (response.status === 429) this.stats.throttled++;
        const after = Number(response.headers.get('retry-after'));
        await this.#sleep(Number.isFinite(after) && after > 0 ? after * 1000 : retry.waitMs);
        continue;
      }
      if (response.status === 429) this.stats.throttled++;
      throw new DataverseRefusal(response.status, code, message);
    }
  }
}

export interface RetrySettings {
  readonly count: number;
  readonly waitMs: number;
}

export const LOOKUP_TYPES = new Set(['LookupType', 'CustomerType', 'OwnerType']);

/** OData key literal for a value. */
export function keyLiteral(value: Json): string {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value !== 'string')
    throw new UsageError(`Key value \`${JSON.stringify(value)}\` is not a string or number.`);
  return `'${value.replaceAll("'", "''")}'`;
}

/** A FetchXML `<condition attribute operator value>` the local runtime reads (comparisons, and `in`). */
export interface FetchCondition {
  readonly attribute: string;
  readonly operator: 'eq' | 'gt' | 'ge' | 'lt' | 'le' | 'in';
  /** The value; for `in`, its first value. */
  readonly value: string;
  /** For `in`: the `<value>` elements (fetchxml/reference/value on learn.microsoft.com). */
  readonly values?: readonly string[];
}

/** Values of one `In` request of the runtime (a GUID list of 100 is about 5 KB of URL). */
const IN_VALUES_PER_REQUEST = 100;

/** `Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['x','y'])` (webapi/reference/in on learn.microsoft.com). */
function inFunction(attribute: string, values: readonly string[]): string {
  const quote = (v: string) => `'${v.replaceAll("'", "''")}'`;
  return `Microsoft.Dynamics.CRM.In(PropertyName=${quote(attribute)},PropertyValues=[${values.map(quote).join(',')}])`;
}

/** A condition value as an OData literal: numbers and ISO date/times unquoted, other text quoted. */
function odataLiteral(value: string): string {
  if (/^-?\d+(\.\d+)?$/.test(value) || /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/.test(value)) return value;
  return `'${value.replaceAll("'", "''")}'`;
}

const FETCH_OPERATORS: Readonly<Record<string, FetchCondition['operator']>> = {
  eq: 'eq',
  gt: 'gt',
  ge: 'ge',
  lt: 'lt',
  le: 'le',
};

/**
 * Entity, attribute names and filter conditions of a simple FetchXML query: one `<filter>` (type `and`, the
 * default) of `<condition attribute operator value>` comparisons; no links, orders or aggregates.
 */
export function parseFetchXml(xml: string): { entity: string; attributes: string[]; conditions: FetchCondition[] } {
  const entity = /<entity\s+name="([^"]+)"/.exec(xml)?.[1];
  if (!entity)
    throw new ActivityError(
      'DynamicsInvalidFetchXml',
      `FetchXML \`${xml.slice(0, 200)}\` has no <entity name="…">; fix the query.`,
    );
  for (const tag of ['link-entity', 'order', 'all-attributes']) {
    if (new RegExp(`<${tag}\\b`).test(xml)) {
      throw new ActivityError(
        'UnsupportedByLocalRuntime',
        `FetchXML element <${tag}> is not implemented by the local runtime's Dataverse source.`,
      );
    }
  }
  if (/aggregate="true"/.test(xml))
    throw new ActivityError('UnsupportedByLocalRuntime', 'Aggregate FetchXML is not implemented by the local runtime.');
  const attributes = [...xml.matchAll(/<attribute\s+name="([^"]+)"/g)].map((m) => m[1]!);
  const filters = [...xml.matchAll(/<filter\b([^>]*)>/g)];
  if (filters.length > 1 || filters.some((f) => /type="or"/.test(f[1]!)))
    throw new ActivityError(
      'UnsupportedByLocalRuntime',
      'FetchXML with nested or `or` filters is not implemented by the local runtime.',
    );
  const conditions: FetchCondition[] = [];
  for (const m of xml.matchAll(/<condition\b([^>]*?)(?:\/>|>([\s\S]*?)<\/condition>)/g)) {
    const attr = (name: string) => new RegExp(`\\b${name}="([^"]*)"`).exec(m[1]!)?.[1];
    const attribute = attr('attribute');
    if (attribute && attr('operator') === 'in') {
      const values = [...(m[2] ?? '').matchAll(/<value>([^<]*)<\/value>/g)].map((v) => xmlText(v[1]!.trim()));
      if (values.length === 0)
        throw new ActivityError(
          'DynamicsInvalidFetchXml',
          `FetchXML condition \`${m[0].slice(0, 200)}\` has operator \`in\` without <value> elements; fix the query.`,
        );
      conditions.push({ attribute, operator: 'in', value: values[0]!, values });
      continue;
    }
    const operator = FETCH_OPERATORS[attr('operator') ?? ''];
    const value = attr('value');
    if (!attribute || !operator || value === undefined)
      throw new ActivityError(
        'UnsupportedByLocalRuntime',
        `FetchXML condition \`${m[0]}\` is not implemented by the local runtime (attribute, a comparison operator and value).`,
      );
    conditions.push({ attribute, operator, value: xmlText(value) });
  }
  return { entity, attributes, conditions };
}

function xmlText(text: string): string {
  return text
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&');
}

/**
 * The runtime's caller on a local Dataverse: an unsigned JWT naming the linked service's application, because the
 * service (and the emulator) know the caller from the bearer token's `oid`/`appid` claims, and refuse a bearer that
 * is not a JWT.
 */
const LOCAL_RUNTIME_TOKEN = [
  { alg: 'none', typ: 'JWT' },
  { oid: '5e1f1c2a-0000-4000-8000-53796e617073', appid: 'ferry-synapse-runtime' },
]
  .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
  .join('.')
  .concat('.');
