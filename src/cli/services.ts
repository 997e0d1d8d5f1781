import path from 'node:path';
import { createIdentityPool, identitiesFromEnv, type PoolIdentity } from '../connectors/dataverse/identity-pool.js';
import { createTokenProvider } from '../connectors/dataverse/token-provider.js';
import { AdlsLake } from '../connectors/lake/adls-lake.js';
import type { Lake } from '../connectors/lake/lake.js';
import { LocalLake } from '../connectors/lake/local-lake.js';
import { SqliteStateStore } from '../connectors/state/sqlite-state-store.js';
import { type FerryConfig, isUrlLocation } from '../core/config.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { DataverseEndpoint } from '../core/stage.js';
import type { StateStore } from '../core/state-store.js';

export interface OpenDataverse {
  readonly endpoint: DataverseEndpoint;
  /** The in-process emulator, when no `--dataverse` URL was given. */
  readonly emulator?: import('../emulator/server.js').RunningEmulator;
  close(): Promise<void>;
}

/**
 * The Dataverse a command talks to: the URL from `--dataverse`/`FERRY_DATAVERSE_URL` (token from
 * `@azure/identity`), or else the built-in emulator started in-process, its store kept in `<state>/emulator/`
 * so consecutive runs see the same data.
 */
export async function openDataverse(config: FerryConfig, log: Logger): Promise<OpenDataverse> {
  if (config.dataverse) {
    if (!/^https?:\/\//.test(config.dataverse)) {
      throw new UsageError(
        `Dataverse URL \`${config.dataverse}\` is not an http(s) URL; pass e.g. --dataverse https://org.crm.dynamics.com.`,
      );
    }
    const url = config.dataverse.replace(/\/+$/, '');
    // Loopback URLs (an emulator in another process) need no token.
    const getToken = createTokenProvider(url);
    const identities = poolFromEnv(url);
    return {
      endpoint: { url, ...(getToken ? { getToken } : {}), ...(identities ? { identities } : {}) },
      close: async () => undefined,
    };
  }
  const { startEmulator } = await import('../emulator/server.js');
  const emulator = await startEmulator({
    port: 0,
    metadataDir: config.metadata,
    storeFile: path.join(config.state, 'emulator', 'store.json'),
    log,
  });
  log.debug(`Started the built-in Dataverse emulator at ${emulator.url}`);
  const identities = poolFromEnv(emulator.url);
  return {
    endpoint: { url: emulator.url, ...(identities ? { identities } : {}) },
    emulator,
    close: () => emulator.close(),
  };
}

/** The identity pool `FERRY_DATAVERSE_IDENTITIES` names, if any (see identity-pool.ts). */
function poolFromEnv(url: string): PoolIdentity[] | undefined {
  const settings = identitiesFromEnv(process.env);
  return settings ? createIdentityPool(url, settings) : undefined;
}

/**
 * The lake named by the config: a local folder, or ADLS Gen2 as `abfss://<container>@<account>.dfs.core.windows.net/<path>`
 * or `https://<account>.blob.core.windows.net/<container>/<path>`, signed in with `DefaultAzureCredential`.
 */
export function openLake(config: FerryConfig): Lake {
  const url = parseAdlsUrl(config.lake);
  if (url) return new AdlsLake(url);
  if (isUrlLocation(config.lake)) {
    throw new UsageError(
      `Lake \`${config.lake}\` is neither a folder nor an ADLS Gen2 URL; use e.g. ./lake or abfss://container@account.dfs.core.windows.net/path.`,
    );
  }
  return new LocalLake(config.lake);
}

/** Account URL, container and folder of an ADLS Gen2 lake URL; undefined for anything else. */
export function parseAdlsUrl(text: string): { accountUrl: string; container: string; prefix: string } | undefined {
  const abfss = /^abfss:\/\/([^@/]+)@([^./]+)\.dfs\.core\.windows\.net\/?(.*)$/i.exec(text);
  if (abfss)
    return { accountUrl: `https://${abfss[2]}.blob.core.windows.net`, container: abfss[1]!, prefix: abfss[3] ?? '' };
  const https = /^(https:\/\/[^./]+\.(?:blob|dfs)\.core\.windows\.net)\/([^/]+)\/?(.*)$/i.exec(text);
  if (https) return { accountUrl: https[1]!.replace('.dfs.', '.blob.'), container: https[2]!, prefix: https[3] ?? '' };
  return undefined;
}

/** The state store in the state directory. */
export function openState(config: FerryConfig): StateStore {
  return SqliteStateStore.openIn(config.state);
}
