/** The workspace-wide artifacts: linked services (Key Vault references, managed identity) and the shared datasets. */
import type { SynapseExportSettings } from './export-settings.js';
import { ANNOTATION, expr, kvSecret, ref } from './pipeline-blocks.js';
import { NAMES, type SynapseArtifact } from './synapse-artifacts.js';

export function linkedServices(s: SynapseExportSettings): SynapseArtifact[] {
  const sqlProps =
    s.sqlAuthentication === 'managed-identity'
      ? {
          server: s.sqlServer,
          database: s.sqlDatabase,
          encrypt: 'mandatory',
          authenticationType: 'SystemAssignedManagedIdentity',
        }
      : {
          server: s.sqlServer,
          database: s.sqlDatabase,
          encrypt: 'mandatory',
          authenticationType: 'SQL',
          userName: s.sqlUserName,
          password: kvSecret(s.sqlPasswordSecretName ?? ''),
        };
  return [
    {
      kind: 'linkedService',
      name: NAMES.keyVault,
      properties: { type: 'AzureKeyVault', annotations: [ANNOTATION], typeProperties: { baseUrl: s.keyVaultUrl } },
    },
    {
      // No key, SAS or service principal: the workspace's managed identity reads and writes the lake.
      kind: 'linkedService',
      name: NAMES.adls,
      properties: {
        type: 'AzureBlobFS',
        annotations: [ANNOTATION],
        description: 'ADLS Gen2 via the workspace managed identity.',
        typeProperties: { url: s.storageUrl },
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.sql,
      properties: {
        type: 'AzureSqlDatabase',
        annotations: [ANNOTATION],
        description: 'Azure SQL: staging tables, state, error store and key map.',
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
        typeProperties: {
          server: s.serverlessSqlServer,
          database: s.serverlessDatabase,
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
        typeProperties: {
          deploymentType: 'Online',
          serviceUri: s.dataverseUrl,
          authenticationType: 'AADServicePrincipal',
          servicePrincipalId: s.dataverseServicePrincipalId,
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
