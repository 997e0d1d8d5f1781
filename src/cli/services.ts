import fs from 'node:fs';
import path from 'node:path';
import type { IdentitySettings, PoolIdentity } from '../connectors/dataverse/identity-pool.js';
import { openLake as openLakeAt } from '../connectors/lake/open-lake.js';
import { SqliteStateStore } from '../connectors/state/sqlite-state-store.js';
import type { FerryConfig } from '../core/config.js';
import { UsageError } from '../core/errors.js';
import type { Lake } from '../core/lake.js';
import type { Logger } from '../core/log.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import { brokenMessage, loadPipelineSet, selectPipelines } from '../core/pipeline-loader.js';
import { describeIdentity } from '../core/project-config.js';
import type { DataverseEndpoint } from '../core/stage.js';
import type { StateStore } from '../core/state-store.js';

export interface OpenDataverse {
  readonly endpoint: DataverseEndpoint;
  /** The in-process emulator, when no `--dataverse` URL was given. */
  readonly emulator?: import('../emulator/server.js').RunningEmulator;
  close(): Promise<void>;
}

/** The target's name as the first line of a run shows it. */
export function targetName(config: FerryConfig): string {
  return config.target ? `target \`${config.target}\`` : 'target (flags and environment)';
}

/** The first line of a run that needs no Dataverse: where it reads and writes. */
export function announceLakeTarget(config: FerryConfig, log: Logger): void {
  log.info(`${targetName(config)}: lake ${config.lake}, warehouse ${config.warehouse}, state ${config.state}`);
}

/**
 * The Dataverse a command talks to, named on the first line it logs: the URL from `--dataverse`,
 * `FERRY_DATAVERSE_URL` or the target, signed in with the target's first identity (else `DefaultAzureCredential`),
 * whose token is fetched now, before any data is read, so a bad credential fails at once (exit 2) naming itself;
 * or, with `--emulator` (or a target whose dataverse is `emulator`), the built-in emulator started in-process, its
 * store kept in `<state>/emulator/` so consecutive runs see the same data. Neither given is a configuration error:
 * nothing is written to a Dataverse nobody chose.
 */
export async function openDataverse(config: FerryConfig, log: Logger): Promise<OpenDataverse> {
  // Imported here, not at the top: commands that need no Dataverse (`status`, `runs`) start without @azure/identity.
  const { createTokenProvider, credentialForIdentity, isLoopbackUrl, shortAuthReason } = await import(
    '../connectors/dataverse/token-provider.js'
  );
  if (config.dataverse) {
    if (!/^https?:\/\//.test(config.dataverse)) {
      throw new UsageError(
        `Dataverse URL \`${config.dataverse}\` is not an http(s) URL; pass e.g. --dataverse https://org.crm.dynamics.com.`,
      );
    }
    const url = config.dataverse.replace(/\/+$/, '');
    if (isLoopbackUrl(url)) {
      // Loopback URLs (an emulator in another process) need no token.
      log.info(`${targetName(config)}: Dataverse ${url} (loopback, no identity)`);
      const identities = await poolFor(config, url);
      return { endpoint: { url, ...(identities ? { identities } : {}) }, close: async () => undefined };
    }
    const identity = config.identities?.[0];
    const who = identity
      ? describeIdentity(identity)
      : 'DefaultAzureCredential (environment, managed identity, az login)';
    log.info(`${targetName(config)}: Dataverse ${url} as ${who}`);
    const getToken = createTokenProvider(url, identity ? { credential: credentialForIdentity(identity) } : {})!;
    try {
      await getToken();
    } catch (error) {
      throw new UsageError(
        `Credential ${identity ? `\`${identity.name}\`` : 'DefaultAzureCredential'} could not get a token for \`${url}\`: ${shortAuthReason(error)}. Nothing was read or written. Check it with \`ferry doctor\`${identity ? '' : ', or name an identity in the target of ferry.config.json'}.`,
      );
    }
    const identities = await poolFor(config, url);
    return { endpoint: { url, getToken, ...(identities ? { identities } : {}) }, close: async () => undefined };
  }
  if (!config.emulator) {
    throw new UsageError(
      'No Dataverse to write to: pass --dataverse https://<org>.crm.dynamics.com (or set FERRY_DATAVERSE_URL), pick a target of ferry.config.json with --target <name>, or pass --emulator to use the built-in emulator.',
    );
  }
  const { startEmulator } = await import('../emulator/server.js');
  const storeFile = path.join(config.state, 'emulator', 'store.json');
  // The emulator's own start-up line goes to debug: the first line of a run names the target.
  const quiet: Logger = { ...log, info: (m, f) => log.debug(m, f) };
  const emulator = await startEmulator({ port: 0, metadataDir: config.metadata, storeFile, log: quiet });
  log.info(
    `${targetName(config)}: the built-in Dataverse emulator (in-process at ${emulator.url}, store ${storeFile}), no identity`,
  );
  const identities = await poolFor(config, emulator.url);
  return {
    endpoint: { url: emulator.url, ...(identities ? { identities } : {}) },
    emulator,
    close: () => emulator.close(),
  };
}

/**
 * The identity pool a run writes through: every identity of the target when it names more than one, else the pool
 * `FERRY_DATAVERSE_IDENTITIES` names (see identity-pool.ts), else none (one identity, the run's token).
 */
async function poolFor(config: FerryConfig, url: string): Promise<PoolIdentity[] | undefined> {
  const { credentialForIdentity } = await import('../connectors/dataverse/token-provider.js');
  const { createIdentityPool, identitiesFromEnv } = await import('../connectors/dataverse/identity-pool.js');
  const named = config.identities ?? [];
  const settings: IdentitySettings[] | undefined =
    named.length > 1
      ? named.map((identity) => ({ name: identity.name, credential: credentialForIdentity(identity) }))
      : identitiesFromEnv(process.env);
  return settings ? createIdentityPool(url, settings) : undefined;
}

/** The lake named by the config (`--lake`, `FERRY_LAKE`, the target's `lake`); see `openLakeAt` for the forms. */
export function openLake(config: FerryConfig): Lake {
  return openLakeAt(config.lake);
}

/** The state store in the state directory; a path that cannot be a folder is a configuration error. */
export function openState(config: FerryConfig): StateStore {
  const blocked = fileOnTheWay(config.state);
  if (blocked) {
    throw new UsageError(
      `State folder \`${path.resolve(config.state)}\` cannot be created: \`${blocked}\` is a file. Point --state (FERRY_STATE, or the target's \`state\`) at a folder.`,
    );
  }
  return SqliteStateStore.openIn(config.state);
}

/** The first path from `dir` upwards that exists as something other than a folder, if any. */
function fileOnTheWay(dir: string): string | undefined {
  let current = path.resolve(dir);
  for (;;) {
    try {
      return fs.statSync(current).isDirectory() ? undefined : current;
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return undefined;
      current = parent;
    }
  }
}

/**
 * The pipelines a command works on. A pipeline file that cannot be loaded is a warning naming it, so the other
 * pipelines still run; it is an error when the command asked for a pipeline that is not among the loaded ones.
 */
export async function pipelinesFor(
  dir: string,
  names: readonly string[] | undefined,
  log: Logger,
): Promise<PipelineDefinition[]> {
  const { pipelines, broken } = await loadPipelineSet(dir);
  if (broken.length) {
    const known = new Set(pipelines.map((p) => p.name));
    if (names?.some((n) => !known.has(n))) throw new UsageError(brokenMessage(broken));
    for (const b of broken)
      log.warn(`Pipeline file \`${b.file}\` cannot be loaded (${b.message}); skipped. Fix the file.`);
  }
  return selectPipelines(pipelines, names);
}
