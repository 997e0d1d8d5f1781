import { FerryError } from '../../core/errors.js';

/** CDM attribute data types a Synapse Link `model.json` may use (microsoft/CDM `modeljsonschema.json`). */
export const CDM_DATA_TYPES = [
  'unclassified',
  'string',
  'int64',
  'double',
  'date',
  'time',
  'dateTime',
  'dateTimeOffset',
  'decimal',
  'boolean',
  'guid',
  'json',
] as const;
/** One of {@link CDM_DATA_TYPES}. */
export type CdmDataType = (typeof CDM_DATA_TYPES)[number];

/** One attribute (CSV column) of a CDM entity. */
export interface CdmAttribute {
  readonly name: string;
  readonly dataType: CdmDataType;
  /** Database length; `-1` when unbounded or not applicable. */
  readonly maxLength: number;
  /** Decimal precision/scale from the `is.dataFormat.numeric.shaped` trait, when present. */
  readonly precision?: number;
  readonly scale?: number;
}

/** One table of a `model.json`. */
export interface CdmEntity {
  readonly name: string;
  /** In CSV column order: the CSVs are headerless and bind by position. */
  readonly attributes: readonly CdmAttribute[];
  /** Number of partitions listed; `0` means the table has no data in this folder. */
  readonly partitionCount: number;
  readonly annotations: Readonly<Record<string, string>>;
}

/** A parsed `model.json`: the tables it lists. */
export interface CdmModel {
  readonly name: string;
  readonly entities: readonly CdmEntity[];
}

/**
 * Parses a CDM `model.json` as Synapse Link writes it; `file` names it in errors. Unknown fields are ignored,
 * missing required ones fail with the file and the JSON path.
 */
export function parseCdmModel(text: string, file: string): CdmModel {
  let doc: unknown;
  try {
    doc = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (error) {
    const where = jsonErrorPosition(text, error);
    throw new FerryError(
      'synapse_link.model_json',
      `\`${file}\` is not valid JSON${where}: ${(error as Error).message}. The folder is not committed; fix or re-export the folder and run again.`,
      { cause: error, details: { file } },
    );
  }
  const bad = (path: string, what: string): never => {
    throw new FerryError(
      'synapse_link.model_json',
      `\`${file}\` has ${what} at \`${path}\`; it is not a CDM model.json Synapse Link would write. The folder is not committed; fix or re-export it.`,
      { details: { file, path } },
    );
  };
  if (!isObject(doc)) return bad('$', 'no JSON object');
  if (!Array.isArray(doc.entities)) return bad('$.entities', 'no `entities` array');
  const entities = doc.entities.map((e: unknown, i: number): CdmEntity => {
    const at = `$.entities[${i}]`;
    if (!isObject(e) || typeof e.name !== 'string' || e.name === '')
      return bad(`${at}.name`, 'an entity without a name');
    if (!Array.isArray(e.attributes))
      return bad(`${at}.attributes`, `entity \`${e.name}\` without an attributes array`);
    const seen = new Set<string>();
    const attributes = e.attributes.map((a: unknown, j: number): CdmAttribute => {
      const aat = `${at}.attributes[${j}]`;
      if (!isObject(a) || typeof a.name !== 'string' || a.name === '')
        return bad(`${aat}.name`, 'an attribute without a name');
      if (typeof a.dataType !== 'string' || !(CDM_DATA_TYPES as readonly string[]).includes(a.dataType)) {
        return bad(`${aat}.dataType`, `attribute \`${a.name}\` with unknown dataType \`${String(a.dataType)}\``);
      }
      const lower = a.name.toLowerCase();
      if (seen.has(lower)) return bad(aat, `a second attribute named \`${a.name}\``);
      seen.add(lower);
      const shape = numericShape(a);
      return {
        name: a.name,
        dataType: a.dataType as CdmDataType,
        maxLength: typeof a.maxLength === 'number' ? a.maxLength : -1,
        ...shape,
      };
    });
    const annotations: Record<string, string> = {};
    if (Array.isArray(e.annotations)) {
      for (const an of e.annotations)
        if (isObject(an) && typeof an.name === 'string') annotations[an.name] = String(an.value ?? '');
    }
    return {
      name: e.name,
      attributes,
      partitionCount: Array.isArray(e.partitions) ? e.partitions.length : 0,
      annotations,
    };
  });
  return { name: typeof doc.name === 'string' ? doc.name : 'cdm', entities };
}

/** Finds an entity by name, case-insensitively (Dataverse logical names are lower case, folders may not be). */
export function findEntity(model: CdmModel, table: string): CdmEntity | undefined {
  const lower = table.toLowerCase();
  return model.entities.find((e) => e.name.toLowerCase() === lower);
}

// `cdm:traits` (Synapse Link) or `traits` carry precision/scale as trait arguments.
function numericShape(a: Record<string, unknown>): { precision?: number; scale?: number } {
  const traits = (a['cdm:traits'] ?? a.traits) as unknown;
  if (!Array.isArray(traits)) return {};
  for (const t of traits) {
    if (!isObject(t) || t.traitReference !== 'is.dataFormat.numeric.shaped' || !Array.isArray(t.arguments)) continue;
    const out: { precision?: number; scale?: number } = {};
    for (const arg of t.arguments) {
      if (!isObject(arg)) continue;
      const n = Number(arg.value);
      if (arg.name === 'precision' && Number.isInteger(n)) out.precision = n;
      if (arg.name === 'scale' && Number.isInteger(n)) out.scale = n;
    }
    return out;
  }
  return {};
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// V8 says "... at position N" (Node 20); turn it into line and column so the file can be fixed by hand.
function jsonErrorPosition(text: string, error: unknown): string {
  const m = /position (\d+)/.exec((error as Error)?.message ?? '');
  if (!m) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return ` at line ${line}, column ${column}`;
}
