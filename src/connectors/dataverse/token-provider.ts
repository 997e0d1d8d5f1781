import { ClientSecretCredential, DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { FerryError } from '../../core/errors.js';

/** Where tokens come from: explicit client secret, or `DefaultAzureCredential` (env, managed identity, Azure CLI...). */
export interface TokenProviderOptions {
  readonly tenantId?: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  /** A credential to use as is (tests, custom chains). */
  readonly credential?: TokenCredential;
  /** Refresh this long before expiry when the token does not say when. Default `300000` ms (5 minutes). */
  readonly refreshAheadMs?: number;
  /** Clock, replaceable for tests. */
  readonly now?: () => number;
}

/** True for environment URLs of the local emulator, which needs no token. */
export function isLoopbackUrl(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host === '::1';
  } catch {
    return false;
  }
}

/**
 * Returns a `getToken` function for a Dataverse environment (scope `<url>/.default`) with a refresh-ahead cache,
 * or undefined for loopback (emulator) URLs. Tokens are never logged.
 */
export function createTokenProvider(
  url: string,
  options: TokenProviderOptions = {},
): (() => Promise<string>) | undefined {
  if (isLoopbackUrl(url)) return undefined;
  const credential = options.credential ?? credentialFrom(options);
  const scope = `${new URL(url).origin}/.default`;
  const refreshAhead = options.refreshAheadMs ?? 300_000;
  const now = options.now ?? Date.now;
  let cached: { token: string; refreshAt: number; expiresAt: number } | undefined;
  let pending: Promise<string> | undefined;

  const fetchToken = async (): Promise<string> => {
    let token: Awaited<ReturnType<TokenCredential['getToken']>>;
    try {
      token = await credential.getToken(scope);
    } catch (error) {
      throw new FerryError(
        'dataverse.auth',
        `Could not get a token for \`${scope}\`: ${error instanceof Error ? error.message : String(error)}. Set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or sign in with \`az login\`.`,
        {
          disposition: 'fatal',
          cause: error,
        },
      );
    }
    if (!token)
      throw new FerryError(
        'dataverse.auth',
        `No token was issued for \`${scope}\`; check the credential configuration.`,
      );
    const refreshAt = token.refreshAfterTimestamp ?? token.expiresOnTimestamp - refreshAhead;
    cached = { token: token.token, refreshAt, expiresAt: token.expiresOnTimestamp };
    return token.token;
  };

  return async () => {
    const t = now();
    if (cached && t < cached.refreshAt) return cached.token;
    // Refresh ahead: while the old token is still valid, callers keep using it and one refresh runs.
    pending ??= fetchToken().finally(() => {
      pending = undefined;
    });
    if (cached && t < cached.expiresAt - 30_000) {
      pending.catch(() => undefined);
      return cached.token;
    }
    return pending;
  };
}

function credentialFrom(options: TokenProviderOptions): TokenCredential {
  const tenantId = options.tenantId ?? process.env.AZURE_TENANT_ID;
  const clientId = options.clientId ?? process.env.AZURE_CLIENT_ID;
  const clientSecret = options.clientSecret ?? process.env.AZURE_CLIENT_SECRET;
  if (tenantId && clientId && clientSecret) return new ClientSecretCredential(tenantId, clientId, clientSecret);
  return new DefaultAzureCredential();
}
