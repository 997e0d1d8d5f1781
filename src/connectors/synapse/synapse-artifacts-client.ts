import { bearerTokenAuthenticationPolicyName } from '@azure/core-rest-pipeline';
import { DefaultAzureCredential } from '@azure/identity';
import { ArtifactsClient } from '@azure/synapse-artifacts';
import { FerryError, UsageError } from '../../core/errors.js';

/** The artifact kinds this client deploys (same names as the Synapse Git folders). */
export type WorkspaceArtifactKind = 'linkedService' | 'dataset' | 'pipeline' | 'trigger';

/** An artifact as the workspace holds it: its `properties`, exactly as JSON (plus a trigger's runtime state). */
export interface WorkspaceArtifact {
  readonly properties: Record<string, unknown>;
  /** Triggers: `Started` | `Stopped` | `Disabled`. */
  readonly runtimeState?: string;
}

/** One artifact of a workspace listing: its name and `properties` as JSON (plus a trigger's runtime state). */
export interface ListedArtifact extends WorkspaceArtifact {
  readonly name: string;
}

/** A pipeline run's state as the workspace reports it. */
export interface RemoteRunStatus {
  readonly runId: string;
  /** `Queued` | `InProgress` | `Succeeded` | `Failed` | `Canceling` | `Cancelled`. */
  readonly status: string;
  readonly message?: string;
}

/**
 * The few workspace operations deploy and run-remote need; the exporter depends on this shape, not on the SDK,
 * so tests can use the real SDK against a loopback server.
 */
export interface SynapseWorkspace {
  readonly endpoint: string;
  get(kind: WorkspaceArtifactKind, name: string): Promise<WorkspaceArtifact | undefined>;
  put(kind: WorkspaceArtifactKind, name: string, properties: Record<string, unknown>): Promise<void>;
  /** Every artifact of a kind in the workspace (all pages). */
  list(kind: WorkspaceArtifactKind): Promise<ListedArtifact[]>;
  /** Deletes an artifact and confirms it is gone; a refusal (e.g. still referenced) is an error with the service's message. */
  delete(kind: WorkspaceArtifactKind, name: string): Promise<void>;
  startTrigger(name: string): Promise<void>;
  stopTrigger(name: string): Promise<void>;
  createRun(pipeline: string, parameters: Record<string, unknown>): Promise<string>;
  getRun(runId: string): Promise<RemoteRunStatus>;
}

/** How to reach a workspace. */
export interface SynapseClientOptions {
  /** Workspace name → `https://<name>.dev.azuresynapse.net`. */
  readonly workspace?: string;
  /** Full endpoint; wins over `workspace`. */
  readonly endpoint?: string;
  /**
   * Loopback test servers only: plain http on 127.0.0.1 without a token. The SDK's bearer policy refuses non-TLS
   * URLs ("Bearer token authentication is not permitted for non-TLS protected (non-https) URLs", from
   * `bearerTokenAuthenticationPolicy` in `@azure/core-rest-pipeline`), so it is removed and a fixed `Authorization`
   * header is sent instead.
   */
  readonly insecureLoopback?: boolean;
  /** SDK retries; tests set 0 so a failure shows at once. Default: the SDK's. */
  readonly maxRetries?: number;
  /** Wait between polls of a long-running operation (delete) when the service sends no Retry-After. Default: the SDK's. */
  readonly pollIntervalMs?: number;
}

const LOOPBACK = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/;

/** Resolves the endpoint for a workspace name (or checks a given one). */
export function synapseEndpoint(options: SynapseClientOptions): string {
  if (options.endpoint) return options.endpoint.replace(/\/$/, '');
  if (!options.workspace || !/^[a-z0-9][a-z0-9-]{0,49}$/i.test(options.workspace)) {
    throw new UsageError(
      `Synapse workspace name \`${options.workspace ?? ''}\` is not valid; pass --workspace <name> (letters, digits, dashes).`,
    );
  }
  return `https://${options.workspace}.dev.azuresynapse.net`;
}

/** `@azure/synapse-artifacts` behind `SynapseWorkspace`, authenticated with `DefaultAzureCredential`. */
export class SynapseArtifactsClient implements SynapseWorkspace {
  readonly endpoint: string;
  #client: ArtifactsClient;
  readonly #poll: { updateIntervalInMs?: number };

  constructor(options: SynapseClientOptions) {
    this.endpoint = synapseEndpoint(options);
    this.#poll = options.pollIntervalMs === undefined ? {} : { updateIntervalInMs: options.pollIntervalMs };
    const loopback = options.insecureLoopback === true;
    if (loopback && !LOOPBACK.test(this.endpoint)) {
      throw new FerryError(
        'synapse.insecure',
        `Plain-http access is only for loopback test servers, not \`${this.endpoint}\`.`,
      );
    }
    const credential = loopback
      ? { getToken: async () => ({ token: 'loopback', expiresOnTimestamp: Date.now() + 3_600_000 }) }
      : new DefaultAzureCredential();
    this.#client = new ArtifactsClient(credential, this.endpoint, {
      ...(loopback ? { allowInsecureConnection: true } : {}),
      ...(options.maxRetries === undefined ? {} : { retryOptions: { maxRetries: options.maxRetries } }),
    });
    if (loopback) {
      this.#client.pipeline.removePolicy({ name: bearerTokenAuthenticationPolicyName });
      this.#client.pipeline.addPolicy({
        name: 'ferryLoopbackAuth',
        sendRequest: (request, next) => {
          request.headers.set('Authorization', 'Bearer loopback');
          return next(request);
        },
      });
    }
  }

  async get(kind: WorkspaceArtifactKind, name: string): Promise<WorkspaceArtifact | undefined> {
    // The SDK flattens known types into its own model; the raw JSON body is what deploy compares with.
    let raw: unknown;
    const onResponse = (response: { parsedBody?: unknown; bodyAsText?: string | null }) => {
      raw = response.bodyAsText ? JSON.parse(response.bodyAsText) : response.parsedBody;
    };
    try {
      const ops = this.#client;
      if (kind === 'linkedService') await ops.linkedServiceOperations.getLinkedService(name, { onResponse });
      else if (kind === 'dataset') await ops.datasetOperations.getDataset(name, { onResponse });
      else if (kind === 'pipeline') await ops.pipelineOperations.getPipeline(name, { onResponse });
      else await ops.triggerOperations.getTrigger(name, { onResponse });
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw mapSynapseError(error, `reading ${kind} \`${name}\``);
    }
    const body = (raw ?? {}) as { properties?: Record<string, unknown> };
    const properties = { ...(body.properties ?? {}) };
    const runtimeState = typeof properties.runtimeState === 'string' ? properties.runtimeState : undefined;
    delete properties.runtimeState;
    return { properties, ...(runtimeState ? { runtimeState } : {}) };
  }

  async put(kind: WorkspaceArtifactKind, name: string, properties: Record<string, unknown>): Promise<void> {
    try {
      const ops = this.#client;
      // Raw ADF JSON reaches the wire unchanged: pipelines take their `properties` object, the rest `{ properties }`.
      if (kind === 'linkedService')
        await ops.linkedServiceOperations.beginCreateOrUpdateLinkedServiceAndWait(name, { properties } as never);
      else if (kind === 'dataset')
        await ops.datasetOperations.beginCreateOrUpdateDatasetAndWait(name, { properties } as never);
      else if (kind === 'pipeline')
        await ops.pipelineOperations.beginCreateOrUpdatePipelineAndWait(name, properties as never);
      else await ops.triggerOperations.beginCreateOrUpdateTriggerAndWait(name, { properties } as never);
    } catch (error) {
      throw mapSynapseError(error, `writing ${kind} \`${name}\``);
    }
  }

  async list(kind: WorkspaceArtifactKind): Promise<ListedArtifact[]> {
    // Raw page bodies, as for `get`: the SDK's models are flattened and would not compare with the artifact JSON.
    const out: ListedArtifact[] = [];
    const onResponse = (response: { parsedBody?: unknown; bodyAsText?: string | null }) => {
      const body = (response.bodyAsText ? JSON.parse(response.bodyAsText) : response.parsedBody) as
        | { value?: { name?: unknown; properties?: Record<string, unknown> }[] }
        | undefined;
      for (const item of body?.value ?? []) {
        if (typeof item.name !== 'string') continue;
        const properties = { ...(item.properties ?? {}) };
        const runtimeState = typeof properties.runtimeState === 'string' ? properties.runtimeState : undefined;
        delete properties.runtimeState;
        out.push({ name: item.name, properties, ...(runtimeState ? { runtimeState } : {}) });
      }
    };
    try {
      const ops = this.#client;
      const pages =
        kind === 'linkedService'
          ? ops.linkedServiceOperations.listLinkedServicesByWorkspace({ onResponse }).byPage()
          : kind === 'dataset'
            ? ops.datasetOperations.listDatasetsByWorkspace({ onResponse }).byPage()
            : kind === 'pipeline'
              ? ops.pipelineOperations.listPipelinesByWorkspace({ onResponse }).byPage()
              : ops.triggerOperations.listTriggersByWorkspace({ onResponse }).byPage();
      for await (const _page of pages) {
        // Each page's raw body was read by onResponse.
      }
    } catch (error) {
      throw mapSynapseError(error, `listing the ${kind}s`);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async delete(kind: WorkspaceArtifactKind, name: string): Promise<void> {
    // Deletes are long-running operations: 202 with a `Location` the SDK polls. The SDK decides the outcome from the
    // poll's HTTP status alone, so an operation result of `{"status":"Failed","error":…}` (e.g. "The document cannot
    // be deleted since it is referenced by …") would read as success: the last body is kept, and the artifact is
    // read back to confirm it is gone.
    let last: { status?: unknown; error?: { code?: unknown; message?: unknown } } | undefined;
    const onResponse = (response: { parsedBody?: unknown; bodyAsText?: string | null }) => {
      try {
        last = response.bodyAsText ? JSON.parse(response.bodyAsText) : (response.parsedBody as typeof last);
      } catch {
        last = undefined;
      }
    };
    try {
      const ops = this.#client;
      if (kind === 'linkedService')
        await ops.linkedServiceOperations.beginDeleteLinkedServiceAndWait(name, { onResponse, ...this.#poll });
      else if (kind === 'dataset')
        await ops.datasetOperations.beginDeleteDatasetAndWait(name, { onResponse, ...this.#poll });
      else if (kind === 'pipeline')
        await ops.pipelineOperations.beginDeletePipelineAndWait(name, { onResponse, ...this.#poll });
      else await ops.triggerOperations.beginDeleteTriggerAndWait(name, { onResponse, ...this.#poll });
    } catch (error) {
      throw mapSynapseError(error, `deleting ${kind} \`${name}\``);
    }
    const failed = typeof last?.status === 'string' && last.status.toLowerCase() === 'failed';
    if (failed || (await this.get(kind, name)) !== undefined) {
      const reason =
        typeof last?.error?.message === 'string'
          ? `${last.error.code ? `${String(last.error.code)}: ` : ''}${last.error.message}`
          : 'the workspace still has it after the delete operation ended';
      throw new FerryError(
        'synapse.request',
        `Synapse did not delete ${kind} \`${name}\`: ${reason}; remove what references it, or leave it in place.`,
        { details: { kind, name } },
      );
    }
  }

  async startTrigger(name: string): Promise<void> {
    try {
      await this.#client.triggerOperations.beginStartTriggerAndWait(name);
    } catch (error) {
      throw mapSynapseError(error, `starting trigger \`${name}\``);
    }
  }

  async stopTrigger(name: string): Promise<void> {
    try {
      await this.#client.triggerOperations.beginStopTriggerAndWait(name);
    } catch (error) {
      throw mapSynapseError(error, `stopping trigger \`${name}\``);
    }
  }

  async createRun(pipeline: string, parameters: Record<string, unknown>): Promise<string> {
    try {
      const response = await this.#client.pipelineOperations.createPipelineRun(pipeline, { parameters });
      if (!response.runId) throw new Error('the service answered without a runId');
      return response.runId;
    } catch (error) {
      throw mapSynapseError(error, `starting a run of pipeline \`${pipeline}\``);
    }
  }

  async getRun(runId: string): Promise<RemoteRunStatus> {
    try {
      const run = await this.#client.pipelineRunOperations.getPipelineRun(runId);
      return { runId, status: run.status ?? 'Unknown', ...(run.message ? { message: run.message } : {}) };
    } catch (error) {
      throw mapSynapseError(error, `reading pipeline run \`${runId}\``);
    }
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number } | undefined)?.statusCode;
}

/** SDK errors → FerryError: 429/5xx and network errors are retryable, the rest fatal, the service's message kept. */
export function mapSynapseError(error: unknown, doing: string): FerryError {
  if (error instanceof FerryError) return error;
  const status = statusOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : '';
  if (
    name === 'CredentialUnavailableError' ||
    name === 'AuthenticationError' ||
    name === 'AggregateAuthenticationError'
  ) {
    // No usable identity is not a transient failure: say how to get one.
    return new FerryError(
      'synapse.credential',
      `No Azure identity for ${doing}: ${message.split('\n')[0]}; sign in with \`az login\`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or run where a managed identity is available.`,
      { cause: error },
    );
  }
  const retry = status === undefined || status === 429 || status >= 500;
  const hint =
    status === 401 || status === 403
      ? 'check that your identity (DefaultAzureCredential: az login, managed identity or environment) has the Synapse Artifact Publisher role'
      : retry
        ? 'try again later'
        : 'fix the artifact and deploy again';
  return new FerryError(
    retry ? 'synapse.unavailable' : 'synapse.request',
    `Synapse failed ${doing}${status ? ` (HTTP ${status})` : ''}: ${message}; ${hint}.`,
    {
      cause: error,
      details: status ? { status } : {},
    },
  );
}
