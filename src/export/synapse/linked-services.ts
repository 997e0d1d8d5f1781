/**
 * The workspace-wide artifacts: linked services (Key Vault references, managed identity) and the shared datasets.
 *
 * Every endpoint of a linked service is a linked-service parameter (`@{linkedService().<name>}` in its
 * typeProperties, learn.microsoft.com/azure/data-factory/parameterize-linked-services), named like the export
 * setting it defaults to. `ferry deploy synapse --environment <name>` sets those defaults per environment, so one
 * export serves every environment; a dataset or activity may still pass its own value. Secrets are never parameters:
 * they stay Key Vault references and managed identity.
 */
import type { SynapseExportSettings } from './export-settings.js';
import { ANNOTATION, expr, kvSecret, ref } from './pipeline-blocks.js';
import { NAMES, type SynapseArtifact } from './synapse-artifacts.js';

/** `{ name: { type: 'String', defaultValue } }` for each given setting: the linked service's parameters. */
function parameters(values: Readonly<Record<string, string>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { type: 'String', defaultValue: v }]));
}

/** The value of a linked-service parameter inside the linked service. */
const param = (name: string) => `@{linkedService().${name}}`;

export function linkedServices(s: SynapseExportSettings): SynapseArtifact[] {
  const sqlProps =
    s.sqlAuthentication === 'managed-identity'
      ? {
          server: param('sqlServer'),
          database: param('sqlDatabase'),
          encrypt: 'mandatory',
          authenticationType: 'SystemAssignedManagedIdentity',
        }
      : {
          server: param('sqlServer'),
          database: param('sqlDatabase'),
          encrypt: 'mandatory',
          authenticationType: 'SQL',
          userName: param('sqlUserName'),
          password: kvSecret(s.sqlPasswordSecretName ?? ''),
        };
  return [
    {
      kind: 'linkedService',
      name: NAMES.keyVault,
      properties: {
        type: 'AzureKeyVault',
        annotations: [ANNOTATION],
        parameters: parameters({ keyVaultUrl: s.keyVaultUrl }),
        typeProperties: { baseUrl: param('keyVaultUrl') },
      },
    },
    {
      // No key, SAS or service principal: the workspace's managed identity reads and writes the lake.
      kind: 'linkedService',
      name: NAMES.adls,
      properties: {
        type: 'AzureBlobFS',
        annotations: [ANNOTATION],
        description: 'ADLS Gen2 via the workspace managed identity.',
        parameters: parameters({ storageUrl: s.storageUrl }),
        typeProperties: { url: param('storageUrl') },
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.sql,
      properties: {
        type: 'AzureSqlDatabase',
        annotations: [ANNOTATION],
        description: 'Azure SQL: staging tables, state, error store and key map.',
        parameters: parameters({
          sqlServer: s.sqlServer,
          sqlDatabase: s.sqlDatabase,
          ...(s.sqlAuthentication === 'managed-identity' ? {} : { sqlUserName: s.sqlUserName ?? '' }),
        }),
        typeProperties: sqlProps,
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.serverless,
      properties: {
        type: 'AzureSqlDatabase',
        annotations: [ANNOTATION],
        description: 'Synapse serverless SQL: OPENROWSET over Synapse Link and CETAS to Parquet.',
        parameters: parameters({
          serverlessSqlServer: s.serverlessSqlServer,
          serverlessDatabase: s.serverlessDatabase,
        }),
        typeProperties: {
          server: param('serverlessSqlServer'),
          database: param('serverlessDatabase'),
          encrypt: 'mandatory',
          authenticationType: 'SystemAssignedManagedIdentity',
        },
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.dataverse,
      properties: {
        type: 'CommonDataServiceForApps',
        annotations: [ANNOTATION],
        description: 'Dataverse as a service principal whose secret lives in Key Vault.',
        parameters: parameters({
          dataverseUrl: s.dataverseUrl,
          dataverseServicePrincipalId: s.dataverseServicePrincipalId,
        }),
        typeProperties: {
          deploymentType: 'Online',
          serviceUri: param('dataverseUrl'),
          authenticationType: 'AADServicePrincipal',
          servicePrincipalId: param('dataverseServicePrincipalId'),
          servicePrincipalCredentialType: 'ServicePrincipalKey',
          servicePrincipalCredential: kvSecret(s.dataverseSecretName),
        },
      },
    },
  ];
}

export function sharedDatasets(s: SynapseExportSettings): SynapseArtifact[] {
  const str = { type: 'String' };
  return [
    {
      kind: 'dataset',
      name: NAMES.lakeParquet,
      properties: {
        type: 'Parquet',
        annotations: [ANNOTATION],
        linkedServiceName: ref(NAMES.adls),
        parameters: { fileSystem: { type: 'String', defaultValue: s.lakeFileSystem }, folderPath: str },
        typeProperties: {
          location: {
            type: 'AzureBlobFSLocation',
            fileSystem: expr('@dataset().fileSystem'),
            folderPath: expr('@dataset().folderPath'),
          },
          compressionCodec: 'snappy',
        },
        schema: [],
      },
    },
    {
      kind: 'dataset',
      name: NAMES.lakeText,
      properties: {
        type: 'DelimitedText',
        annotations: [ANNOTATION],
        description: 'Small text files in the lake, e.g. Synapse Link `Changelog/changelog.info`.',
        linkedServiceName: ref(NAMES.adls),
        parameters: { fileSystem: str, folderPath: str, fileName: str },
        typeProperties: {
          location: {
            type: 'AzureBlobFSLocation',
            fileSystem: expr('@dataset().fileSystem'),
            folderPath: expr('@dataset().folderPath'),
            fileName: expr('@dataset().fileName'),
          },
          columnDelimiter: ',',
          escapeChar: '"',
          quoteChar: '"',
          firstRowAsHeader: false,
          encodingName: 'UTF-8',
        },
        schema: [],
      },
    },
    {
      kind: 'dataset',
      name: NAMES.sqlTable,
      properties: {
        type: 'AzureSqlTable',
        annotations: [ANNOTATION],
        linkedServiceName: ref(NAMES.sql),
        parameters: { schemaName: str, tableName: str },
        typeProperties: { schema: expr('@dataset().schemaName'), table: expr('@dataset().tableName') },
        schema: [],
      },
    },
  ];
}
