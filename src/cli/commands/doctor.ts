import { DataverseClient } from '../../connectors/dataverse/dataverse-client.js';
import {
  createTokenProvider,
  credentialForIdentity,
  isLoopbackUrl,
  shortAuthReason,
} from '../../connectors/dataverse/token-provider.js';
import { createKeyVaultSecretResolver } from '../../connectors/keyvault/key-vault-secret-resolver.js';
import type { FerryConfig } from '../../core/config.js';
import { describeError, EXIT, isRetryable } from '../../core/errors.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { describeIdentity, type KeyVaultReference, keyVaultReferenceOf } from '../../core/project-config.js';
import type { Command, CommandInput } from '../command.js';
import { compareWithService } from '../metadata-compare.js';
import { loadProjectSettings, type ProjectSettings } from '../project.js';
import { type OpenDataverse, openDataverse, openLake, openState, pipelinesFor } from '../services.js';
import { openWorkspace } from './deploy-synapse.js';

/** What a Key Vault reference stands for until it was read. */
const UNRESOLVED = '\u0000unresolved-key-vault-reference';

/** How one check ended. `fail` carries the exit code it stands for. */
export interface DoctorCheck {
  readonly check: string;
  readonly status: 'ok' | 'warn' | 'fail' | 'skip';
  readonly detail: string;
  /** What to do about a `warn` or `fail`. */
  readonly fix?: string;
  readonly exitCode?: number;
}

/**
 * `ferry doctor`: checks a setup before the first run, one line per check with what to do when it fails — the
 * configuration and its Key Vault references, a token per identity, `WhoAmI` and the dop hint, a listing and a
 * probe write in the lake, the state store, the metadata snapshots against the service, the Synapse workspace.
 */
export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check a target before the first run: config, Key Vault, identities, Dataverse, lake, state, metadata',
  usage: 'doctor [--target <name>] [--json]',
  description:
    'Exit code by the worst result: 0 when every check is ok (warnings allowed), 2 when a configuration check failed (configuration file, Key Vault reference, identity), 75 when only a service could not be reached, 1 otherwise.',
  examples: [
    { text: 'Check the default target of ferry.config.json:', command: 'ferry doctor' },
    { text: 'Check the prod target, machine-readable:', command: 'ferry doctor --target prod --json' },
    { text: 'Check the built-in emulator setup:', command: 'ferry doctor --emulator' },
  ],
  loadsSettings: true,
  async run(input) {
    const checks: DoctorCheck[] = [];
    const report = (c: DoctorCheck) => {
      checks.push(c);
      input.print(input.json ? JSON.stringify(c) : doctorLine(c));
    };
    await runChecks(input, report);
    const code = worstExitCode(checks);
    if (!input.json) {
      const failed = checks.filter((c) => c.status === 'fail').length;
      const warned = checks.filter((c) => c.status === 'warn').length;
      input.print(
        failed
          ? `${failed} check(s) failed${warned ? `, ${warned} warning(s)` : ''}.`
          : `All checks passed${warned ? ` (${warned} warning(s))` : ''}.`,
      );
    }
    return code;
  },
};

/** `ok    dataverse  WhoAmI … — fix`; wide enough for `identity <name>` checks. */
export function doctorLine(c: DoctorCheck): string {
  return `${c.status.padEnd(5)} ${c.check.padEnd(24)} ${c.detail}${c.fix ? ` — ${c.fix}` : ''}`;
}

/** 0 when nothing failed; else 2 for a configuration failure, 1 for another, 75 when only services were unreachable. */
export function worstExitCode(checks: readonly DoctorCheck[]): number {
  const codes = checks.filter((c) => c.status === 'fail').map((c) => c.exitCode ?? EXIT.failed);
  if (codes.length === 0) return EXIT.ok;
  if (codes.includes(EXIT.usage)) return EXIT.usage;
  if (codes.includes(EXIT.failed)) return EXIT.failed;
  return EXIT.temporaryFailure;
}

async function runChecks(input: CommandInput, report: (c: DoctorCheck) => void): Promise<void> {
  // 1. The configuration file and target, with `${env:…}`; Key Vault references are checked one by one below.
  let settings: ProjectSettings;
  const references: Array<{ at: string; reference: KeyVaultReference }> = [];
  try {
    settings = await loadProjectSettings(input.values, input.log, {
      ...(input.cwd ? { cwd: input.cwd } : {}),
      // Read one by one below; until then a reference stands for itself.
      resolveSecret: async (reference) => {
        references.push({ at: '', reference });
        return UNRESOLVED;
      },
    });
    const where = settings.project?.configFile
      ? `${settings.project.configFile}, target \`${settings.config.target ?? '(none)'}\``
      : 'no ferry.config.json (flags and environment only)';
    report({ check: 'config', status: 'ok', detail: where });
  } catch (error) {
    report({
      check: 'config',
      status: 'fail',
      detail: describeError(error),
      fix: 'fix the configuration file or the flags; `ferry init` writes an example',
      exitCode: EXIT.usage,
    });
    return;
  }
  let config = settings.config;

  // 2. Key Vault references of the target: read each, then resolve the target for real.
  const targetRaw = settings.file && config.target ? settings.file.targets[config.target] : undefined;
  const found = targetRaw ? referencesIn(targetRaw, `targets.${config.target}`) : [];
  if (found.length === 0) {
    report({ check: 'keyvault', status: 'skip', detail: 'no Key Vault references in the target' });
  } else {
    const resolve = createKeyVaultSecretResolver();
    let failed = false;
    for (const { at, reference } of found) {
      try {
        await resolve(reference);
        report({
          check: 'keyvault',
          status: 'ok',
          detail: `${at}: read \`${reference.secret}\` from ${reference.vaultUrl}`,
        });
      } catch (error) {
        failed = true;
        report({
          check: 'keyvault',
          status: 'fail',
          detail: `${at}: ${describeError(error)}`,
          fix: 'fix the reference, or grant the identity running ferry the Key Vault Secrets User role',
          exitCode: EXIT.usage,
        });
      }
    }
    if (!failed)
      config = (await loadProjectSettings(input.values, input.log, input.cwd ? { cwd: input.cwd } : {})).config;
  }

  // 3. A token per identity, then WhoAmI and the dop hint.
  await checkDataverse(config, input, report);

  // 4. The lake: list, then write and delete a probe file; then the folders the pipelines read.
  if (await checkLake(config, report)) await checkInputFolders(config, settings.pipelinesDir, input, report);

  // 5. The state store.
  try {
    const state = openState(config);
    try {
      const runs = state.listRuns({ limit: 1 });
      report({
        check: 'state',
        status: 'ok',
        detail: `${config.state}: opened; ${runs.length ? `last run ${runs[0]!.id} ${runs[0]!.status}` : 'no runs yet'}`,
      });
    } finally {
      state.close();
    }
  } catch (error) {
    report({
      check: 'state',
      status: 'fail',
      detail: describeError(error),
      fix: 'point --state (FERRY_STATE, or the target’s state) at a writable folder',
      exitCode: EXIT.usage,
    });
  }

  // 6. Synapse workspace.
  const workspace = process.env.FERRY_SYNAPSE_WORKSPACE;
  if (!workspace && !process.env.FERRY_SYNAPSE_ENDPOINT) {
    report({ check: 'synapse', status: 'skip', detail: 'no workspace configured (target synapseWorkspace)' });
  } else {
    try {
      const client = openWorkspace(workspace);
      await client.get('pipeline', 'pl_ferry_doctor_probe');
      report({ check: 'synapse', status: 'ok', detail: `${client.endpoint}: reached` });
    } catch (error) {
      report({
        check: 'synapse',
        status: 'fail',
        detail: describeError(error).split('\n')[0]!,
        fix: 'check the workspace name and that the identity has the Synapse Artifact Publisher role',
        exitCode: isRetryable(error) ? EXIT.temporaryFailure : EXIT.failed,
      });
    }
  }
}

async function checkDataverse(
  config: FerryConfig,
  input: CommandInput,
  report: (c: DoctorCheck) => void,
): Promise<void> {
  if (!config.dataverse && !config.emulator) {
    report({
      check: 'dataverse',
      status: 'fail',
      detail: 'no Dataverse target',
      fix: 'set the target’s dataverse in ferry.config.json, pass --dataverse <url>, or --emulator',
      exitCode: EXIT.usage,
    });
    report({ check: 'metadata', status: 'skip', detail: 'needs Dataverse (see above)' });
    return;
  }
  const url = config.dataverse?.replace(/\/+$/, '');
  const identities = config.identities ?? [];
  if (url && !isLoopbackUrl(url)) {
    if (identities.length === 0) {
      report({
        check: 'identity',
        status: 'warn',
        detail: 'no identities in the target; DefaultAzureCredential is used',
        fix: 'name the identities ferry writes as in the target’s identities',
      });
    }
    let signedIn = identities.length === 0;
    for (const identity of identities) {
      if (
        Object.values({ ...identity, s: identity.clientSecret, p: identity.certificatePassword }).includes(UNRESOLVED)
      ) {
        report({
          check: `identity ${identity.name}`,
          status: 'skip',
          detail: 'its secret could not be read (see keyvault)',
        });
        continue;
      }
      const getToken = createTokenProvider(url, { credential: credentialForIdentity(identity) })!;
      try {
        await getToken();
        signedIn = true;
        report({
          check: `identity ${identity.name}`,
          status: 'ok',
          detail: `${describeIdentity(identity)}: token for ${url}`,
        });
      } catch (error) {
        report({
          check: `identity ${identity.name}`,
          status: 'fail',
          detail: `${describeIdentity(identity)}: ${shortAuthReason(error)}`,
          fix: 'check the tenant, client id and secret/certificate, and that the app user exists in the environment',
          exitCode: EXIT.usage,
        });
      }
    }
    if (!signedIn) {
      report({ check: 'dataverse', status: 'skip', detail: `no identity could sign in to ${url}` });
      report({ check: 'metadata', status: 'skip', detail: 'needs Dataverse (see above)' });
      return;
    }
  } else {
    report({ check: 'identity', status: 'skip', detail: 'the emulator needs no token' });
  }
  let dataverse: OpenDataverse | undefined;
  let reached = false;
  try {
    dataverse = await openDataverse(config, { ...input.log, info: (m, f) => input.log.debug(m, f) });
    const client = new DataverseClient({
      url: dataverse.endpoint.url,
      ...(dataverse.endpoint.getToken ? { getToken: dataverse.endpoint.getToken } : {}),
      log: input.log,
      signal: input.signal,
      retry: { maxRetries: 1, maxThrottleRetries: 1 },
    });
    const who = await client.whoAmI();
    reached = true;
    report({
      check: 'dataverse',
      status: 'ok',
      detail: `WhoAmI at ${dataverse.endpoint.url}${dataverse.emulator ? ' (built-in emulator)' : ''}: user ${who.userId ?? '?'}, x-ms-dop-hint ${who.dopHint ?? 'not sent'}`,
    });
    await checkMetadata(config, client, report);
  } catch (error) {
    report({
      check: 'dataverse',
      status: 'fail',
      detail: describeError(error).split('\n')[0]!,
      fix: 'check the URL, the network, and that the identity is an application user with a security role',
      exitCode: isRetryable(error) ? EXIT.temporaryFailure : EXIT.usage,
    });
    if (!reached) report({ check: 'metadata', status: 'skip', detail: 'needs Dataverse (see above)' });
  } finally {
    await dataverse?.close();
  }
}

async function checkMetadata(
  config: FerryConfig,
  client: DataverseClient,
  report: (c: DoctorCheck) => void,
): Promise<void> {
  try {
    const drift = await compareWithService(config.metadata, client);
    if (drift.tables === 0) {
      report({
        check: 'metadata',
        status: 'warn',
        detail: `no snapshots in ${config.metadata}`,
        fix: 'pull them with `ferry metadata pull --table <name>`',
      });
    } else if (drift.changes.length === 0) {
      report({
        check: 'metadata',
        status: 'ok',
        detail: `${drift.tables} snapshot(s) in ${config.metadata} match the service`,
      });
    } else {
      const tables = [...new Set(drift.changes.map((c) => c.table))];
      report({
        check: 'metadata',
        status: 'warn',
        detail: `${drift.changes.length} difference(s) in ${tables.join(', ')}: ${drift.changes
          .slice(0, 3)
          .map((c) => c.text)
          .join('; ')}${drift.changes.length > 3 ? '; …' : ''}`,
        fix: `refresh with \`ferry metadata pull ${tables.map((t) => `--table ${t}`).join(' ')}\` and review the diff`,
      });
    }
  } catch (error) {
    report({
      check: 'metadata',
      status: 'fail',
      detail: describeError(error).split('\n')[0]!,
      fix: 'check --metadata (FERRY_METADATA, or the target’s metadata)',
      exitCode: EXIT.failed,
    });
  }
}

/** Lists the lake and writes a probe file; true when the lake works. */
async function checkLake(config: FerryConfig, report: (c: DoctorCheck) => void): Promise<boolean> {
  try {
    const lake = openLake(config);
    const entries = await lake.list('');
    const probe = `.ferry-doctor-${process.pid}.probe`;
    await lake.write(probe, 'ferry doctor write probe\n');
    await lake.delete(probe);
    report({
      check: 'lake',
      status: 'ok',
      detail: `${config.lake}: listed ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}; wrote and deleted a probe file`,
    });
    return true;
  } catch (error) {
    report({
      check: 'lake',
      status: 'fail',
      detail: describeError(error).split('\n')[0]!,
      fix: 'check --lake (FERRY_LAKE, or the target’s lake) and that the identity may write there (Storage Blob Data Contributor)',
      exitCode: EXIT.usage,
    });
    return false;
  }
}

/**
 * The folders the pipelines read (`read-parquet-deltas`, `read-synapse-link`): one that holds nothing is a warning,
 * since a run there reads nothing and succeeds — right for a source that has not delivered yet, a typo otherwise.
 */
async function checkInputFolders(
  config: FerryConfig,
  pipelinesDir: string,
  input: CommandInput,
  report: (c: DoctorCheck) => void,
): Promise<void> {
  let pipelines: PipelineDefinition[];
  try {
    pipelines = await pipelinesFor(pipelinesDir, undefined, input.log);
  } catch (error) {
    report({
      check: 'pipelines',
      status: 'fail',
      detail: describeError(error).split('\n')[0]!,
      fix: 'check --pipelines-dir (FERRY_PIPELINES, or the target’s pipelines)',
      exitCode: EXIT.usage,
    });
    return;
  }
  const folders = new Map<string, string[]>();
  for (const p of pipelines)
    for (const stage of p.stages)
      if (stage.kind.startsWith('read-') && 'folder' in stage && typeof stage.folder === 'string')
        folders.set(stage.folder, [...(folders.get(stage.folder) ?? []), p.name]);
  if (folders.size === 0) {
    report({ check: 'inputs', status: 'skip', detail: `no pipeline in ${pipelinesDir} reads the lake` });
    return;
  }
  const lake = openLake(config);
  const empty: string[] = [];
  for (const [folder, names] of folders) {
    try {
      if ((await lake.list(folder)).length === 0) empty.push(`\`${folder}\` (${names.join(', ')})`);
    } catch (error) {
      empty.push(`\`${folder}\` (${names.join(', ')}: ${describeError(error).split('\n')[0]})`);
    }
  }
  report(
    empty.length === 0
      ? {
          check: 'inputs',
          status: 'ok',
          detail: `the ${folders.size} folder(s) the pipelines read hold files`,
        }
      : {
          check: 'inputs',
          status: 'warn',
          detail: `${empty.length} of ${folders.size} folder(s) the pipelines read hold nothing in ${config.lake}: ${empty.join(', ')}`,
          fix: 'runs there read nothing; check --lake, or wait for the source to deliver',
        },
  );
}

/** Every Key Vault reference in a target as written, with where it is. */
function referencesIn(value: unknown, at: string): Array<{ at: string; reference: KeyVaultReference }> {
  const reference = keyVaultReferenceOf(value);
  if (reference) return [{ at, reference }];
  if (Array.isArray(value)) return value.flatMap((v, i) => referencesIn(v, `${at}[${i}]`));
  if (value && typeof value === 'object')
    return Object.entries(value).flatMap(([k, v]) => referencesIn(v, `${at}.${k}`));
  return [];
}
