-- Latest state of each account with its choice labels (English, 1033) from OptionsetMetadata/StateMetadata.
-- Runs in DuckDB over the staged window: `account_latest` (the latest row per Id of every folder in the window,
-- by the default extract's rule: a delete without a versionnumber wins over older versions) and the label views
-- named after the OptionsetMetadata CSVs of the window's newest folder that has them.
SELECT
  a.Id,
  a.name,
  a.accountnumber,
  a.industrycode,
  industry.LocalizedLabel AS industrycode_label,
  a.statecode,
  state.LocalizedLabel AS statecode_label,
  a.versionnumber,
  a.SinkModifiedOn,
  a.IsDelete
FROM account_latest a
LEFT JOIN OptionsetMetadata industry
  ON industry.EntityName = 'account' AND industry.OptionSetName = 'industrycode'
  AND industry."Option" = a.industrycode AND industry.LocalizedLabelLanguageCode = 1033
LEFT JOIN StateMetadata state
  ON state.EntityName = 'account' AND state.State = a.statecode AND state.LocalizedLabelLanguageCode = 1033
