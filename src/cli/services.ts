import path from 'node:path';
import type { Lake } from '../connectors/lake/lake.js';
import { createTokenProvider } from '../connectors/dataverse/token-provider.js';
import { AdlsLake } from '../connectors/lake/adls-lake.js';
import { LocalLake } from '../connectors/lake/local-lake.js';
import { SqliteStateStore } from '../connectors/state/sqlite-state-store.js';
import type { FerryConfig } from '../core/config.js';
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
    return { endpoint: getToken ? { url, getToken } : { url }, close: async () => undefined };
  }
  const { startEmulator } = await import('../emulator/server.js');
  const emulator = await startEmulator({
    port: 0,
    metadataDir: config.metadata,
    storeFile: path.join(config.state, 'emulator', 'store.json'),
    log,
  });
  log.debug(`Started the built-in Dataverse emulator at ${emulator.url}`);
  return { endpoint: { url: emulator.url }, emulator, close: () => emulator.close() };
}

/** The lake named by the config. */
export function openLake(config: FerryConfig): Lake {
  if (/^[a-z]+:\/\//i.test(config.lake)) {
    throw new UsageError(
      `Lake \`${config.lake}\` is a URL; ADLS Gen2 lakes are not wired into the CLI yet. Use a local folder.`,
    );
  }
  return new LocalLake(config.lake);
}

/** The state store in the state directory. */
export function openState(config: FerryConfig): StateStore {
  return SqliteStateStore.openIn(config.state);
}
