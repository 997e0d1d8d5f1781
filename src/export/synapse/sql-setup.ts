/** The one-time T-SQL setup an admin runs: serverless database objects and the Azure SQL database user of the workspace identity. */
import { STATE_SCHEMA, tsqlIdent, tsqlLiteral } from '../../dialects/tsql/staging.js';
import type { SynapseExportSettings } from './export-settings.js';

export function serverlessSetup(s: SynapseExportSettings): string[] {
  const account = s.storageUrl.replace(/\/$/, '');
  const ws = tsqlIdent(s.synapseWorkspaceName);
  return [
    // A database scoped credential needs a database master key first (error 15581 otherwise). The password is a
    // sqlcmd variable, so no secret is ever written here.
    `IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##') CREATE MASTER KEY ENCRYPTION BY PASSWORD = '$(FERRY_MASTER_KEY)'`,
    `IF NOT EXISTS (SELECT 1 FROM sys.database_scoped_credentials WHERE name = N'ferry_workspace_identity') CREATE DATABASE SCOPED CREDENTIAL [ferry_workspace_identity] WITH IDENTITY = 'Managed Identity'`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_data_sources WHERE name = N'ferry_synapse_link') CREATE EXTERNAL DATA SOURCE [ferry_synapse_link] WITH (LOCATION = ${tsqlLiteral(`${account}/${s.synapseLinkFileSystem}`)}, CREDENTIAL = [ferry_workspace_identity])`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_data_sources WHERE name = N'ferry_warehouse') CREATE EXTERNAL DATA SOURCE [ferry_warehouse] WITH (LOCATION = ${tsqlLiteral(`${account}/${s.warehouseFileSystem}`)}, CREDENTIAL = [ferry_workspace_identity])`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_file_formats WHERE name = N'ferry_parquet') CREATE EXTERNAL FILE FORMAT [ferry_parquet] WITH (FORMAT_TYPE = PARQUET, DATA_COMPRESSION = 'org.apache.hadoop.io.compress.SnappyCodec')`,
    `IF SCHEMA_ID(N'ferry_out') IS NULL EXEC(N'CREATE SCHEMA ${tsqlIdent('ferry_out')}')`,
    // The pipelines' serverless linked service signs in as the workspace managed identity.
    `IF USER_ID(${tsqlLiteral(s.synapseWorkspaceName)}) IS NULL CREATE USER ${ws} FROM EXTERNAL PROVIDER`,
    `GRANT REFERENCES ON DATABASE SCOPED CREDENTIAL::[ferry_workspace_identity] TO ${ws}`,
    `GRANT ADMINISTER DATABASE BULK OPERATIONS TO ${ws}`,
    `GRANT CREATE TABLE TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[ferry_out] TO ${ws}`,
    `GRANT SELECT ON SCHEMA::[ferry_out] TO ${ws}`,
    `GRANT ALTER ANY EXTERNAL DATA SOURCE TO ${ws}`,
    `GRANT ALTER ANY EXTERNAL FILE FORMAT TO ${ws}`,
  ];
}

/** The workspace managed identity in the Azure SQL database: state, error store, key map, staging DDL in dbo. */
export function azureSqlAccess(s: SynapseExportSettings): string[] {
  const mi = s.sqlAuthentication === 'managed-identity';
  // With key-vault-password the pipelines sign in as that SQL login, whose database user already exists.
  const ws = tsqlIdent(mi ? s.synapseWorkspaceName : (s.sqlUserName ?? ''));
  return [
    ...(mi
      ? [`IF USER_ID(${tsqlLiteral(s.synapseWorkspaceName)}) IS NULL CREATE USER ${ws} FROM EXTERNAL PROVIDER`]
      : []),
    `ALTER ROLE db_datareader ADD MEMBER ${ws}`,
    `ALTER ROLE db_datawriter ADD MEMBER ${ws}`,
    // Staging tables are dropped, created (SELECT … INTO, TRUNCATE) in dbo on every run.
    `ALTER ROLE db_ddladmin ADD MEMBER ${ws}`,
    `GRANT CREATE TABLE TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[dbo] TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[${STATE_SCHEMA}] TO ${ws}`,
  ];
}
