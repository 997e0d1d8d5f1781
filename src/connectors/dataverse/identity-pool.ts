import { createHash } from 'node:crypto';
import type { TokenCredential } from '@azure/identity';
import { UsageError } from '../../core/errors.js';
import { createTokenProvider, isLoopbackUrl } from './token-provider.js';

/**
 * One application user of an identity pool: its own Dataverse user (an application user bound to its own Entra ID
 * app registration) and its own credential. Settings come from the environment ({@link identitiesFromEnv}) or from a
 * config file with Key Vault references resolved by the caller; a `credential` or `getToken` can be given directly.
 */
export interface IdentitySettings {
  /** Short name for metrics and logs, e.g. `loader2`. Never a secret. */
  readonly name: string;
  readonly tenantId?: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  readonly credential?: TokenCredential;
  /** A ready token source (tests, custom chains); wins over the other settings. */
  readonly getToken?: () => Promise<string>;
}

/** A pool member ready to use: its name and its token source (none for an anonymous emulator caller). */
export interface PoolIdentity {
  readonly name: string;
  readonly getToken?: () => Promise<string>;
}

/** Names the pool in the environment: `FERRY_DATAVERSE_IDENTITIES=loader1,loader2`. */
export const IDENTITIES_ENV = 'FERRY_DATAVERSE_IDENTITIES';

/**
 * The pool the environment describes, or undefined when `FERRY_DATAVERSE_IDENTITIES` is not set. Each name `n`
 * reads `FERRY_IDENTITY_<N>_CLIENT_ID`, `FERRY_IDENTITY_<N>_CLIENT_SECRET` and `FERRY_IDENTITY_<N>_TENANT_ID`
 * (default `AZURE_TENANT_ID`), `<N>` being the name upper-cased with non-alphanumerics as `_`.
 */
export function identitiesFromEnv(env: NodeJS.ProcessEnv = process.env): IdentitySettings[] | undefined {
  const list = env[IDENTITIES_ENV];
  if (list === undefined || list.trim() === '') return undefined;
  const names = list
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  return names.map((name) => {
    const prefix = `FERRY_IDENTITY_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_`;
    const tenantId = env[`${prefix}TENANT_ID`] ?? env.AZURE_TENANT_ID;
    const clientId = env[`${prefix}CLIENT_ID`];
    const clientSecret = env[`${prefix}CLIENT_SECRET`];
    return {
      name,
      ...(tenantId ? { tenantId } : {}),
      ...(clientId ? { clientId } : {}),
      ...(clientSecret ? { clientSecret } : {}),
    };
  });
}

/**
 * Turns settings into pool members for the environment at `url`. Against a real environment each identity needs a
 * credential (client id and secret, or a `credential`/`getToken`); the names and client ids must be distinct, since
 * two entries for one user would share one budget while the writer counted two. Against a loopback emulator an
 * identity without a credential gets an unsigned emulator token naming it (the emulator counts its limits per
 * user from the token's `oid`).
 */
export function createIdentityPool(url: string, settings: readonly IdentitySettings[]): PoolIdentity[] {
  if (settings.length === 0) {
    throw new UsageError(`The identity pool for \`${url}\` is empty; list at least one identity in ${IDENTITIES_ENV}.`);
  }
  const seenNames = new Set<string>();
  const seenClients = new Set<string>();
  const loopback = isLoopbackUrl(url);
  for (const s of settings) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(s.name)) {
      throw new UsageError(
        `Identity name \`${s.name}\` must be letters, digits, \`_\`, \`.\` or \`-\`; rename it in ${IDENTITIES_ENV}.`,
      );
    }
    if (seenNames.has(s.name.toLowerCase()))
      throw new UsageError(`Identity \`${s.name}\` is listed twice in the pool; list each application user once.`);
    seenNames.add(s.name.toLowerCase());
    if (s.clientId) {
      if (seenClients.has(s.clientId.toLowerCase())) {
        throw new UsageError(
          `Client id \`${s.clientId}\` (identity \`${s.name}\`) is used by two identities of the pool; each identity must be its own application user, or the two share one budget.`,
        );
      }
      seenClients.add(s.clientId.toLowerCase());
    }
  }
  return settings.map((s) => {
    if (s.getToken) return { name: s.name, getToken: s.getToken };
    // The emulator takes no real tokens: each identity gets one naming it (its credential stays unused).
    if (loopback) return { name: s.name, getToken: emulatorTokenFor(s.clientId ?? s.name) };
    if (!s.credential && !(s.clientId && s.clientSecret)) {
      const n = s.name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
      throw new UsageError(
        `Identity \`${s.name}\` has no credential; set FERRY_IDENTITY_${n}_CLIENT_ID and FERRY_IDENTITY_${n}_CLIENT_SECRET (and FERRY_IDENTITY_${n}_TENANT_ID or AZURE_TENANT_ID).`,
      );
    }
    if (!s.credential && !s.tenantId) {
      const n = s.name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
      throw new UsageError(
        `Identity \`${s.name}\` has no tenant; set FERRY_IDENTITY_${n}_TENANT_ID or AZURE_TENANT_ID.`,
      );
    }
    const getToken = createTokenProvider(url, {
      ...(s.credential ? { credential: s.credential } : {}),
      ...(s.tenantId ? { tenantId: s.tenantId } : {}),
      ...(s.clientId ? { clientId: s.clientId } : {}),
      ...(s.clientSecret ? { clientSecret: s.clientSecret } : {}),
    });
    return { name: s.name, ...(getToken ? { getToken } : {}) };
  });
}

/**
 * An unsigned JWT (`alg: none`) whose `oid` and `appid` name `who`: what the local emulator reads to tell the pool's
 * users apart. Useless against a real environment, which checks signatures.
 */
export function emulatorTokenFor(who: string): () => Promise<string> {
  const oid = uuidFrom(who);
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${part({ alg: 'none', typ: 'JWT' })}.${part({ oid, appid: who, sub: oid })}.`;
  return async () => token;
}

function uuidFrom(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
