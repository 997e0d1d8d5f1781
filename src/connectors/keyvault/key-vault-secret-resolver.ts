import type { TokenCredential } from '@azure/identity';
import { DefaultAzureCredential } from '@azure/identity';
import { SecretClient, type SecretClientOptions } from '@azure/keyvault-secrets';
import { UsageError } from '../../core/errors.js';
import type { KeyVaultReference, SecretResolver } from '../../core/project-config.js';

export interface KeyVaultResolverOptions {
  /** Who reads the secrets. Default `DefaultAzureCredential` (environment, managed identity, `az login`). */
  readonly credential?: TokenCredential;
  /** Passed to each `SecretClient` (e.g. `tlsOptions` with a test CA for a loopback vault). */
  readonly clientOptions?: SecretClientOptions;
}

/**
 * Reads Key Vault references of `ferry.config.json` with `@azure/keyvault-secrets` (one `SecretClient` per vault).
 * A secret that cannot be read is a configuration error naming the vault and secret — never the value.
 */
export function createKeyVaultSecretResolver(options: KeyVaultResolverOptions = {}): SecretResolver {
  const clients = new Map<string, SecretClient>();
  let credential = options.credential;
  return async (reference: KeyVaultReference) => {
    credential ??= new DefaultAzureCredential();
    let client = clients.get(reference.vaultUrl);
    if (!client) {
      client = new SecretClient(reference.vaultUrl, credential, { ...options.clientOptions });
      clients.set(reference.vaultUrl, client);
    }
    try {
      const secret = await client.getSecret(
        reference.secret,
        reference.version ? { version: reference.version } : undefined,
      );
      if (secret.value === undefined)
        throw new Error('the secret has no value (disabled, or a certificate-backed secret)');
      return secret.value;
    } catch (error) {
      const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);
      throw new UsageError(
        `Key Vault secret \`${reference.secret}\` in \`${reference.vaultUrl}\` could not be read: ${reason}. Check the name and that the identity running ferry may get secrets (Key Vault Secrets User).`,
        { cause: error },
      );
    }
  };
}
