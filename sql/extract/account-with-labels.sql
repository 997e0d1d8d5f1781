-- Latest state of each account with its choice labels (English, 1033) from OptionsetMetadata/StateMetadata.
-- Runs in DuckDB over the staged window: `account` (typed Synapse Link rows of every folder in the window) and
-- the label views named after the OptionsetMetadata CSVs.
WITH latest AS (
  SELECT *
  FROM account
  QUALIFY row_number() OVER (
    PARTITION BY Id ORDER BY versionnumber DESC NULLS LAST, SinkModifiedOn DESC NULLS LAST, __folder DESC, __source_file DESC
  ) = 1
)
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
  coalesce(a.IsDelete, false) AS IsDelete
FROM latest a
LEFT JOIN OptionsetMetadata industry
  ON industry.EntityName = 'account' AND industry.OptionSetName = 'industrycode'
  AND industry."Option" = a.industrycode AND industry.LocalizedLabelLanguageCode = 1033
LEFT JOIN StateMetadata state
  ON state.EntityName = 'account' AND state.State = a.statecode AND state.LocalizedLabelLanguageCode = 1033
