import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { BlobServiceClient, type ContainerClient, RestError, StorageSharedKeyCredential } from '@azure/storage-blob';
import {
  DataLakeFileSystemClient,
  StorageSharedKeyCredential as DataLakeSharedKeyCredential,
} from '@azure/storage-file-datalake';
import { FerryError } from '../../core/errors.js';
import { type Lake, type LakeEntry, lakeJoin } from '../../core/lake.js';

export interface AdlsLakeOptions {
  /** Blob endpoint of the account, e.g. `https://acct.blob.core.windows.net` or Azurite's `http://127.0.0.1:10000/devstoreaccount1`. */
  readonly accountUrl: string;
  /** Container (ADLS Gen2 file system). */
  readonly container: string;
  /** Folder inside the container that is the lake root. Default: the container root. */
  readonly prefix?: string;
  /** Shared key (Azurite, tests). Without it: `credential`, or `DefaultAzureCredential` (managed identity). */
  readonly sharedKey?: { readonly accountName: string; readonly accountKey: string };
  readonly credential?: TokenCredential;
  /** Where files DuckDB must read are downloaded to. Default: a folder under the OS temp dir. */
  readonly cacheDir?: string;
  /**
   * Whether the account has a hierarchical namespace (ADLS Gen2). Default: asked once from the service
   * (Get Account Information, `x-ms-is-hns-enabled`). With it, rename goes through the DFS endpoint and is atomic.
   */
  readonly hierarchicalNamespace?: boolean;
  /** DFS endpoint of the account. Default: `accountUrl` with `.blob.` replaced by `.dfs.` (the same URL for others). */
  readonly dfsUrl?: string;
}

/**
 * The lake on ADLS Gen2. Reads, writes, listings and deletes go through the blob endpoint, which every account and
 * Azurite (no dfs endpoint) serve. Rename is what makes "temporary name → rename → manifest" safe, so on an account with
 * a hierarchical namespace it goes through the DFS endpoint (Path - Create with `x-ms-rename-source`), which renames
 * atomically and replaces the target; on flat accounts and Azurite it is copy + delete.
 * https://learn.microsoft.com/rest/api/storageservices/datalakestoragegen2/path/create
 * DuckDB reads local files only, so `toLocalPath` downloads a file into a cache keyed by its ETag.
 */
export class AdlsLake implements Lake {
  readonly root: string;
  #container: ContainerClient;
  #fileSystem: DataLakeFileSystemClient;
  #hierarchical: Promise<boolean> | undefined;
  #prefix: string;
  #cacheDir: string;

  constructor(options: AdlsLakeOptions) {
    const token = options.sharedKey ? undefined : (options.credential ?? new DefaultAzureCredential());
    const credential = options.sharedKey
      ? new StorageSharedKeyCredential(options.sharedKey.accountName, options.sharedKey.accountKey)
      : token!;
    const service = new BlobServiceClient(options.accountUrl, credential);
    this.#container = service.getContainerClient(options.container);
    const dfsUrl = (options.dfsUrl ?? options.accountUrl.replace('.blob.core.', '.dfs.core.')).replace(/\/+$/, '');
    this.#fileSystem = new DataLakeFileSystemClient(
      `${dfsUrl}/${options.container}`,
      options.sharedKey
        ? new DataLakeSharedKeyCredential(options.sharedKey.accountName, options.sharedKey.accountKey)
        : token!,
    );
    if (options.hierarchicalNamespace !== undefined)
      this.#hierarchical = Promise.resolve(options.hierarchicalNamespace);
    this.#prefix = lakeJoin(options.prefix ?? '');
    this.root = `${options.accountUrl.replace(/\/+$/, '')}/${options.container}${this.#prefix ? `/${this.#prefix}` : ''}`;
    this.#cacheDir =
      options.cacheDir ??
      path.join(
        os.tmpdir(),
        'ferry-adls-cache',
        crypto.createHash('sha1').update(this.root).digest('hex').slice(0, 12),
      );
  }

  /** Creates the container if it does not exist (deploy-time convenience; tests use it). */
  async ensureContainer(): Promise<void> {
    await this.#call('create the container', () => this.#container.createIfNotExists());
  }

  #blob(p: string): string {
    return lakeJoin(this.#prefix, p);
  }

  #relative(blobName: string): string {
    return this.#prefix ? blobName.slice(this.#prefix.length + 1) : blobName;
  }

  async list(prefix: string, options: { recursive?: boolean } = {}): Promise<LakeEntry[]> {
    const base = this.#blob(prefix);
    const search = base ? `${base}/` : '';
    const out: LakeEntry[] = [];
    await this.#call(`list \`${prefix}\``, async () => {
      if (options.recursive) {
        const dirs = new Set<string>();
        // Folders below `prefix` start this many segments in.
        const firstDir = lakeJoin(prefix).split('/').filter(Boolean).length + 1;
        for await (const b of this.#container.listBlobsFlat({ prefix: search })) {
          const rel = this.#relative(b.name);
          out.push(fileEntry(rel, b.properties));
          // Blob storage has no folders: derive them from the names, as a file system listing would show them.
          const parts = rel.split('/');
          for (let i = firstDir; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
        }
        for (const d of dirs) out.push({ path: d, isDirectory: true, size: 0, modifiedMs: 0 });
      } else {
        for await (const item of this.#container.listBlobsByHierarchy('/', { prefix: search })) {
          if (item.kind === 'prefix') {
            out.push({ path: this.#relative(item.name.replace(/\/$/, '')), isDirectory: true, size: 0, modifiedMs: 0 });
          } else {
            out.push(fileEntry(this.#relative(item.name), item.properties));
          }
        }
      }
    });
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async stat(p: string): Promise<LakeEntry | undefined> {
    try {
      return fileEntry(p, await this.#container.getBlobClient(this.#blob(p)).getProperties());
    } catch (error) {
      if (error instanceof RestError && error.statusCode === 404) {
        const children = await this.list(p);
        return children.length ? { path: p, isDirectory: true, size: 0, modifiedMs: 0 } : undefined;
      }
      throw this.#map(error, `stat \`${p}\``);
    }
  }

  async readText(p: string): Promise<string> {
    return (await this.readBytes(p)).toString('utf8');
  }

  async readBytes(p: string): Promise<Buffer> {
    return this.#call(`read \`${p}\``, () => this.#container.getBlobClient(this.#blob(p)).downloadToBuffer());
  }

  async write(p: string, data: Buffer | string): Promise<void> {
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    await this.#call(`write \`${p}\``, () => this.#container.getBlockBlobClient(this.#blob(p)).uploadData(body));
  }

  /** Atomic on an account with a hierarchical namespace (DFS rename, replaces the target); copy + delete otherwise. */
  async rename(from: string, to: string): Promise<void> {
    const what = `rename \`${from}\` to \`${to}\``;
    if (await this.#isHierarchical()) {
      await this.#call(what, () => this.#fileSystem.getFileClient(this.#blob(from)).move(this.#blob(to)));
      return;
    }
    const source = this.#container.getBlobClient(this.#blob(from));
    const target = this.#container.getBlobClient(this.#blob(to));
    await this.#call(what, async () => {
      const poller = await target.beginCopyFromURL(source.url);
      await poller.pollUntilDone();
      await source.delete();
    });
  }

  /** Asked once per lake; a failure is not cached, so the next rename asks again. */
  #isHierarchical(): Promise<boolean> {
    this.#hierarchical ??= this.#call('read the account information', async () => {
      const info = await this.#container.getAccountInfo();
      return info.isHierarchicalNamespaceEnabled === true;
    }).catch((error: unknown) => {
      this.#hierarchical = undefined;
      throw error;
    });
    return this.#hierarchical;
  }

  async delete(p: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.#call(`delete \`${p}\``, async () => {
      await this.#container.getBlobClient(this.#blob(p)).deleteIfExists();
      if (options.recursive) {
        for (const entry of await this.list(p, { recursive: true })) {
          if (!entry.isDirectory) await this.#container.getBlobClient(this.#blob(entry.path)).deleteIfExists();
        }
      }
    });
  }

  async toLocalPath(p: string): Promise<string> {
    const blob = this.#container.getBlobClient(this.#blob(p));
    const props = await this.#call(`read \`${p}\``, () => blob.getProperties());
    const etag = (props.etag ?? '').replaceAll('"', '');
    const local = path.join(this.#cacheDir, 'read', `${p}.${etag}`);
    const exists = await fs.stat(local).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await fs.mkdir(path.dirname(local), { recursive: true });
      await this.#call(`download \`${p}\``, () => blob.downloadToFile(`${local}.part`));
      await fs.rename(`${local}.part`, local);
    }
    return local;
  }

  async localWritePath(p: string): Promise<string> {
    const local = path.join(this.#cacheDir, 'write', p);
    await fs.mkdir(path.dirname(local), { recursive: true });
    return local;
  }

  async publish(p: string): Promise<void> {
    const local = path.join(this.#cacheDir, 'write', p);
    await this.#call(`upload \`${p}\``, () => this.#container.getBlockBlobClient(this.#blob(p)).uploadFile(local));
    await fs.rm(local, { force: true });
  }

  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.#map(error, what);
    }
  }

  /** Storage errors become FerryErrors in this one place; throttling and server errors are worth retrying. */
  #map(error: unknown, what: string): FerryError {
    const status = error instanceof RestError ? error.statusCode : undefined;
    const code = error instanceof RestError ? error.code : undefined;
    const retry = status === undefined || status === 408 || status === 429 || status >= 500;
    const hint =
      status === 403 || status === 401
        ? ' Grant the identity "Storage Blob Data Contributor" on the container.'
        : status === 404
          ? ' Check the account URL, container and path.'
          : '';
    return new FerryError(
      retry ? 'lake.adls_unavailable' : 'lake.adls',
      `Could not ${what} in \`${this.root}\` (${status ?? 'network'} ${code ?? ''}).${hint}`,
      { cause: error },
    );
  }
}

/** A blob as a lake file entry (listing items and `getProperties` both carry length and last-modified). */
function fileEntry(p: string, props: { readonly contentLength?: number; readonly lastModified?: Date }): LakeEntry {
  return {
    path: p,
    isDirectory: false,
    size: props.contentLength ?? 0,
    modifiedMs: props.lastModified?.getTime() ?? 0,
  };
}
