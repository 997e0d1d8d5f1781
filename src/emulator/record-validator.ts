import { CLOSING_STATES } from './close-messages.js';
import type { CatalogAttribute, CatalogTable, EmulatorCatalog, NavigationProperty } from './emulator-catalog.js';
import { PRINCIPAL_SETS } from './emulator-catalog.js';
import { int64AsNumber } from './int64-json.js';
import { isGuid, type KeyPredicate, ODataSyntaxError, parseODataPath, serviceRelativePath } from './odata-path.js';
import { faults, ServiceFault } from './service-fault.js';
import type { EmulatorStore, StoredRow } from './store.js';

/** Where a key predicate points: a primary id, or alternate-key values (and the row id when the row exists). */
export interface Located {
  readonly id: string | undefined;
  readonly byKey?: {
    readonly name: string;
    readonly attributes: readonly string[];
    readonly values: readonly unknown[];
  };
}

/** Resolves `$n` Content-ID references inside a `$batch` change set to the URL of the entity created by request n. */
export type ReferenceResolver = (reference: string) => string;

/** The operation a payload is read for; decides which IsValidFor* flag applies. */
export type WriteOperation = 'create' | 'update';

const INT32 = { min: -2147483648, max: 2147483647 };
const DEFAULT_RANGES: Record<string, { min: number; max: number }> = {
  IntegerType: INT32,
  BigIntType: { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
  DecimalType: { min: -100000000000, max: 100000000000 },
  DoubleType: { min: -100000000000, max: 100000000000 },
  MoneyType: { min: -922337203685477, max: 922337203685477 },
};
const EDM: Record<string, string> = {
  StringType: 'Edm.String',
  MemoType: 'Edm.String',
  IntegerType: 'Edm.Int32',
  BigIntType: 'Edm.Int64',
  DecimalType: 'Edm.Decimal',
  DoubleType: 'Edm.Double',
  MoneyType: 'Edm.Decimal',
  BooleanType: 'Edm.Boolean',
  PicklistType: 'Edm.Int32',
  StateType: 'Edm.Int32',
  StatusType: 'Edm.Int32',
  MultiSelectPicklistType: 'Edm.String',
  DateTimeType: 'Edm.DateTimeOffset',
  UniqueidentifierType: 'Edm.Guid',
};
const LOOKUP_TYPES = new Set(['LookupType', 'CustomerType', 'OwnerType']);
const MIN_DATE = Date.UTC(1753, 0, 1);
const MAX_DATE = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * Server-side rules for a write payload: property names, `@odata.bind` lookups, types, lengths, ranges, option values,
 * dates, status-for-state, IsValidForCreate/IsValidForUpdate (silently ignored, reference §1.3). Returns the
 * attribute values to store (see `store.ts` for the stored shapes) or throws a {@link ServiceFault}.
 */
export class RecordValidator {
  readonly #catalog: EmulatorCatalog;
  readonly #store: EmulatorStore;

  constructor(catalog: EmulatorCatalog, store: EmulatorStore) {
    this.#catalog = catalog;
    this.#store = store;
  }

  /** Finds the row a key predicate addresses; throws the documented error when the key is not a defined key. */
  locate(table: CatalogTable, key: KeyPredicate): Located {
    if (key.kind === 'id')
      return { id: this.#store.get(table.logicalName, key.id) ? key.id : undefined, byKey: undefined };
    const pairs = key.pairs.map((p) => ({ name: lookupKeyName(p.name), value: p.value }));
    if (pairs.length === 1 && (pairs[0].name === table.primaryId || pairs[0].name === '')) {
      const id = pairs[0].value;
      if (typeof id !== 'string' || !isGuid(id)) throw faults.invalidKey(table.logicalName);
      return { id: this.#store.get(table.logicalName, id) ? id : undefined };
    }
    const names = new Set(pairs.map((p) => p.name));
    const match = table.keys.find(
      (k) => k.KeyAttributes.length === names.size && k.KeyAttributes.every((a) => names.has(a)),
    );
    if (!match || names.size !== pairs.length) throw faults.invalidKey(table.logicalName);
    const values = match.KeyAttributes.map((a) => pairs.find((p) => p.name === a)!.value);
    return {
      id: this.#store.findByKey(table.logicalName, match.LogicalName, values),
      byKey: { name: match.LogicalName, attributes: match.KeyAttributes, values },
    };
  }

  /** The id of the row the key names; throws the service's not-found fault when there is none. */
  mustLocate(table: CatalogTable, key: KeyPredicate): string {
    const located = this.locate(table, key);
    if (located.id !== undefined) return located.id;
    if (key.kind === 'id') throw faults.recordNotFound(table.logicalName, key.id);
    if (!located.byKey) throw faults.recordNotFound(table.logicalName, String(key.pairs[0].value));
    throw faults.keyNotFound(table.logicalName);
  }

  /**
   * Reads a payload for `op` on `table`. `existing` is the row an update applies to (for status-for-state).
   * The result holds only attributes the operation may set.
   */
  read(
    table: CatalogTable,
    body: Record<string, unknown>,
    op: WriteOperation,
    existing?: StoredRow,
    resolve?: ReferenceResolver,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(body)) {
      if (name.startsWith('@')) continue; // @odata.type, @odata.id, @odata.etag: instance annotations
      const at = name.indexOf('@');
      if (at > 0) {
        const annotation = name.slice(at + 1);
        const property = name.slice(0, at);
        if (annotation === 'odata.bind') this.#bind(table, property, value, op, out, resolve);
        continue; // other property annotations (formatted values) are ignored by the service
      }
      const attribute = table.attributes.get(name);
      if (!attribute) {
        const nav = table.navigation.get(name);
        // `"parentaccountid": null` disassociates like the bind form (TV15); a nav name with a value is not a value.
        if (nav && value === null) {
          if (allowed(table.attributes.get(nav.attribute), op)) setLookup(out, nav.attribute, null, null);
          continue;
        }
        if (nav) {
          throw faults.payload(
            table.entitySetName,
            `Microsoft.OData.ODataException: A node of type 'PrimitiveValue' was read from the JSON reader when trying to read the value of the navigation property '${name}'; use '${name}@odata.bind' with an entity reference.`,
          );
        }
        throw faults.invalidProperty(name, table.logicalName);
      }
      const type = attribute.AttributeTypeName?.Value ?? `${attribute.AttributeType}Type`;
      if (LOOKUP_TYPES.has(type)) {
        if (value === null) {
          if (allowed(attribute, op)) setLookup(out, name, null, null);
          continue;
        }
        const navs = table.navigationByAttribute.get(name) ?? [];
        throw faults.payload(
          table.entitySetName,
          `Microsoft.OData.ODataException: Does not support untyped value in non-open type. Set the lookup '${name}' with '${navs[0]?.name ?? name}@odata.bind'.`,
        );
      }
      if (!allowed(attribute, op)) continue;
      out[name] = this.#value(table, attribute, type, value);
    }
    this.#stateAndStatus(table, out, op, existing);
    return out;
  }

  #bind(
    table: CatalogTable,
    property: string,
    value: unknown,
    op: WriteOperation,
    out: Record<string, unknown>,
    resolve?: ReferenceResolver,
  ): void {
    const nav = table.navigation.get(property);
    if (!nav) throw faults.undeclaredNavigation(table.entitySetName, property);
    const attribute = table.attributes.get(nav.attribute);
    if (value === null) {
      if (allowed(attribute, op)) setLookup(out, nav.attribute, null, null);
      return;
    }
    if (typeof value !== 'string') {
      throw faults.payload(
        table.entitySetName,
        `Microsoft.OData.ODataException: The value of '${property}@odata.bind' must be an entity reference URL, got ${JSON.stringify(value)}.`,
      );
    }
    const target = this.#resolveReference(table, nav, value, resolve);
    if (allowed(attribute, op)) setLookup(out, nav.attribute, target.id, target.table);
  }

  #resolveReference(
    table: CatalogTable,
    nav: NavigationProperty,
    reference: string,
    resolve?: ReferenceResolver,
  ): { id: string; table: string } {
    let text = reference.trim();
    if (/^\$\d+$/.test(text)) {
      if (!resolve)
        throw new ServiceFault(400, '0x0', `Content-ID Reference: '${text}' does not exist in the batch context.`);
      text = resolve(text);
    }
    text = serviceRelativePath(text);
    let segments: ReturnType<typeof parseODataPath>;
    try {
      segments = parseODataPath(text);
    } catch (error) {
      if (error instanceof ODataSyntaxError) throw faults.payload(table.entitySetName, error.message);
      throw error;
    }
    const segment = segments[0];
    if (segments.length !== 1 || !segment.key) {
      throw faults.payload(
        table.entitySetName,
        `Microsoft.OData.ODataException: The entity reference '${reference}' for '${nav.name}' is not of the form '<entityset>(<key>)'.`,
      );
    }
    const principal = PRINCIPAL_SETS[segment.name];
    if (principal) {
      // The emulator stores no users or teams: any GUID is accepted for systemusers(...) and teams(...).
      if (nav.target !== 'owner' && nav.target !== principal) this.#wrongTarget(table, nav, segment.name);
      if (segment.key.kind !== 'id') {
        throw faults.payload(
          table.entitySetName,
          `Microsoft.OData.ODataException: ${segment.name} must be bound by GUID.`,
        );
      }
      return { id: segment.key.id, table: principal };
    }
    const target = this.#catalog.byEntitySet(segment.name);
    if (!target) {
      const declared = this.#catalog.byLogicalName(nav.target);
      if (!declared && segment.key.kind === 'id') {
        // No snapshot for the target table (e.g. transactioncurrency): the emulator cannot check it, so it trusts it.
        return { id: segment.key.id, table: nav.target };
      }
      throw faults.notFoundSegment(segment.name);
    }
    if (target.logicalName !== nav.target) this.#wrongTarget(table, nav, segment.name);
    return { id: this.mustLocate(target, segment.key), table: target.logicalName };
  }

  #wrongTarget(table: CatalogTable, nav: NavigationProperty, set: string): never {
    throw faults.payload(
      table.entitySetName,
      `Microsoft.OData.ODataException: The navigation property '${nav.name}' refers to '${nav.target}', but the entity reference points to the entity set '${set}'.`,
    );
  }

  #value(table: CatalogTable, attribute: CatalogAttribute, type: string, value: unknown): unknown {
    const name = attribute.LogicalName;
    const entity = table.logicalName;
    if (value === null) {
      const level =
        typeof attribute.RequiredLevel === 'string' ? attribute.RequiredLevel : attribute.RequiredLevel?.Value;
      if (level === 'SystemRequired') throw faults.requiredNull(name, entity);
      return null;
    }
    const bad = (): never => {
      throw faults.badValue(table.entitySetName, value, EDM[type] ?? type);
    };
    switch (type) {
      case 'StringType':
      case 'MemoType': {
        if (typeof value !== 'string') bad();
        const max = attribute.MaxLength ?? (type === 'MemoType' ? 1048576 : 4000);
        // nvarchar length counts UTF-16 code units, as JS string length does.
        if ((value as string).length > max) throw faults.tooLong(name, entity, max);
        return value;
      }
      case 'IntegerType':
      case 'BigIntType': {
        let n = value;
        if (type === 'BigIntType' && typeof value === 'string' && /^-?\d+$/.test(value)) n = Number(value);
        if (typeof n !== 'number' || !Number.isInteger(n)) bad();
        this.#range(table, attribute, type, n as number);
        return n;
      }
      case 'DecimalType':
      case 'DoubleType':
      case 'MoneyType': {
        if (typeof value !== 'number' || !Number.isFinite(value)) bad();
        this.#range(table, attribute, type, value as number);
        const precision = attribute.Precision ?? (type === 'MoneyType' ? 4 : type === 'DoubleType' ? 5 : 2);
        // The service rounds to the column's precision rather than rejecting: TV3 sends latitude 47.639583 (6
        // decimals) to a precision-5 column and gets 204. So extra decimals are rounded, like SQL decimal(p,s).
        if (decimals(value as number) > precision) return roundTo(value as number, precision);
        return value;
      }
      case 'BooleanType':
        if (typeof value !== 'boolean') bad();
        return value;
      case 'PicklistType':
      case 'StateType':
      case 'StatusType': {
        if (typeof value !== 'number' || !Number.isInteger(value)) bad();
        const options = (attribute.OptionSet?.Options ?? []).map((o) => o.Value);
        if (!options.includes(value as number)) throw faults.optionOutOfRange(value, name, entity, options);
        return value;
      }
      case 'MultiSelectPicklistType': {
        if (typeof value !== 'string') bad();
        const options = (attribute.OptionSet?.Options ?? []).map((o) => o.Value);
        const parts = (value as string).split(',').map((p) => p.trim());
        if ((value as string).trim() === '') return null;
        const chosen: number[] = [];
        for (const part of parts) {
          const n = Number(part);
          if (!/^-?\d+$/.test(part) || !options.includes(n)) throw faults.optionOutOfRange(part, name, entity, options);
          if (!chosen.includes(n)) chosen.push(n);
        }
        if (chosen.length > 150) throw faults.outOfRange(chosen.length, name, entity, 0, 150);
        return chosen.join(',');
      }
      case 'DateTimeType':
        return this.#dateTime(table, attribute, value);
      case 'UniqueidentifierType':
        if (typeof value !== 'string' || !isGuid(value)) bad();
        return (value as string).toLowerCase();
      default:
        // EntityName, Virtual and other types the toolkit does not write: stored as sent.
        return value;
    }
  }

  #range(table: CatalogTable, attribute: CatalogAttribute, type: string, value: number): void {
    const defaults = DEFAULT_RANGES[type] ?? INT32;
    const min = Number(int64AsNumber(attribute.MinValue ?? defaults.min));
    const max = Number(int64AsNumber(attribute.MaxValue ?? defaults.max));
    if (value < min || value > max) throw faults.outOfRange(value, attribute.LogicalName, table.logicalName, min, max);
  }

  #dateTime(table: CatalogTable, attribute: CatalogAttribute, value: unknown): string {
    const behavior = attribute.DateTimeBehavior?.Value ?? 'UserLocal';
    const dateOnly = behavior === 'DateOnly';
    const text = typeof value === 'string' ? value.trim() : '';
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/.exec(text);
    // DateOnly columns are Edm.Date on the wire: a time part is a type error (reference §6).
    if (!m || (dateOnly && m[4] !== undefined)) {
      throw faults.badValue(table.entitySetName, value, dateOnly ? 'Edm.Date' : 'Edm.DateTimeOffset');
    }
    const [, y, mo, d, h = '00', mi = '00', s = '00', zone] = m;
    const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
    if (Number.isNaN(wall) || new Date(wall).getUTCDate() !== Number(d)) {
      throw faults.badValue(table.entitySetName, value, dateOnly ? 'Edm.Date' : 'Edm.DateTimeOffset');
    }
    let instant = wall;
    if (behavior === 'UserLocal' && zone && zone !== 'Z') {
      const sign = zone[0] === '-' ? -1 : 1;
      instant = wall - sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60000;
    }
    if (instant < MIN_DATE) throw faults.dateTooEarly(value, attribute.LogicalName, table.logicalName);
    if (instant > MAX_DATE) throw faults.outOfRange(value, attribute.LogicalName, table.logicalName, 1753, 9999);
    if (dateOnly) return `${y}-${mo}-${d}`;
    // Dataverse keeps whole seconds; TimeZoneIndependent keeps the wall-clock time as sent (no conversion).
    return `${new Date(instant).toISOString().slice(0, 19)}Z`;
  }

  #stateAndStatus(table: CatalogTable, out: Record<string, unknown>, op: WriteOperation, existing?: StoredRow): void {
    const stateAttr = table.attributes.get('statecode');
    const statusAttr = table.attributes.get('statuscode');
    if (!stateAttr || !statusAttr) return;
    const states = stateAttr.OptionSet?.Options ?? [];
    const statuses = statusAttr.OptionSet?.Options ?? [];
    const defaultState = states.find((o) => o.Value === 0)?.Value ?? states[0]?.Value;
    const state = (out.statecode ?? existing?.attributes.statecode ?? (op === 'create' ? defaultState : undefined)) as
      | number
      | undefined;
    if (state === undefined || state === null) return;
    if (op !== 'create' && out.statecode !== undefined) {
      // Won/Lost opportunities are reached only through WinOpportunity/LoseOpportunity (close-messages.ts).
      const closing = CLOSING_STATES[table.logicalName]?.[out.statecode as number];
      if (closing) throw faults.useCloseMessage(table.logicalName, closing.label);
    }
    if (op === 'create' && out.statecode === undefined) out.statecode = state;
    if (out.statuscode === undefined || out.statuscode === null) {
      if (out.statecode !== undefined || op === 'create') {
        const fallback =
          states.find((o) => o.Value === state)?.DefaultStatus ?? statuses.find((o) => o.State === state)?.Value;
        if (fallback !== undefined) out.statuscode = fallback;
      }
      return;
    }
    const option = statuses.find((o) => o.Value === out.statuscode);
    if (option?.State !== undefined && option.State !== state) {
      throw faults.invalidStatus(out.statuscode as number, state, table.logicalName);
    }
  }
}

function allowed(attribute: CatalogAttribute | undefined, op: WriteOperation): boolean {
  if (!attribute) return true;
  return op === 'create' ? attribute.IsValidForCreate !== false : attribute.IsValidForUpdate !== false;
}

function setLookup(out: Record<string, unknown>, attribute: string, id: string | null, table: string | null): void {
  out[attribute] = id;
  out[`${attribute}@target`] = table;
}

/** `_primarycontactid_value` (the lookup property a key may name) → `primarycontactid`. */
export function lookupKeyName(name: string): string {
  const m = /^_(.+)_value$/.exec(name);
  return m ? m[1] : name;
}

function roundTo(value: number, precision: number): number {
  // Shifting through the decimal exponent avoids binary artefacts (1.005 → 1.01, not 1); tiny values fall back.
  const shifted = Number(`${Math.round(Number(`${value}e${precision}`))}e-${precision}`);
  return Number.isNaN(shifted) ? Math.round(value * 10 ** precision) / 10 ** precision : shifted;
}

function decimals(value: number): number {
  if (Number.isInteger(value)) return 0;
  const text = String(value);
  const e = text.indexOf('e-');
  if (e >= 0) {
    const mantissa = text.slice(0, e);
    const dot = mantissa.indexOf('.');
    return Number(text.slice(e + 2)) + (dot >= 0 ? mantissa.length - dot - 1 : 0);
  }
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}
