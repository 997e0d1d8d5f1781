-- T-SQL twin of sql/extract/account-with-labels.sql for Synapse serverless SQL (hand-written, not generated).
-- `src` is the latest row per account in the window (the exporter's default dedup), with [__deleted] 1/0.
-- Choice labels come from the headerless OptionsetMetadata CSVs of the window's newest timestamp folder that has
-- them ({window_start} and {window_end} are the window's bounds, filled in by the exporter).
SELECT a.[Id], a.[name], a.[accountnumber], a.[industrycode], industry.[LocalizedLabel] AS [industrycode_label],
  a.[statecode], state.[LocalizedLabel] AS [statecode_label], a.[versionnumber], a.[SinkModifiedOn],
  CAST(a.[__deleted] AS BIT) AS [IsDelete]
FROM src AS a
LEFT JOIN (
  SELECT o.[Option], o.[LocalizedLabel]
  FROM (
    SELECT o.[Option], o.[LocalizedLabel], DENSE_RANK() OVER (ORDER BY o.filepath(1) DESC) AS [__newest]
    FROM OPENROWSET(BULK '*/OptionsetMetadata/OptionsetMetadata.csv', DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV', PARSER_VERSION = '1.0')
      WITH ([EntityName] NVARCHAR(128) 1, [OptionSetName] NVARCHAR(128) 2, [Option] NVARCHAR(20) 3, [IsUserLocalizedLabel] NVARCHAR(10) 4, [LocalizedLabelLanguageCode] NVARCHAR(10) 5, [LocalizedLabel] NVARCHAR(700) 6) AS o
    WHERE o.[EntityName] = N'account' AND o.[OptionSetName] = N'industrycode' AND o.[LocalizedLabelLanguageCode] = N'1033'
      AND o.filepath(1) > N'{window_start}' AND o.filepath(1) < N'{window_end}'
  ) AS o
  WHERE o.[__newest] = 1
) AS industry ON industry.[Option] = a.[industrycode]
LEFT JOIN (
  SELECT m.[State], m.[LocalizedLabel]
  FROM (
    SELECT m.[State], m.[LocalizedLabel], DENSE_RANK() OVER (ORDER BY m.filepath(1) DESC) AS [__newest]
    FROM OPENROWSET(BULK '*/OptionsetMetadata/StateMetadata.csv', DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV', PARSER_VERSION = '1.0')
      WITH ([EntityName] NVARCHAR(128) 1, [State] NVARCHAR(20) 2, [IsUserLocalizedLabel] NVARCHAR(10) 3, [LocalizedLabelLanguageCode] NVARCHAR(10) 4, [LocalizedLabel] NVARCHAR(700) 5) AS m
    WHERE m.[EntityName] = N'account' AND m.[LocalizedLabelLanguageCode] = N'1033'
      AND m.filepath(1) > N'{window_start}' AND m.filepath(1) < N'{window_end}'
  ) AS m
  WHERE m.[__newest] = 1
) AS state ON state.[State] = a.[statecode]
