import { UsageError } from '../../../../core/errors.js';
import type { ArtifactStore } from '../artifact-store.js';
import { declarations } from '../artifact-store.js';
import type { DataverseHttp } from '../connectors/dataverse-http.js';
import type { LocalStorage } from '../connectors/lake-files.js';
import type { SqlEngine } from '../connectors/sql-engine.js';
import { evaluateValue } from '../expression/dynamic-value.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { ActivityContext } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { UnsupportedError } from '../runtime-error.js';

/** What the data activities reach: the artifacts, the local storage, the SQL engine and Dataverse over HTTP. */
export interface RuntimeServices {
  readonly artifacts: ArtifactStore;
  readonly storage: LocalStorage;
  readonly sql: SqlEngine;
  /** Absent when no Dataverse URL is configured: a Dataverse activity then fails naming the setting. */
  readonly dataverse?: DataverseHttp;
  /**
   * A file-based Copy source that matches no file: the Copy docs are silent; mapping data flows fail unless
   * "Allow no files found" is set. Default `'succeed'` (0 rows, no schema).
   */
  readonly noFilesFound: 'succeed' | 'fail';
}

export interface ResolvedLinkedService {
  readonly name: string;
  readonly type: string;
  /** The parameter values it was resolved with (the reference's, else the declared defaults). */
  readonly parameters: JsonObject;
  readonly typeProperties: JsonObject;
}

export interface ResolvedDataset {
  readonly name: string;
  readonly type: string;
  readonly typeProperties: JsonObject;
  readonly schema: readonly JsonObject[];
  readonly linkedService: ResolvedLinkedService;
}

/** typeProperties of the dataset types the runtime reads and writes. */
export const DATASET_TYPE_PROPERTIES: Readonly<Record<string, readonly string[]>> = {
  Parquet: ['location', 'compressionCodec'],
  DelimitedText: [
    'location',
    'columnDelimiter',
    'rowDelimiter',
    'quoteChar',
    'escapeChar',
    'firstRowAsHeader',
    'nullValue',
    'encodingName',
    'compressionCodec',
  ],
  AzureSqlTable: ['schema', 'table'],
  CommonDataServiceForAppsEntity: ['entityName'],
};

export const DATASET_KEYS = [
  'linkedServiceName',
  'parameters',
  'annotations',
  'type',
  'typeProperties',
  'schema',
  'structure',
  'description',
  'folder',
];
export const LINKED_SERVICE_KEYS = ['type', 'typeProperties', 'annotations', 'description', 'parameters', 'connectVia'];
export const LINKED_SERVICE_TYPES = ['AzureBlobFS', 'AzureSqlDatabase', 'CommonDataServiceForApps', 'AzureKeyVault'];

/** Resolves a linked-service reference: parameters bound (defaults + given), `linkedService()` expressions evaluated. */
export function resolveLinkedService(
  services: RuntimeServices,
  reference: unknown,
  ctx: ActivityContext,
): ResolvedLinkedService {
  if (!isObject(reference) || typeof reference.referenceName !== 'string') {
    throw new UsageError(`Activity \`${ctx.name}\` has a linked-service reference without referenceName.`);
  }
  const artifact = services.artifacts.get('linkedService', reference.referenceName);
  const props = artifact.properties;
  checkKeys(props, LINKED_SERVICE_KEYS, `linked service \`${artifact.name}\``);
  if (props.connectVia !== undefined)
    throw new UnsupportedError(
      `\`connectVia\` (integration runtime) of linked service \`${artifact.name}\` is not implemented by the local runtime.`,
    );
  const type = String(props.type);
  if (!LINKED_SERVICE_TYPES.includes(type))
    throw new UnsupportedError(
      `Linked service type \`${type}\` (\`${artifact.name}\`) is not implemented by the local runtime; supported: ${LINKED_SERVICE_TYPES.join(', ')}.`,
    );
  const params = bind(
    declarations(props.parameters, 'parameter', `linked service \`${artifact.name}\``),
    ctx.evaluate(reference.parameters ?? {}),
    `linked service \`${artifact.name}\``,
  );
  const typeProperties = evaluateValue(props.typeProperties ?? {}, {
    ...ctx.scope,
    linkedService: () => params,
  }) as JsonObject;
  return { name: artifact.name, type, parameters: params, typeProperties };
}

/** Resolves a dataset reference: parameters bound, `dataset()` expressions evaluated, its linked service resolved. */
export function resolveDataset(services: RuntimeServices, reference: unknown, ctx: ActivityContext): ResolvedDataset {
  if (!isObject(reference) || typeof reference.referenceName !== 'string') {
    throw new UsageError(`Activity \`${ctx.name}\` has a dataset reference without referenceName.`);
  }
  const artifact = services.artifacts.get('dataset', reference.referenceName);
  const props = artifact.properties;
  checkKeys(props, DATASET_KEYS, `dataset \`${artifact.name}\``);
  const known = DATASET_TYPE_PROPERTIES[String(props.type)];
  if (!known)
    throw new UnsupportedError(
      `Dataset type \`${props.type}\` (\`${artifact.name}\`) is not implemented by the local runtime; supported: ${Object.keys(DATASET_TYPE_PROPERTIES).join(', ')}.`,
    );
  checkKeys(
    isObject(props.typeProperties) ? props.typeProperties : {},
    known,
    `the typeProperties of dataset \`${artifact.name}\``,
  );
  const params = bind(
    declarations(props.parameters, 'parameter', `dataset \`${artifact.name}\``),
    ctx.evaluate(reference.parameters ?? {}),
    `dataset \`${artifact.name}\``,
  );
  const scope = { ...ctx.scope, dataset: () => params };
  const typeProperties = evaluateValue(props.typeProperties ?? {}, scope) as JsonObject;
  const linkedService = resolveLinkedService(services, props.linkedServiceName, {
    ...ctx,
    scope,
    evaluate: (v) => evaluateValue(v, scope),
  });
  const schema = Array.isArray(props.schema)
    ? (props.schema.filter(isObject) as JsonObject[])
    : Array.isArray(props.structure)
      ? (props.structure.filter(isObject) as JsonObject[])
      : [];
  return { name: artifact.name, type: String(props.type), typeProperties, schema, linkedService };
}

function bind(decls: Map<string, { type: string; defaultValue?: Json }>, given: Json, owner: string): JsonObject {
  const values = isObject(given) ? given : {};
  const out: JsonObject = {};
  for (const key of Object.keys(values)) {
    if (!decls.has(key))
      throw new UsageError(
        `${owner} has no parameter \`${key}\`; declared: ${[...decls.keys()].join(', ') || '(none)'}.`,
      );
  }
  for (const [name, decl] of decls) {
    const v = Object.hasOwn(values, name) ? values[name]! : decl.defaultValue;
    if (v === undefined)
      throw new UsageError(`${owner} needs parameter \`${name}\`, which has no default; pass it in the reference.`);
    out[name] = v;
  }
  return out;
}

/** `{ fileSystem, folderPath, fileName }` of an `AzureBlobFSLocation`. */
export function lakeLocation(dataset: ResolvedDataset): { fileSystem: string; folderPath: string; fileName?: string } {
  const loc = dataset.typeProperties.location;
  if (!isObject(loc)) throw new UsageError(`Dataset \`${dataset.name}\` has no location.`);
  checkKeys(loc, ['type', 'fileSystem', 'folderPath', 'fileName'], `the location of dataset \`${dataset.name}\``);
  if (loc.type !== 'AzureBlobFSLocation')
    throw new UnsupportedError(
      `Location type \`${loc.type}\` of dataset \`${dataset.name}\` is not implemented; use AzureBlobFSLocation.`,
    );
  if (dataset.linkedService.type !== 'AzureBlobFS')
    throw new UnsupportedError(
      `Dataset \`${dataset.name}\` is a file dataset on linked service type \`${dataset.linkedService.type}\`.`,
    );
  if (typeof loc.fileSystem !== 'string' || loc.fileSystem === '')
    throw new UsageError(`Dataset \`${dataset.name}\` location has no fileSystem.`);
  return {
    fileSystem: loc.fileSystem,
    folderPath: typeof loc.folderPath === 'string' ? loc.folderPath : '',
    ...(typeof loc.fileName === 'string' && loc.fileName !== '' ? { fileName: loc.fileName } : {}),
  };
}
