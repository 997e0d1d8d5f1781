import type { Disposition } from './errors.js';

/**
 * One code of the catalogue: what the runner and the CLI do about it, and what it means. `exit` is only given where
 * the disposition's exit code does not say it (a usage or configuration error exits 2).
 */
export interface ErrorCodeEntry {
  readonly disposition: Disposition;
  readonly meaning: string;
  readonly exit?: 'usage';
}

/**
 * Every error code of the toolkit (`FerryError.code`), named `area.snake_case`, with its disposition: `fatal` (stop;
 * exit 1, or 2 for usage and configuration errors), `retry` (a temporary failure: try again later; exit 75) or `skip`
 * (nothing was done for this item; exit 4). The runner and the CLI read the disposition from here, so a code means
 * the same everywhere. A new error gets its code here first: `new FerryError` takes only codes of this catalogue.
 *
 * Reject reasons stored with rejected rows (`string.too_long`, `choice.unknown_label`, …) are not error codes: they
 * are data, listed in `core/mapping.ts`, and stay stable.
 */
export const ERROR_CODES = {
  usage: { disposition: 'fatal', exit: 'usage', meaning: 'a bad flag, value or configuration; the message says which' },

  'convert.dialect': { disposition: 'fatal', meaning: 'the staging engine has no conversion dialect' },
  'convert.no_staged': { disposition: 'fatal', meaning: 'the convert stage found no staged table from a read stage' },

  'dataverse.auth': { disposition: 'fatal', meaning: 'no token could be obtained for the Dataverse identity' },
  'dataverse.bad_json': { disposition: 'fatal', meaning: 'Dataverse answered with a body that is not JSON' },
  'dataverse.batch': { disposition: 'fatal', meaning: 'a `$batch` request with no operation' },
  'dataverse.batch_response': { disposition: 'retry', meaning: 'a `$batch` response could not be read; sent again' },
  'dataverse.close_missing': { disposition: 'fatal', meaning: 'an opportunity to close was not found after upsert' },
  'dataverse.forbidden': { disposition: 'fatal', meaning: 'Dataverse denied the request (403): a security role' },
  'dataverse.identities': { disposition: 'fatal', meaning: 'the identity pool is empty or misconfigured' },
  'dataverse.key': { disposition: 'fatal', meaning: 'an alternate key value cannot be written in a URL' },
  'dataverse.no_endpoint': { disposition: 'fatal', meaning: 'a stage needs Dataverse and the run has none' },
  'dataverse.payload': { disposition: 'fatal', meaning: 'a converted payload is not a JSON object text' },
  'dataverse.throttled': { disposition: 'retry', meaning: 'service-protection limits (429) beyond the retry budget' },
  'dataverse.unauthorized': { disposition: 'fatal', meaning: 'Dataverse refused the token (401)' },
  'dataverse.unreachable': { disposition: 'retry', meaning: 'Dataverse could not be reached over the network' },
  'dataverse.url': { disposition: 'fatal', meaning: 'the Dataverse URL is not valid' },

  'delta.absolute_path': { disposition: 'fatal', meaning: 'a Delta log names a data file outside the table' },
  'delta.bad_item': { disposition: 'fatal', meaning: 'a planned Delta window item cannot be read' },
  'delta.bad_log': { disposition: 'fatal', meaning: 'a `_delta_log` commit or checkpoint is malformed' },
  'delta.empty': { disposition: 'fatal', meaning: 'the Delta table has no commits' },
  'delta.missing_commit': { disposition: 'fatal', meaning: 'a Delta commit between checkpoint and head is missing' },
  'delta.missing_table': { disposition: 'fatal', meaning: 'the Delta table folder does not exist' },
  'delta.unsupported_feature': {
    disposition: 'fatal',
    meaning: 'the table uses a Delta reader feature this reader refuses (named in the message)',
  },
  'delta.unsupported_type': { disposition: 'fatal', meaning: 'a Delta column type the reader does not implement' },

  'deploy.cycle': { disposition: 'fatal', meaning: 'Synapse artifacts depend on each other in a cycle' },
  'deploy.partial': { disposition: 'fatal', meaning: 'a Synapse deployment stopped part way; deploy again' },
  'deploy.prune_blocked': {
    disposition: 'fatal',
    meaning: 'an artifact to prune is still referenced by one that stays; nothing was deleted',
  },

  'emulator.export_table': { disposition: 'fatal', meaning: 'the Synapse Link export names a table without metadata' },
  'emulator.listen': { disposition: 'fatal', meaning: 'the emulator could not listen on the port' },
  'emulator.metadata_empty': { disposition: 'fatal', meaning: 'the emulator metadata folder holds no snapshot' },
  'emulator.metadata_invalid': { disposition: 'fatal', meaning: 'an emulator metadata snapshot is malformed' },
  'emulator.metadata_missing': { disposition: 'fatal', meaning: 'the emulator metadata folder cannot be read' },
  'emulator.service_fault': { disposition: 'fatal', meaning: 'an error the emulator answers over HTTP (its status)' },
  'emulator.store_format': { disposition: 'fatal', meaning: 'the emulator store file has an unknown format' },
  'emulator.store_unreadable': { disposition: 'fatal', meaning: 'the emulator store file cannot be read' },

  'export.copy_sink_unsupported': {
    disposition: 'fatal',
    meaning:
      'a mapped column the Synapse export cannot write (party list, calendar rules; a multi-select of a table without bulk messages); omit it or remove it',
  },
  'export.file_pattern': { disposition: 'fatal', meaning: 'a delta file pattern the Synapse export cannot express' },
  'export.invalid_setting': { disposition: 'fatal', meaning: 'an export setting contradicts the pipeline definitions' },
  'export.sink_mapping': {
    disposition: 'fatal',
    meaning: 'the sink query or metadata does not give the Dataverse copy its columns',
  },
  'export.expression_too_long': { disposition: 'fatal', meaning: 'a generated Synapse expression exceeds its limit' },
  'export.extract_missing': {
    disposition: 'fatal',
    exit: 'usage',
    meaning: 'a custom extract query file cannot be read',
  },
  'export.extract_not_portable': { disposition: 'fatal', meaning: 'an extract query cannot be rendered as T-SQL' },
  'export.invalid_artifact': { disposition: 'fatal', meaning: 'a generated artifact fails the ARM schema' },
  'export.pipeline_shape': { disposition: 'fatal', meaning: 'a pipeline has a stage order the exporter cannot map' },
  'export.unsupported_stage': { disposition: 'fatal', meaning: 'a stage kind the exporter does not know' },

  'extract.delete_column': { disposition: 'fatal', meaning: 'the extract result lacks the delete marker column' },
  'extract.no_id': { disposition: 'fatal', meaning: 'the extract result has no `Id` column' },
  'extract.nothing_staged': { disposition: 'fatal', meaning: 'the extract stage found no staged Synapse Link rows' },
  'extract.sql': { disposition: 'fatal', meaning: 'the extract SQL failed' },

  'functions.config': { disposition: 'fatal', meaning: 'an app setting of the Functions app is missing' },
  'functions.retry': { disposition: 'retry', meaning: 'messages of the invocation must be retried by the host' },
  'functions.trigger': { disposition: 'fatal', meaning: 'the Service Bus trigger is not session-enabled' },

  'json.invalid': { disposition: 'fatal', meaning: 'a JSON document cannot be parsed exactly' },

  'lake.adls': { disposition: 'fatal', meaning: 'ADLS Gen2 refused a request (permissions, missing container)' },
  'lake.adls_unavailable': { disposition: 'retry', meaning: 'ADLS Gen2 failed a request temporarily (5xx, 408, 429)' },
  'lake.path': { disposition: 'fatal', meaning: 'a lake path leaves the lake root' },

  'mapping.change_timestamp': {
    disposition: 'fatal',
    meaning: 'no `changeTimestamp`, or one of a type that cannot order versions',
  },
  'mapping.choice': { disposition: 'fatal', meaning: 'a choice mode other than `label`, `value` or `auto`' },
  'mapping.empty': { disposition: 'fatal', meaning: 'the mapping maps no column' },
  'mapping.key_inactive': { disposition: 'fatal', meaning: 'the alternate key is not `Active` yet' },
  'mapping.key_type': { disposition: 'fatal', meaning: 'a key column of a type that cannot address rows' },
  'mapping.key_undefined': { disposition: 'fatal', meaning: 'the key is not an alternate key of the table' },
  'mapping.key_unmapped': { disposition: 'fatal', meaning: 'a column of the key is not mapped' },
  'mapping.lookup_key': { disposition: 'fatal', meaning: 'a lookup names a key its target table does not have' },
  'mapping.lookup_spec': { disposition: 'fatal', meaning: 'a lookup mapping is incomplete' },
  'mapping.lookup_target': { disposition: 'fatal', meaning: 'a lookup names a table the column cannot point to' },
  'mapping.metadata': { disposition: 'fatal', meaning: 'the snapshot gives a column impossible limits; re-pull it' },
  'mapping.navigation': { disposition: 'fatal', meaning: 'no relationship names the navigation property of a lookup' },
  'mapping.not_writable': { disposition: 'fatal', meaning: 'a mapped column is not valid for create or update' },
  'mapping.null_means': { disposition: 'fatal', meaning: '`nullMeans` does not fit the column' },
  'mapping.separator': { disposition: 'fatal', meaning: 'an empty multi-select separator' },
  'mapping.source_list': { disposition: 'fatal', meaning: 'several source columns for a column that takes one' },
  'mapping.source_missing': { disposition: 'fatal', meaning: 'a mapped column names no source column' },
  'mapping.source_type': { disposition: 'fatal', meaning: 'a source column type cannot become the column type' },
  'mapping.table_unknown': { disposition: 'fatal', meaning: 'no metadata snapshot for the mapped table' },
  'mapping.target_metadata': { disposition: 'fatal', meaning: 'no metadata snapshot for the table a lookup targets' },
  'mapping.time_zone': { disposition: 'fatal', meaning: '`sourceTimeZone` is not a time zone' },
  'mapping.unknown_attribute': { disposition: 'fatal', meaning: 'the mapping names a column the table does not have' },
  'mapping.unknown_source_column': { disposition: 'fatal', meaning: 'the mapping names a column the source lacks' },
  'mapping.unsupported_type': { disposition: 'fatal', meaning: 'a column type the conversion does not write' },
  'mapping.wrong_option': { disposition: 'fatal', meaning: 'a mapping option does not apply to the column type' },

  'metadata.invalid': { disposition: 'fatal', meaning: 'a metadata snapshot is malformed' },
  'metadata.missing': { disposition: 'fatal', meaning: 'no metadata snapshot for a table' },
  'metadata.name': { disposition: 'fatal', meaning: 'a table name is not a Dataverse logical name' },

  'pipeline.cycle': { disposition: 'fatal', meaning: 'pipelines depend on each other in a cycle' },
  'pipeline.no_source': { disposition: 'fatal', meaning: 'a pipeline has no source stage to plan its window' },
  'pipeline.unknown_stage': { disposition: 'fatal', meaning: 'a stage kind no registry entry runs' },

  'queue.closed': { disposition: 'fatal', meaning: 'the embedded queue was used after it was closed' },
  'queue.message_lock_lost': { disposition: 'retry', meaning: 'a message lock expired; it is delivered again' },
  'queue.open': { disposition: 'fatal', meaning: 'the embedded queue store cannot be opened' },
  'queue.session_lock_lost': { disposition: 'retry', meaning: 'a session lock expired; the session is accepted again' },

  'remote.interrupted': { disposition: 'retry', meaning: 'following a remote Synapse run was interrupted' },

  'replay.no_source': { disposition: 'fatal', meaning: 'neither staged input nor stored rows to replay from' },
  'replay.no_outcome': { disposition: 'fatal', meaning: 'no stage of the replay said which rows Dataverse accepted' },
  'replay.nothing': { disposition: 'skip', meaning: 'the run has no open rejects to replay' },

  'run.no_staging': {
    disposition: 'fatal',
    exit: 'usage',
    meaning: 'a run was started without a staging engine factory',
  },
  'run.interrupted': { disposition: 'retry', meaning: 'the run was stopped (SIGINT/SIGTERM); the next run repeats it' },

  'service_bus.closed': { disposition: 'fatal', meaning: 'the Service Bus transport was used after it was closed' },
  'service_bus.failed': { disposition: 'fatal', meaning: 'Service Bus failed with an error the SDK calls permanent' },
  'service_bus.message_lock_lost': { disposition: 'retry', meaning: 'a message lock expired; delivered again' },
  'service_bus.message_not_found': { disposition: 'skip', meaning: 'the message was already settled or removed' },
  'service_bus.message_size_exceeded': { disposition: 'skip', meaning: 'a message is larger than the queue allows' },
  'service_bus.messaging_entity_disabled': { disposition: 'fatal', meaning: 'the queue is disabled' },
  'service_bus.messaging_entity_not_found': { disposition: 'fatal', meaning: 'the queue does not exist' },
  'service_bus.quota_exceeded': { disposition: 'retry', meaning: 'the queue is full or a quota is reached' },
  'service_bus.service_busy': { disposition: 'retry', meaning: 'the namespace is throttling' },
  'service_bus.service_communication_problem': { disposition: 'retry', meaning: 'the namespace cannot be reached' },
  'service_bus.service_timeout': { disposition: 'retry', meaning: 'the service did not answer in time' },
  'service_bus.session_cannot_be_locked': { disposition: 'retry', meaning: 'another receiver holds the session' },
  'service_bus.session_closed': { disposition: 'fatal', meaning: 'the session receiver was closed' },
  'service_bus.session_lock_lost': { disposition: 'retry', meaning: 'the session lock was lost; accepted again' },
  'service_bus.unauthorized_access': { disposition: 'fatal', meaning: 'the connection string or role is not allowed' },
  'service_bus.unreachable': {
    disposition: 'retry',
    meaning: 'Service Bus failed with an error the SDK calls transient',
  },

  'staging.connect': { disposition: 'retry', meaning: 'the staging database cannot be reached' },
  'staging.input_unreadable': {
    disposition: 'fatal',
    meaning: 'a stage could not read the staged rows; the runner asks the read stage to repair them once',
  },
  'staging.out_of_memory': { disposition: 'fatal', meaning: 'staging ran out of `FERRY_STAGING_MEMORY`' },
  'staging.sql': { disposition: 'fatal', meaning: 'a staging SQL statement failed' },
  'staging.unavailable': {
    disposition: 'retry',
    meaning: 'a staging statement failed temporarily (deadlock, timeout)',
  },

  'state.open': { disposition: 'fatal', meaning: 'the state store cannot be opened' },
  'state.run_missing': { disposition: 'fatal', meaning: 'a run id the state store does not know' },

  'synapse.credential': { disposition: 'fatal', meaning: 'no credential for the Synapse workspace' },
  'synapse.insecure': { disposition: 'fatal', meaning: 'a Synapse endpoint that is not https' },
  'synapse.request': { disposition: 'fatal', meaning: 'the Synapse workspace refused a request' },
  'synapse.unavailable': { disposition: 'retry', meaning: 'the Synapse workspace failed a request temporarily' },

  'synapse_link.bad_value': { disposition: 'fatal', meaning: 'a Synapse Link CSV value does not fit its column' },
  'synapse_link.csv': { disposition: 'fatal', meaning: 'a Synapse Link CSV file cannot be parsed' },
  'synapse_link.model_json': { disposition: 'fatal', meaning: 'a `model.json` is missing or malformed' },
  'synapse_link.row_too_wide': { disposition: 'fatal', meaning: 'a CSV row has more fields than `model.json` columns' },
  'synapse_link.table_missing': { disposition: 'fatal', meaning: 'the table is not in the Synapse Link export' },
  'synapse_link.too_many_files': { disposition: 'fatal', meaning: 'more CSV files in one window than one read takes' },
  'synapse_link.window_over_max_folders': {
    disposition: 'fatal',
    meaning: 'a backfill window holds more Synapse Link folders than the stage takes in one window',
  },
  'synapse_link.truncated_file': { disposition: 'fatal', meaning: 'a CSV file ends inside a quoted field or row' },

  'synapse_runtime.expression': { disposition: 'fatal', meaning: 'a pipeline expression cannot be evaluated' },
  'synapse_runtime.unsupported': { disposition: 'fatal', meaning: 'the local runtime does not implement this' },

  'upsert.accepted_mismatch': { disposition: 'fatal', meaning: 'accepted rows and converted rows do not add up' },
  'upsert.nothing_converted': { disposition: 'fatal', meaning: 'the upsert stage found no converted rows' },
  'upsert.table_mismatch': { disposition: 'fatal', meaning: 'upsert and convert stages name different tables' },

  'warehouse.index': { disposition: 'fatal', meaning: 'the warehouse index of current windows is malformed' },
  'warehouse.rename': { disposition: 'retry', meaning: 'a warehouse window could not be renamed into place' },
  'warehouse.window_overlap': { disposition: 'fatal', meaning: 'a window would cut through a current window' },
} as const satisfies Record<string, ErrorCodeEntry>;

/**
 * Codes built from a value the service gives: the entry holds for every code the pattern matches. `code` is how the
 * family is written in the catalogue's table.
 */
export const ERROR_CODE_FAMILIES: ReadonlyArray<ErrorCodeEntry & { readonly code: string; readonly pattern: RegExp }> =
  [
    {
      code: 'dataverse.http_<5xx or 408>',
      pattern: /^dataverse\.http_(?:5\d\d|408)$/,
      disposition: 'retry',
      meaning: 'Dataverse failed with a server error after the client retries',
    },
    {
      code: 'dataverse.http_<other status>',
      pattern: /^dataverse\.http_\d{3}$/,
      disposition: 'fatal',
      meaning: 'Dataverse refused the request with this status and no error code',
    },
    {
      code: 'dataverse.0x<service error code>',
      pattern: /^dataverse\.0x[0-9a-f]{8}$/,
      disposition: 'fatal',
      meaning: 'Dataverse refused the request with this error code (e.g. `0x80040217` record not found)',
    },
    {
      code: 'synapse_runtime.<activity error code>',
      pattern: /^synapse_runtime\.[A-Za-z]+$/,
      disposition: 'fatal',
      meaning: 'an activity of the local Synapse runtime failed with this documented code',
    },
  ];

/** A code `new FerryError` takes: one of the catalogue, or one of a family. */
export type ErrorCode =
  | keyof typeof ERROR_CODES
  | `dataverse.http_${number}`
  | `dataverse.0x${string}`
  | `synapse_runtime.${string}`;

const UNKNOWN: ErrorCodeEntry = { disposition: 'fatal', meaning: 'not in the catalogue' };

/** The catalogue's entry for a code; a code outside it (only reachable through a cast) is fatal. */
export function errorCodeEntry(code: string): ErrorCodeEntry {
  if (Object.hasOwn(ERROR_CODES, code)) return ERROR_CODES[code as keyof typeof ERROR_CODES];
  return ERROR_CODE_FAMILIES.find((family) => family.pattern.test(code)) ?? UNKNOWN;
}

const EXIT_TEXT: Readonly<Record<Disposition, string>> = { fatal: '1', retry: '75', skip: '4' };

/**
 * The catalogue as the Markdown table of the README (`npm run docs:error-codes` writes it there;
 * `test/core/error-codes.test.ts` fails when the README's copy differs).
 */
export function errorCodesTable(): string {
  const rows = [
    ...Object.entries(ERROR_CODES).map(([code, entry]) => ({ code, entry: entry as ErrorCodeEntry })),
    ...ERROR_CODE_FAMILIES.map((family) => ({ code: family.code, entry: family })),
  ].sort((a, b) => a.code.localeCompare(b.code));
  return [
    '| code | disposition | exit | meaning |',
    '| --- | --- | --- | --- |',
    ...rows.map(
      ({ code, entry }) =>
        `| \`${code}\` | ${entry.disposition} | ${entry.exit === 'usage' ? '2' : EXIT_TEXT[entry.disposition]} | ${entry.meaning} |`,
    ),
  ].join('\n');
}
