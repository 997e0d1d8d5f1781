/**
 * Names of the staging tables the inbound stages hand to each other, and their lineage/system columns.
 * One place, so the stages (and the T-SQL export) agree.
 *
 * `staged` (read-parquet-deltas → convert-to-dataverse): every source column as read from Parquet, plus
 *   `__row_id BIGINT` (unique in the run, in file then row order), `__run_id VARCHAR`, `__source_file VARCHAR`
 *   (lake path relative to the lake root), `__row_number BIGINT` (1-based row in that file).
 *
 * `converted` (convert-to-dataverse → upsert-dataverse): one row per key that is to be sent, only rows that passed
 *   validation and are not stale:
 *   `__row_id BIGINT`, `__source_file VARCHAR`, `__row_number BIGINT`,
 *   `__key VARCHAR` — readable business key, e.g. `accountnumber=A'1` (composite: `k1=v1,k2=v2`),
 *   `__key_predicate VARCHAR` — OData key predicate, quotes doubled, e.g. `accountnumber='A''1'`,
 *   `__key_safe BOOLEAN` — false when a key value holds characters that break key URLs (`/ \ < > * % & : ?`);
 *     the writer must then find the row by `$filter` and write it by GUID,
 *   `__version VARCHAR` — the source change timestamp as ISO-8601 text (orders versions of one key),
 *   `__payload VARCHAR` — the JSON object to send (attributes and `nav@odata.bind` entries; no `@odata.type`/`@odata.id`).
 *
 * `upserted` (upsert-dataverse → convert's commit hook): `__row_id BIGINT` of every row Dataverse accepted.
 */
export const STAGING_TABLES = {
  staged: 'staged',
  converted: 'converted',
  upserted: 'upserted',
} as const;

/** System columns added to `staged`; a source column may not use these names. */
export const LINEAGE_COLUMNS = ['__row_id', '__run_id', '__source_file', '__row_number'] as const;
