import { UsageError } from '../../core/errors.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const UPSERT_DATAVERSE = 'upsert-dataverse' as const;

/** How rows are sent: `upsert-multiple`, `batch`, or `auto` (probe bulk support, fall back to `$batch`). */
export const UPSERT_WRITE_MODES = ['upsert-multiple', 'batch', 'auto'] as const;
/** One of {@link UPSERT_WRITE_MODES} (the bulk writer's write modes). */
export type UpsertWriteMode = (typeof UPSERT_WRITE_MODES)[number];

/** Custom logic the writes bypass (the Web API's bypass headers; see the Dataverse client). */
export interface UpsertBypass {
  /** `MSCRM.BypassBusinessLogicExecution`: `CustomSync`, `CustomAsync` or both. Needs `prvBypassCustomBusinessLogic`. */
  readonly businessLogic?: 'CustomSync' | 'CustomAsync' | 'CustomSync,CustomAsync';
  /** `MSCRM.BypassBusinessLogicExecutionStepIds`: plug-in step GUIDs to skip. */
  readonly stepIds?: readonly string[];
  /** `MSCRM.SuppressCallbackRegistrationExpanderJob: true`: do not trigger Power Automate flows. */
  readonly suppressFlows?: boolean;
}
const BUSINESS_LOGIC = ['CustomSync', 'CustomAsync', 'CustomSync,CustomAsync'] as const;

export interface UpsertDataverseSpec extends StageSpecBase {
  readonly kind: typeof UPSERT_DATAVERSE;
  /** Logical name of the target table: the convert stage's table (its snapshot is `<config.metadata>/<table>.json`). */
  readonly table: string;
  /** Rows per request. Default `100`. */
  readonly batchSize: number;
  /** Cap on parallel requests; the service's `x-ms-dop-hint` and the adaptive ceiling usually decide first. Default `32`. */
  readonly maxConcurrency: number;
  /** `upsert-multiple`, `batch`, or `auto` (probe bulk support, fall back to `$batch`). Default `auto`. */
  readonly mode: UpsertWriteMode;
  readonly bypass?: UpsertBypass;
  /** Client timeout per request. Default `120000` ms. */
  readonly timeoutMs: number;
}

/**
 * Writes the `converted` rows to Dataverse by alternate key (UpsertMultiple, or `$batch` where bulk is not
 * supported) and records the accepted rows in `upserted`.
 *
 * @example
 * upsertDataverse({ table: 'account', batchSize: 100, bypass: { businessLogic: 'CustomSync' } })
 */
export function upsertDataverse(options: {
  table: string;
  batchSize?: number;
  maxConcurrency?: number;
  mode?: UpsertWriteMode;
  bypass?: UpsertBypass;
  timeoutMs?: number;
}): UpsertDataverseSpec {
  const mode = options.mode ?? 'auto';
  if (!(UPSERT_WRITE_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`upsert-dataverse mode \`${mode}\` is not known; use ${UPSERT_WRITE_MODES.join(', ')}.`);
  }
  const batchSize = options.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1000) {
    throw new UsageError(`upsert-dataverse batchSize \`${batchSize}\` must be a whole number from 1 to 1000.`);
  }
  const maxConcurrency = options.maxConcurrency ?? 32;
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1) {
    throw new UsageError(`upsert-dataverse maxConcurrency \`${maxConcurrency}\` must be a whole number of at least 1.`);
  }
  return {
    kind: UPSERT_DATAVERSE,
    table: options.table,
    batchSize,
    maxConcurrency,
    mode,
    timeoutMs: options.timeoutMs ?? 120_000,
    ...(options.bypass ? { bypass: { ...options.bypass } } : {}),
  };
}

/** What `upsert-dataverse` declares to the registries. */
export const upsertDataverseKind: StageKindSpec<UpsertDataverseSpec> = {
  kind: UPSERT_DATAVERSE,
  parse(spec) {
    const f = new SpecFields(spec);
    const raw = f.optObject('bypass');
    let bypass: UpsertBypass | undefined;
    if (raw) {
      const b = new SpecFields({ kind: UPSERT_DATAVERSE, ...raw });
      const suppressFlows = raw.suppressFlows;
      if (suppressFlows !== undefined && typeof suppressFlows !== 'boolean')
        throw new UsageError(
          `Stage \`${UPSERT_DATAVERSE}\` has \`bypass.suppressFlows\` = \`${JSON.stringify(suppressFlows)}\`; it must be true or false.`,
        );
      const businessLogic = b.optOneOf('businessLogic', BUSINESS_LOGIC);
      const stepIds = b.optStrings('stepIds');
      bypass = {
        ...(businessLogic === undefined ? {} : { businessLogic }),
        ...(stepIds === undefined ? {} : { stepIds }),
        ...(suppressFlows === undefined ? {} : { suppressFlows }),
      };
    }
    return upsertDataverse({
      table: f.string('table'),
      batchSize: f.optNumber('batchSize'),
      maxConcurrency: f.optNumber('maxConcurrency'),
      mode: f.optOneOf('mode', UPSERT_WRITE_MODES),
      bypass,
      timeoutMs: f.optNumber('timeoutMs'),
    });
  },
  stagedColumns: () => [],
  synapseRole: 'upsert',
};
