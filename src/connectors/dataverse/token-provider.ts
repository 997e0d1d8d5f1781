import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { FerryError } from '../../core/errors.js';

/**
 * Bearer tokens for a Dataverse environment from `@azure/identity` (environment variables, managed identity, Azure
 * CLI...). Tokens are cached and refreshed ahead of expiry; they never appear in logs or errors.
 */
export function createTokenProvider(environmentUrl: string, credential: TokenCredential = new DefaultAzureCredential()): () => Promise<string> {
  const scope = `${new URL(environmentUrl).origin}/.default`;
  let cached: { token: string; refreshAt: number } | undefined;
  let pending: Promise<string> | undefined;
  return async () => {
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    pending ??= (async () => {
      try {
        const token = await credential.getToken(scope);
        if (!token) throw new Error('no token returned');
        // Refresh five minutes early (or at the credential's own hint) so a long batch never carries an expired token.
        const refreshAt = token.refreshAfterTimestamp ?? token.expiresOnTimestamp - 5 * 60_000;
        cached = { token: token.token, refreshAt };
        return token.token;
      } catch (error) {
        throw new FerryError(
          'dataverse.auth',
          `Cannot get a token for \`${scope}\`: ${(error as Error).message.split('\n')[0]}. Set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET or sign in with \`az login\`.`,
          { disposition: 'fatal', cause: error },
        );
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
}
