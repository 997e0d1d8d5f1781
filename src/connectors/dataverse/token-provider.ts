import {
  ClientCertificateCredential,
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  type TokenCredential,
} from '@azure/identity';
import { FerryError } from '../../core/errors.js';
import type { IdentityConfig } from '../../core/project-config.js';

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

/** The `@azure/identity` credential for one identity of `ferry.config.json`. */
export function credentialForIdentity(identity: IdentityConfig): TokenCredential {
  if (identity.clientSecret)
    return new ClientSecretCredential(identity.tenantId!, identity.clientId!, identity.clientSecret);
  if (identity.certificatePath)
    return new ClientCertificateCredential(identity.tenantId!, identity.clientId!, {
      certificatePath: identity.certificatePath,
      ...(identity.certificatePassword ? { certificatePassword: identity.certificatePassword } : {}),
    });
  if (identity.managedIdentity)
    return identity.clientId
      ? new ManagedIdentityCredential({ clientId: identity.clientId })
      : new ManagedIdentityCredential();
  return new DefaultAzureCredential({
    ...(identity.tenantId ? { tenantId: identity.tenantId } : {}),
    ...(identity.clientId ? { managedIdentityClientId: identity.clientId } : {}),
  });
}

/**
 * Why a credential could not get a token, in one short sentence: the first line of the identity library's message
 * (without correlation and trace ids), or for `DefaultAzureCredential` that no way to sign in was available.
 */
export function shortAuthReason(error: unknown): string {
  const inner = error instanceof FerryError && error.cause ? error.cause : error;
  const name = inner instanceof Error ? inner.name : '';
  const message = inner instanceof Error ? inner.message : String(inner);
  if (name === 'AggregateAuthenticationError' || /^ChainedTokenCredential authentication failed/.test(message))
    return 'no way to sign in was available (no AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, no managed identity, no `az login`)';
  const first = message.split('\n').find((l) => l.trim()) ?? message;
  return first
    .replace(/\s*(Trace ID|Correlation ID|Timestamp):.*$/i, '')
    .trim()
    .slice(0, 300);
}
