import fs from 'node:fs';
import path from 'node:path';
import { isUrlLocation } from '../../core/config.js';
import { UsageError } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import { AdlsLake } from './adls-lake.js';
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
  if (url) return new AdlsLake(url);
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
