import { randomUUID } from 'node:crypto';
import { CLOSE_ACTIONS } from './close-messages.js';
import type { CatalogTable, EmulatorCatalog } from './emulator-catalog.js';
import { stableGuid } from './emulator-catalog.js';
import { stringifyWithInt64 } from './int64-json.js';
import { MetadataApi } from './metadata-api.js';
import {
  isGuid,
  type KeyPredicate,
  type ODataLiteral,
  ODataSyntaxError,
  type PathSegment,
  parseFilter,
  parseODataPath,
  parseQueryString,
  percentDecode,
  serviceRelativePath,
} from './odata-path.js';
import { lookupKeyName, RecordValidator, type ReferenceResolver } from './record-validator.js';
import { faults, ServiceFault } from './service-fault.js';
import { type EmulatorStore, keyIndexText, type StoredRow } from './store.js';

/** One Web API request, as the HTTP server or a `$batch` part hands it over. */
export interface ApiRequest {
  readonly method: string;
  /** Raw (still percent-encoded) path relative to `/api/data/v9.2/`, without the query. */
  readonly path: string;
  /** Raw query string without `?`. */
  readonly query: string;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What a write did, for server-time and throttling models. */
export type WorkKind = 'read' | 'create' | 'update' | 'upsert' | 'delete' | 'metadata';

/** A Web API response. */
export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Records written or read, and the kind of work (not sent on the wire). */
  work?: { readonly kind: WorkKind; readonly records: number; readonly bulk?: boolean; readonly operations?: number };
}

/** Per-request context inside a `$batch` change set. */
export interface ApiContext {
  readonly resolve?: ReferenceResolver;
  readonly inBatch?: boolean;
}

/** A `$filter` comparison with its property resolved to the column it reads (`_x_value` → `x`). */
interface ColumnClause {
  readonly name: string;
  readonly value: ODataLiteral;
  readonly operator?: 'gt' | 'ge' | 'lt' | 'le' | 'in';
  readonly values?: readonly ODataLiteral[];
}

const JSON_TYPE = 'application/json; odata.metadata=minimal';
const DEFAULT_PAGE_SIZE = 5000;
const BULK_ACTIONS = ['CreateMultiple', 'UpdateMultiple', 'UpsertMultiple'] as const;
type BulkAction = (typeof BULK_ACTIONS)[number];

/** Fixed identity the emulator answers WhoAmI with. */
export const EMULATOR_USER = {
  UserId: stableGuid('emulator:user'),
  BusinessUnitId: stableGuid('emulator:businessunit'),
  OrganizationId: stableGuid('emulator:organization'),
};

/**
 * The emulator's Web API: routes a request to metadata, entity reads and writes, or bulk actions, applies the
 * documented semantics (reference §1–§2, §5–§8) to the store and builds the wire response.
 */
export class WebApi {
  readonly #catalog: EmulatorCatalog;
  readonly #store: EmulatorStore;
  readonly #validator: RecordValidator;
  readonly #metadata: MetadataApi;
  readonly #base: string;
  /** Formatted values for the request being handled; `handle` is synchronous, so one field is enough. */
  #annotations = false;

  /** `root` is the environment URL, e.g. `http://127.0.0.1:5555`. */
  constructor(catalog: EmulatorCatalog, store: EmulatorStore, root: string) {
    this.#catalog = catalog;
    this.#store = store;
    this.#validator = new RecordValidator(catalog, store);
    this.#base = `${root}/api/data/v9.2/`;
    this.#metadata = new MetadataApi(catalog, this.#base);
  }

  /** Handles one request; service errors become their JSON error responses. */
  handle(request: ApiRequest, context: ApiContext = {}): ApiResponse {
    this.#annotations = wantsAnnotations(request.headers);
    try {
      return this.#route(request, context);
    } catch (error) {
      return errorResponse(error);
    }
  }

  #route(request: ApiRequest, context: ApiContext): ApiResponse {
    const segments = parseODataPath(percentDecode(request.path));
    const query = parseQueryString(request.query);
    const first = segments[0];
    if (!first) return json(200, { '@odata.context': `${this.#base}$metadata`, value: [] });
    const method = request.method.toUpperCase();
    if (first.name === 'EntityDefinitions') {
      if (method !== 'GET') throw faults.methodNotAllowed(method, request.path);
      const definitions = this.#metadata.entityDefinitions(segments, query);
      return {
        ...json(200, definitions),
        // Int64 limits go out with every digit, as the service writes them.
        body: stringifyWithInt64(definitions),
        work: { kind: 'metadata', records: 1 },
      };
    }
    if (first.name === 'WhoAmI') {
      return json(200, {
        '@odata.context': `${this.#base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse`,
        ...EMULATOR_USER,
      });
    }
    if (first.name === 'sdkmessagefilters') return json(200, this.#metadata.messageFilters(query));
    if (segments.length === 1 && !first.key && Object.hasOwn(CLOSE_ACTIONS, first.name)) {
      if (method !== 'POST') throw faults.methodNotAllowed(method, request.path);
      return this.#close(first.name, request);
    }
    const table = this.#catalog.byEntitySet(first.name);
    if (!table) throw faults.notFoundSegment(first.name);

    if (segments.length === 1 && !first.key) {
      if (method === 'GET') return this.#query(table, query, request);
      if (method === 'POST') return this.#create(table, request, query, context);
      throw faults.methodNotAllowed(method, request.path);
    }
    if (segments.length === 2 && !first.key && segments[1].name.startsWith('Microsoft.Dynamics.CRM.')) {
      const action = segments[1].name.slice('Microsoft.Dynamics.CRM.'.length);
      if (!(BULK_ACTIONS as readonly string[]).includes(action)) throw faults.notFoundSegment(segments[1].name);
      if (method !== 'POST') throw faults.methodNotAllowed(method, request.path);
      return this.#bulk(table, action as BulkAction, request, context);
    }
    if (first.key && segments.length === 1) {
      if (method === 'GET') return this.#retrieve(table, first, query);
      if (method === 'PATCH') return this.#upsert(table, first, request, query, context);
      if (method === 'DELETE') return this.#delete(table, first.key);
      throw faults.methodNotAllowed(method, request.path);
    }
    if (first.key && segments.length === 2 && method === 'GET') {
      const collection = table.collections.get(segments[1].name);
      if (!collection) throw faults.notFoundSegment(segments[1].name);
      const parent = this.#validator.mustLocate(table, first.key);
      const child = this.#catalog.byLogicalName(collection.childTable)!;
      const rows = this.#store
        .rows(child.logicalName)
        .filter((r) => r.attributes[collection.childAttribute] === parent);
      return this.#collection(child, rows, query);
    }
    throw faults.notFoundSegment(segments[segments.length - 1].name);
  }

  // ---- reads -------------------------------------------------------------------------------------------------

  #retrieve(table: CatalogTable, segment: PathSegment, query: Map<string, string>): ApiResponse {
    const id = this.#validator.mustLocate(table, segment.key!);
    const row = this.#store.get(table.logicalName, id)!;
    return { ...this.#representation(table, row, query, 200), work: { kind: 'read', records: 1 } };
  }

  #query(table: CatalogTable, query: Map<string, string>, request: ApiRequest): ApiResponse {
    let rows: StoredRow[] | undefined;
    const filter = query.get('$filter');
    if (filter) {
      // A syntax error becomes the service's query-syntax fault in `handle`. Column names are resolved once here,
      // not once per row scanned.
      // Record queries also take order comparisons (`modifiedon ge 2026-01-01T00:00:00Z`: incremental readers).
      // And the `In` query function (a list of ids: readers checking which records still exist).
      const clauses = parseFilter(filter, query, { orderComparisons: true, inFunction: true }).map((clause) => {
        const name = lookupKeyName(clause.property);
        if (!isColumn(table, name)) throw unknownProperty(table, clause.property);
        return {
          name,
          value: clause.value,
          ...(clause.operator ? { operator: clause.operator } : {}),
          ...(clause.values ? { values: clause.values } : {}),
        };
      });
      // A filter on the primary id or on every column of an alternate key uses the index, not a scan: clients look
      // rows up this way when a key value cannot go into a URL (reference §1.1).
      const equal = clauses.filter((c) => !c.operator);
      const ids = clauses.find((c) => c.operator === 'in' && c.name === table.primaryId)?.values;
      const candidates =
        this.#indexed(table, equal) ??
        (ids
          ? [...new Set(ids.map((v) => String(v).toLowerCase()))].flatMap(
              (id) => this.#store.get(table.logicalName, id) ?? [],
            )
          : this.#store.rows(table.logicalName));
      rows = candidates.filter((row) =>
        clauses.every((c) =>
          c.operator === 'in'
            ? (c.values ?? []).some((v) => sameValue(fieldOf(table, row, c.name), v))
            : c.operator
              ? inOrder(fieldOf(table, row, c.name), c.operator, c.value)
              : sameValue(fieldOf(table, row, c.name), c.value),
        ),
      );
    }
    rows ??= this.#store.rows(table.logicalName);
    const top = query.get('$top');
    if (top !== undefined) {
      const n = Number(top);
      if (!Number.isInteger(n) || n < 0) {
        throw faults.querySyntax(`Invalid value \`${top}\` for $top; use a whole number.`);
      }
      return this.#collection(table, rows.slice(0, n), query);
    }
    // Paging as the service does: 5,000 rows per page unless `Prefer: odata.maxpagesize=N`, then @odata.nextLink.
    const asked = /odata\.maxpagesize=(\d+)/i.exec(request.headers.prefer ?? '')?.[1];
    const pageSize = asked ? Math.max(1, Number(asked)) : DEFAULT_PAGE_SIZE;
    const offset = Number(/offset="(\d+)"/.exec(query.get('$skiptoken') ?? '')?.[1] ?? 0);
    let nextLink: string | undefined;
    if (offset + pageSize < rows.length) {
      const rest = request.query
        .split('&')
        .filter((p) => p !== '' && !p.startsWith('$skiptoken=') && !p.startsWith('%24skiptoken='));
      const token = encodeURIComponent(
        `<cookie pagenumber="${offset / pageSize + 2}" offset="${offset + pageSize}" />`,
      );
      nextLink = `${this.#base}${table.entitySetName}?${[...rest, `$skiptoken=${token}`].join('&')}`;
    }
    const response = this.#collection(table, rows.slice(offset, offset + pageSize), query, nextLink);
    if (asked) response.headers['Preference-Applied'] = `odata.maxpagesize=${pageSize}`;
    return response;
  }

  #indexed(table: CatalogTable, clauses: readonly ColumnClause[]): StoredRow[] | undefined {
    const value = (name: string) => clauses.find((c) => c.name === name)?.value;
    const id = value(table.primaryId);
    if (typeof id === 'string') {
      const row = this.#store.get(table.logicalName, id);
      return row ? [row] : [];
    }
    for (const key of table.keys) {
      const values = key.KeyAttributes.map(value);
      if (values.some((v) => v === undefined || v === null)) continue;
      const found = this.#store.findByKey(table.logicalName, key.LogicalName, values);
      const row = found === undefined ? undefined : this.#store.get(table.logicalName, found);
      return row ? [row] : [];
    }
    return undefined;
  }

  #collection(table: CatalogTable, rows: StoredRow[], query: Map<string, string>, nextLink?: string): ApiResponse {
    const select = readSelect(query, table);
    return {
      ...json(200, {
        '@odata.context': `${this.#base}$metadata#${table.entitySetName}${select ? `(${select.join(',')})` : ''}`,
        value: rows.map((row) => this.serialize(table, row, select, this.#annotations)),
        ...(nextLink === undefined ? {} : { '@odata.nextLink': nextLink }),
      }),
      work: { kind: 'read', records: rows.length },
    };
  }

  /** The Web API JSON of a row: `@odata.etag`, the (selected) columns with lookups as `_<attr>_value`, the id. */
  serialize(
    table: CatalogTable,
    row: StoredRow,
    select?: readonly string[],
    annotations = false,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = { '@odata.etag': etag(row) };
    const put = (name: string) => {
      if (name === table.primaryId) return;
      if (name === 'versionnumber') out.versionnumber = row.versionNumber;
      else if (name === 'createdon' && !('createdon' in row.attributes)) out.createdon = row.createdOn;
      else if (name === 'modifiedon' && !('modifiedon' in row.attributes)) out.modifiedon = row.modifiedOn;
      else if (table.navigationByAttribute.has(name) || isLookup(table, name)) {
        const value = row.attributes[name] ?? null;
        const target = row.attributes[`${name}@target`];
        if (annotations && value !== null && typeof target === 'string') {
          out[`_${name}_value@Microsoft.Dynamics.CRM.lookuplogicalname`] = target;
          const named = this.#catalog.byLogicalName(target);
          const targetRow = named ? this.#store.get(target, value as string) : undefined;
          const label = named?.primaryName ? targetRow?.attributes[named.primaryName] : undefined;
          if (typeof label === 'string') out[`_${name}_value${FORMATTED}`] = label;
        }
        out[`_${name}_value`] = value;
      } else {
        const value = row.attributes[name] ?? null;
        if (annotations && value !== null) {
          const label = formattedValue(table, name, value);
          if (label !== undefined) out[`${name}${FORMATTED}`] = label;
        }
        out[name] = value;
      }
    };
    if (select) {
      for (const name of select) put(lookupKeyName(name));
    } else {
      // Without $select the service returns every column, null when empty.
      for (const name of table.attributes.keys()) put(name);
      for (const name of Object.keys(row.attributes)) {
        if (!name.endsWith('@target') && !table.attributes.has(name)) put(name);
      }
      put('versionnumber');
      put('createdon');
      put('modifiedon');
    }
    out[table.primaryId] = row.id;
    return out;
  }

  // ---- writes ------------------------------------------------------------------------------------------------

  #create(table: CatalogTable, request: ApiRequest, query: Map<string, string>, context: ApiContext): ApiResponse {
    const body = parseBody(table, request.body);
    const row = this.#createRow(table, body, request.headers, context.resolve);
    const url = `${this.#base}${table.entitySetName}(${row.id})`;
    if (wantsRepresentation(request.headers)) {
      return {
        ...this.#representation(table, row, query, 201),
        work: { kind: 'create', records: 1 },
      };
    }
    const headers: Record<string, string> = { 'OData-EntityId': url };
    if (context.inBatch) headers.Location = url;
    return { status: 204, headers, body: '', work: { kind: 'create', records: 1 } };
  }

  #upsert(
    table: CatalogTable,
    segment: PathSegment,
    request: ApiRequest,
    query: Map<string, string>,
    context: ApiContext,
  ): ApiResponse {
    const key = segment.key!;
    const located = this.#validator.locate(table, key);
    const ifMatch = request.headers['if-match'];
    // `If-None-Match: null` only defeats browser caching: no precondition (reference §1.1).
    const ifNoneMatch = request.headers['if-none-match'] === 'null' ? undefined : request.headers['if-none-match'];
    const existing = located.id === undefined ? undefined : this.#store.get(table.logicalName, located.id);
    if (ifMatch !== undefined) {
      if (!existing) {
        if (key.kind === 'id') throw faults.recordNotFound(table.logicalName, key.id);
        throw faults.keyNotFound(table.logicalName);
      }
      if (ifMatch.trim() !== '*' && ifMatch.trim() !== etag(existing)) throw faults.versionMismatch();
    }
    if (ifNoneMatch !== undefined && ifNoneMatch.trim() === '*' && existing) throw faults.matchingKeyExists();
    const body = parseBody(table, request.body);
    const row = this.#upsertRow(table, key, located.byKey, existing, body, request.headers, context.resolve);
    const created = !existing;
    if (wantsRepresentation(request.headers)) {
      return {
        ...this.#representation(table, row, query, created ? 201 : 200),
        work: { kind: 'upsert', records: 1 },
      };
    }
    return {
      status: 204,
      headers: { 'OData-EntityId': `${this.#base}${table.entitySetName}(${segment.keyText})` },
      body: '',
      work: { kind: 'upsert', records: 1 },
    };
  }

  #delete(table: CatalogTable, key: KeyPredicate): ApiResponse {
    const id = this.#validator.mustLocate(table, key);
    this.#store.delete(table.logicalName, id);
    return { status: 204, headers: {}, body: '', work: { kind: 'delete', records: 1 } };
  }

  #representation(table: CatalogTable, row: StoredRow, query: Map<string, string>, status: 200 | 201): ApiResponse {
    const select = readSelect(query, table);
    const context = `${this.#base}$metadata#${table.entitySetName}${select ? `(${select.join(',')})` : ''}/$entity`;
    const headers: Record<string, string> = { ETag: etag(row) };
    // The doc's 201 example carries Preference-Applied, its 200 example does not (reference §1.3).
    if (status === 201) headers['Preference-Applied'] = 'return=representation';
    return json(
      status,
      { '@odata.context': context, ...this.serialize(table, row, select, this.#annotations) },
      headers,
    );
  }

  #bulk(table: CatalogTable, action: BulkAction, request: ApiRequest, context: ApiContext): ApiResponse {
    if (!table.supportsBulk) {
      throw new ServiceFault(
        400,
        '0x80040219',
        `The '${action}' message is not supported for the '${table.logicalName}' entity. Send these rows with $batch instead.`,
      );
    }
    const body = parseBody(table, request.body);
    const targets = body.Targets;
    if (!Array.isArray(targets)) {
      throw faults.payload(
        table.entitySetName,
        `Microsoft.OData.ODataException: The parameter 'Targets' is missing or is not an array.`,
      );
    }
    const type = `Microsoft.Dynamics.CRM.${table.logicalName}`;
    const point = this.#store.savepoint();
    const ids: string[] = [];
    const seen = new Set<string>();
    try {
      for (const target of targets as unknown[]) {
        if (!target || typeof target !== 'object' || Array.isArray(target)) {
          throw faults.payload(
            table.entitySetName,
            'Microsoft.OData.ODataException: Every item in Targets must be an entity.',
          );
        }
        const t = target as Record<string, unknown>;
        const odataType =
          typeof t['@odata.type'] === 'string' ? (t['@odata.type'] as string).replace(/^#/, '') : undefined;
        if (odataType !== type) {
          throw faults.payload(
            table.entitySetName,
            `Microsoft.OData.ODataException: Every item in Targets needs "@odata.type": "${type}"; got ${JSON.stringify(t['@odata.type'] ?? null)}.`,
          );
        }
        if (action === 'CreateMultiple') {
          ids.push(this.#createRow(table, t, request.headers, context.resolve).id);
        } else if (action === 'UpdateMultiple') {
          const id = t[table.primaryId];
          if (typeof id !== 'string' || !isGuid(id)) {
            throw faults.payload(
              table.entitySetName,
              `Microsoft.OData.ODataException: UpdateMultiple needs the primary key '${table.primaryId}' in every target; alternate keys are not supported.`,
            );
          }
          // Duplicate ids in UpdateMultiple: only the first is processed, the rest ignored (reference §2.1).
          if (seen.has(id.toLowerCase())) continue;
          seen.add(id.toLowerCase());
          const existing = this.#store.get(table.logicalName, id);
          if (!existing) throw faults.recordsNotFound(table.logicalName, id.toLowerCase());
          this.#upsertRow(
            table,
            { kind: 'id', id: id.toLowerCase() },
            undefined,
            existing,
            t,
            request.headers,
            context.resolve,
          );
        } else {
          const key = this.#targetKey(table, t);
          const located = this.#validator.locate(table, key);
          const identity =
            located.byKey !== undefined
              ? `k:${located.byKey.name}:${keyIndexText(located.byKey.values)}`
              : `i:${(key as { id: string }).id}`;
          if (seen.has(identity)) {
            throw new ServiceFault(
              400,
              '0x80040237',
              `UpsertMultiple Targets contain the record ${describeKey(key)} more than once; send each key once per request.`,
            );
          }
          seen.add(identity);
          const existing = located.id === undefined ? undefined : this.#store.get(table.logicalName, located.id);
          this.#upsertRow(table, key, located.byKey, existing, t, request.headers, context.resolve);
        }
      }
    } catch (error) {
      this.#store.rollback(point);
      throw error;
    }
    this.#store.release(point);
    const kind = action === 'CreateMultiple' ? 'create' : action === 'UpdateMultiple' ? 'update' : 'upsert';
    if (action === 'CreateMultiple') {
      return {
        ...json(200, {
          '@odata.context': `${this.#base}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse`,
          Ids: ids,
        }),
        work: { kind, records: targets.length, bulk: true },
      };
    }
    return { status: 204, headers: {}, body: '', work: { kind, records: targets.length, bulk: true } };
  }

  /**
   * `WinOpportunity` / `LoseOpportunity`: `{ OpportunityClose: { "opportunityid@odata.bind": "/opportunities(...)",
   * ... }, Status }` closes an open opportunity with a status of the Won/Lost state. Answers 204 (no return value).
   */
  #close(action: string, request: ApiRequest): ApiResponse {
    const rule = CLOSE_ACTIONS[action]!;
    const table = this.#catalog.byLogicalName(rule.table);
    if (!table) throw faults.notFoundSegment(action);
    const bad = (what: string) => faults.payload(table.entitySetName, `Microsoft.OData.ODataException: ${what}`);
    const body = parseBody(table, request.body);
    const activity = body[rule.parameter];
    if (!activity || typeof activity !== 'object' || Array.isArray(activity)) {
      throw bad(`The parameter '${rule.parameter}' of '${action}' is missing; send the ${rule.activity} activity.`);
    }
    const close = activity as Record<string, unknown>;
    const type = close['@odata.type'];
    if (type !== undefined && String(type).replace(/^#/, '') !== `Microsoft.Dynamics.CRM.${rule.activity}`) {
      throw bad(`'${rule.parameter}' must be a Microsoft.Dynamics.CRM.${rule.activity}; got ${JSON.stringify(type)}.`);
    }
    const status = body.Status;
    if (typeof status !== 'number' || !Number.isInteger(status)) {
      throw bad(`The parameter 'Status' of '${action}' is missing or not an Edm.Int32.`);
    }
    const ref = close[`${table.primaryId}@odata.bind`];
    if (typeof ref !== 'string') {
      throw bad(`The ${rule.activity} activity needs '${table.primaryId}@odata.bind' naming the ${table.logicalName}.`);
    }
    const segments = parseODataPath(serviceRelativePath(ref));
    if (segments.length !== 1 || !segments[0].key || segments[0].name !== table.entitySetName) {
      throw bad(
        `The '${table.primaryId}@odata.bind' value '${ref}' does not address a '${table.entitySetName}' record.`,
      );
    }
    const id = this.#validator.mustLocate(table, segments[0].key);
    const existing = this.#store.get(table.logicalName, id)!;
    const state = existing.attributes.statecode ?? 0;
    if (state !== 0) throw new ServiceFault(400, '0x80040203', `The ${table.logicalName} is already closed.`);
    const option = table.attributes.get('statuscode')?.OptionSet?.Options?.find((o) => o.Value === status);
    if (!option || option.State !== rule.state) throw faults.invalidStatus(status, rule.state, table.logicalName);
    this.#store.put(table.logicalName, id, { ...existing.attributes, statecode: rule.state, statuscode: status });
    return { status: 204, headers: {}, body: '', work: { kind: 'update', records: 1 } };
  }

  /** How an UpsertMultiple target names its row: `@odata.id`, else the primary id, else a full alternate key in the body. */
  #targetKey(table: CatalogTable, target: Record<string, unknown>): KeyPredicate {
    const ref = target['@odata.id'];
    if (typeof ref === 'string') {
      const segments = parseODataPath(serviceRelativePath(ref));
      if (segments.length !== 1 || !segments[0].key || segments[0].name !== table.entitySetName) {
        throw faults.payload(
          table.entitySetName,
          `Microsoft.OData.ODataException: The @odata.id '${ref}' does not address a '${table.entitySetName}' record.`,
        );
      }
      return segments[0].key;
    }
    const id = target[table.primaryId];
    if (typeof id === 'string' && isGuid(id)) return { kind: 'id', id: id.toLowerCase() };
    for (const key of table.keys) {
      if (key.KeyAttributes.every((a) => target[a] !== undefined && target[a] !== null)) {
        return { kind: 'key', pairs: key.KeyAttributes.map((a) => ({ name: a, value: target[a] as string | number })) };
      }
    }
    throw faults.payload(
      table.entitySetName,
      `Microsoft.OData.ODataException: An UpsertMultiple target needs "@odata.id" with an alternate key, the primary key '${table.primaryId}', or all columns of an alternate key.`,
    );
  }

  #createRow(
    table: CatalogTable,
    body: Record<string, unknown>,
    headers: Readonly<Record<string, string>>,
    resolve?: ReferenceResolver,
    keyValues?: Record<string, unknown>,
    urlId?: string,
  ): StoredRow {
    const attributes = this.#validator.read(table, body, 'create', undefined, resolve);
    // Key values from the URL are copied only when the body lacks them (reference §1.2).
    for (const [name, value] of Object.entries(keyValues ?? {})) if (!(name in attributes)) attributes[name] = value;
    const bodyId = attributes[table.primaryId];
    delete attributes[table.primaryId];
    const id = urlId ?? (typeof bodyId === 'string' ? bodyId : randomUUID());
    if (this.#store.get(table.logicalName, id)) throw faults.duplicateId();
    this.#checkUnique(table, id, attributes, headers);
    return this.#store.put(table.logicalName, id, attributes);
  }

  #upsertRow(
    table: CatalogTable,
    key: KeyPredicate,
    byKey: { readonly attributes: readonly string[]; readonly values: readonly unknown[] } | undefined,
    existing: StoredRow | undefined,
    body: Record<string, unknown>,
    headers: Readonly<Record<string, string>>,
    resolve?: ReferenceResolver,
  ): StoredRow {
    if (!existing) {
      const keyValues: Record<string, unknown> = {};
      if (byKey) {
        byKey.attributes.forEach((a, i) => {
          keyValues[a] = byKey.values[i];
          const nav = table.navigationByAttribute.get(a);
          if (nav && nav.length === 1) keyValues[`${a}@target`] = nav[0].target;
        });
      }
      return this.#createRow(table, body, headers, resolve, keyValues, key.kind === 'id' ? key.id : undefined);
    }
    const patch = this.#validator.read(table, body, 'update', existing, resolve);
    delete patch[table.primaryId];
    // Existing row: body attributes that duplicate the URL's key attributes are dropped (reference §1.2).
    for (const a of byKey?.attributes ?? []) {
      delete patch[a];
      delete patch[`${a}@target`];
    }
    const merged = { ...existing.attributes, ...patch };
    this.#checkUnique(table, existing.id, merged, headers);
    return this.#store.put(table.logicalName, existing.id, merged);
  }

  #checkUnique(
    table: CatalogTable,
    id: string,
    attributes: Readonly<Record<string, unknown>>,
    headers: Readonly<Record<string, string>>,
  ): void {
    const conflict = this.#store.keyConflict(table.logicalName, id, attributes);
    if (conflict) {
      const key = table.keys.find((k) => k.LogicalName === conflict.name);
      throw faults.entityKeyViolated(key?.SchemaName ?? conflict.name, conflict.attributes);
    }
    // Web API writes suppress duplicate detection unless the caller asks for it (reference §10, TV13).
    if (headers['mscrm.suppressduplicatedetection']?.trim().toLowerCase() === 'false' && table.primaryName) {
      const name = attributes[table.primaryName];
      if (typeof name === 'string') {
        const lower = name.toLowerCase();
        for (const row of this.#store.rows(table.logicalName)) {
          const other = row.attributes[table.primaryName];
          if (row.id !== id && typeof other === 'string' && other.toLowerCase() === lower)
            throw faults.duplicateDetected();
        }
      }
    }
  }
}

const FORMATTED = '@OData.Community.Display.V1.FormattedValue';

/** The display label of a choice, multi-select choice or Yes/No value (`"Swimming; Camping"`, TV14). */
function formattedValue(table: CatalogTable, name: string, value: unknown): string | undefined {
  const os = table.attributes.get(name)?.OptionSet;
  if (!os) return undefined;
  const text = (label: unknown) => (typeof label === 'string' ? label : undefined);
  if (typeof value === 'boolean') return text(value ? os.TrueOption?.Label : os.FalseOption?.Label);
  const options = os.Options ?? [];
  if (typeof value === 'number') return text(options.find((o) => o.Value === value)?.Label);
  if (typeof value === 'string') {
    return value
      .split(',')
      .map((v) => text(options.find((o) => o.Value === Number(v))?.Label) ?? v)
      .join('; ');
  }
  return undefined;
}

function wantsAnnotations(headers: Readonly<Record<string, string>>): boolean {
  return /odata\.include-annotations="?[^"]*(\*|FormattedValue|lookuplogicalname)/i.test(headers.prefer ?? '');
}

function isLookup(table: CatalogTable, name: string): boolean {
  const type = table.attributes.get(name)?.AttributeTypeName?.Value;
  return type === 'LookupType' || type === 'CustomerType' || type === 'OwnerType';
}

function fieldOf(table: CatalogTable, row: StoredRow, name: string): unknown {
  if (name === table.primaryId) return row.id;
  if (name === 'versionnumber') return row.versionNumber;
  if (name === 'createdon' && !('createdon' in row.attributes)) return row.createdOn;
  if (name === 'modifiedon' && !('modifiedon' in row.attributes)) return row.modifiedOn;
  return row.attributes[name] ?? null;
}

function sameValue(stored: unknown, literal: unknown): boolean {
  if (stored === null || stored === undefined) return literal === null;
  // String comparisons follow the database's case-insensitive collation.
  if (typeof stored === 'string' && typeof literal === 'string') return stored.toLowerCase() === literal.toLowerCase();
  return stored === literal;
}

/**
 * An order comparison: numbers by value; date/time values (ISO 8601 text, as stored and as the unquoted literal) by
 * instant; other text ordinally. A null never compares (as in SQL).
 */
function inOrder(stored: unknown, operator: 'gt' | 'ge' | 'lt' | 'le', literal: ODataLiteral): boolean {
  if (stored === null || stored === undefined || literal === null) return false;
  let a: number | string;
  let b: number | string;
  if (typeof stored === 'number' && typeof literal === 'number') [a, b] = [stored, literal];
  else {
    const ta = Date.parse(String(stored));
    const tb = Date.parse(String(literal));
    [a, b] = Number.isNaN(ta) || Number.isNaN(tb) ? [String(stored), String(literal)] : [ta, tb];
  }
  return operator === 'gt' ? a > b : operator === 'ge' ? a >= b : operator === 'lt' ? a < b : a <= b;
}

/** True for a column a query may name: an attribute, the primary id, or a system column every row has. */
function isColumn(table: CatalogTable, name: string): boolean {
  return (
    table.attributes.has(name) ||
    name === table.primaryId ||
    ['versionnumber', 'createdon', 'modifiedon'].includes(name)
  );
}

/** The service's answer to a `$select` or `$filter` naming a property the table does not have. */
function unknownProperty(table: CatalogTable, property: string): ServiceFault {
  return new ServiceFault(
    400,
    '0x0',
    `Could not find a property named '${property}' on type 'Microsoft.Dynamics.CRM.${table.logicalName}'.`,
  );
}

function readSelect(query: Map<string, string>, table: CatalogTable): string[] | undefined {
  const select = query.get('$select');
  if (!select) return undefined;
  const names = select
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of names) {
    const attribute = lookupKeyName(name);
    // A lookup is selected by its `_<attr>_value` name; the bare lookup name is a navigation property.
    if (!isColumn(table, attribute) || (name === attribute && isLookup(table, attribute))) {
      throw unknownProperty(table, name);
    }
  }
  return names;
}

function wantsRepresentation(headers: Readonly<Record<string, string>>): boolean {
  return /(^|[,;\s])return=representation\b/i.test(headers.prefer ?? '');
}

function etag(row: StoredRow): string {
  return `W/"${row.versionNumber}"`;
}

function describeKey(key: KeyPredicate): string {
  if (key.kind === 'id') return `(${key.id})`;
  return `(${key.pairs.map((p) => `${p.name}=${typeof p.value === 'string' ? `'${p.value}'` : String(p.value)}`).join(',')})`;
}

function parseBody(table: CatalogTable, text: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = text.trim() === '' ? {} : JSON.parse(text);
  } catch (error) {
    throw faults.payload(
      table.entitySetName,
      `Microsoft.OData.ODataException: The payload is not valid JSON (${(error as Error).message}).`,
    );
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw faults.payload(table.entitySetName, 'Microsoft.OData.ODataException: The payload must be a JSON object.');
  }
  return body as Record<string, unknown>;
}

/** A JSON response with the OData content type. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): ApiResponse {
  return { status, headers: { 'Content-Type': JSON_TYPE, ...headers }, body: JSON.stringify(body) };
}

/** Maps any thrown value to a Web API error response (500 for emulator bugs, with the message). */
export function errorResponse(error: unknown): ApiResponse {
  if (error instanceof ServiceFault) {
    return { status: error.status, headers: { 'Content-Type': JSON_TYPE, ...error.headers }, body: error.body() };
  }
  if (error instanceof ODataSyntaxError) {
    const fault = faults.querySyntax(error.message);
    return { status: fault.status, headers: { 'Content-Type': JSON_TYPE }, body: fault.body() };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    status: 500,
    headers: { 'Content-Type': JSON_TYPE },
    body: JSON.stringify({ error: { code: '0x80040216', message: `Emulator internal error: ${message}` } }),
  };
}
