import type { Lake } from '../../core/lake.js';
import { lakeJoin } from '../../core/lake.js';
import type { StagingEngine } from '../../core/staging.js';
import { duckIdent } from '../../dialects/duckdb/duckdb-staging.js';
import type { CdmAttribute, CdmDataType } from './cdm-model.js';
import { CsvFolderReader } from './csv-folder-reader.js';

type Col = readonly [string, CdmDataType];

/**
 * The five `OptionsetMetadata/` CSVs and their column orders (headerless; the order Microsoft's own
 * "Copy Dataverse data into Azure SQL" template maps by ordinal). Each becomes a staging table of the same name.
 */
export const OPTION_SET_FILES: Readonly<Record<string, readonly Col[]>> = {
  OptionsetMetadata: [
    ['EntityName', 'string'],
    ['OptionSetName', 'string'],
    ['Option', 'int64'],
    ['IsUserLocalizedLabel', 'boolean'],
    ['LocalizedLabelLanguageCode', 'int64'],
    ['LocalizedLabel', 'string'],
  ],
  GlobalOptionsetMetadata: [
    ['OptionSetName', 'string'],
    ['Option', 'int64'],
    ['IsUserLocalizedLabel', 'boolean'],
    ['LocalizedLabelLanguageCode', 'int64'],
    ['LocalizedLabel', 'string'],
    ['GlobalOptionSetName', 'string'],
    ['EntityName', 'string'],
    ['ExternalValue', 'string'],
  ],
  StateMetadata: [
    ['EntityName', 'string'],
    ['State', 'int64'],
    ['IsUserLocalizedLabel', 'boolean'],
    ['LocalizedLabelLanguageCode', 'int64'],
    ['LocalizedLabel', 'string'],
  ],
  StatusMetadata: [
    ['EntityName', 'string'],
    ['State', 'int64'],
    ['Status', 'int64'],
    ['IsUserLocalizedLabel', 'boolean'],
    ['LocalizedLabelLanguageCode', 'int64'],
    ['LocalizedLabel', 'string'],
  ],
  TargetMetadata: [
    ['EntityName', 'string'],
    ['AttributeName', 'string'],
    ['ReferencedEntity', 'string'],
    ['ReferencedAttribute', 'string'],
  ],
};

/**
 * Loads the choice-label CSVs of one `OptionsetMetadata/` folder into staging tables named after the files
 * (`OptionsetMetadata`, `GlobalOptionsetMetadata`, ...), so extract SQL can join labels. A missing file gives an
 * empty table. Returns the row count per table.
 */
export async function loadOptionSetLabels(
  staging: StagingEngine,
  lake: Lake,
  optionSetFolder: string | null,
): Promise<Record<string, number>> {
  const reader = new CsvFolderReader(staging, lake);
  const counts: Record<string, number> = {};
  for (const [name, cols] of Object.entries(OPTION_SET_FILES)) {
    const attributes: CdmAttribute[] = cols.map(([n, t]) => ({ name: n, dataType: t, maxLength: -1 }));
    const file = optionSetFolder ? lakeJoin(optionSetFolder, `${name}.csv`) : null;
    const exists = file ? (await lake.stat(file)) !== undefined : false;
    const staged = `__labels_${name}`;
    counts[name] = await reader.stage(
      staged,
      attributes,
      exists && file ? [{ folder: optionSetFolder!, attributes, files: [file] }] : [],
    );
    await staging.run(
      `CREATE OR REPLACE VIEW ${duckIdent(name)} AS SELECT * EXCLUDE (__file_id, __bad) FROM ${duckIdent(staged)}`,
    );
  }
  return counts;
}
