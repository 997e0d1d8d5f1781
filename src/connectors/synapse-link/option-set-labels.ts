import type { CdmDataType } from './cdm-model.js';

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
