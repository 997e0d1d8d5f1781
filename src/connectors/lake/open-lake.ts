import fs from 'node:fs';
import path from 'node:path';
import { isUrlLocation } from '../../core/config.js';
import { UsageError } from '../../core/errors.js';
import { type Lake, type LakeEntry, lakeJoin } from '../../core/lake.js';
import type { AdlsLake, AdlsLakeOptions } from './adls-lake.js';
import { LocalLake } from './local-lake.js';

/** Options of {@link openLake}. */
export interface OpenLakeOptions {
  /**
   * A local folder that does not exist yet is created on first write (the warehouse); without it, a missing folder
   * is a configuration error (the lake the deltas arrive in). Default `false`.
   */
  readonly createFolder?: boolean;
}

/**
 * The one lake factory: a local folder, or ADLS Gen2 as `abfss://<container>@<account>.dfs.core.windows.net/<path>`
 * or `https://<account>.blob.core.windows.net/<container>/<path>`, signed in with `DefaultAzureCredential`. A new lake
 * backend gets its URL form here and its class beside `local-lake.ts`, run through `test/lake/lake-contract.test.ts`.
 */
export function openLake(location: string, options: OpenLakeOptions = {}): Lake {
  const url = parseAdlsUrl(location);
  if (url) return new DeferredAdlsLake(url);
  if (isUrlLocation(location)) {
    throw new UsageError(
      `Lake \`${location}\` is neither a folder nor an ADLS Gen2 URL; use e.g. ./lake or abfss://container@account.dfs.core.windows.net/path.`,
    );
  }
  if (!options.createFolder && !fs.existsSync(location)) {
    throw new UsageError(
      `Lake folder \`${path.resolve(location)}\` does not exist; create it, or point --lake (FERRY_LAKE, or the target's \`lake\`) at the folder the deltas arrive in.`,
    );
  }
  return new LocalLake(location);
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

/**
 * An ADLS Gen2 lake whose Azure SDK (a few hundred modules) is imported at its first call, not when the CLI starts:
 * `ferry status` and the commands on a local lake never load it. Behaves as `AdlsLake`, which does the work.
 */
class DeferredAdlsLake implements Lake {
  readonly root: string;
  #options: AdlsLakeOptions;
  #lake: Promise<AdlsLake> | undefined;

  constructor(options: AdlsLakeOptions) {
    this.#options = options;
    const prefix = lakeJoin(options.prefix ?? '');
    // The same text as `AdlsLake.root`, without constructing it.
    this.root = `${options.accountUrl.replace(/\/+$/, '')}/${options.container}${prefix ? `/${prefix}` : ''}`;
  }

  #open(): Promise<AdlsLake> {
    this.#lake ??= import('./adls-lake.js').then(({ AdlsLake }) => new AdlsLake(this.#options));
    return this.#lake;
  }

  async list(prefix: string, options?: { readonly recursive?: boolean }): Promise<LakeEntry[]> {
    return (await this.#open()).list(prefix, options);
  }
  async stat(path: string): Promise<LakeEntry | undefined> {
    return (await this.#open()).stat(path);
  }
  async readText(path: string): Promise<string> {
    return (await this.#open()).readText(path);
  }
  async readBytes(path: string): Promise<Buffer> {
    return (await this.#open()).readBytes(path);
  }
  async write(path: string, data: Buffer | string): Promise<void> {
    return (await this.#open()).write(path, data);
  }
  async rename(from: string, to: string): Promise<void> {
    return (await this.#open()).rename(from, to);
  }
  async delete(path: string, options?: { readonly recursive?: boolean }): Promise<void> {
    return (await this.#open()).delete(path, options);
  }
  async toLocalPath(path: string): Promise<string> {
    return (await this.#open()).toLocalPath(path);
  }
  async localWritePath(path: string): Promise<string> {
    return (await this.#open()).localWritePath(path);
  }
  async publish(path: string): Promise<void> {
    return (await this.#open()).publish(path);
  }
}
