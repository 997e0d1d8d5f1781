import { createRequire } from 'node:module';
import path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import AjvDraft04 from 'ajv-draft-04';
import type { ArtifactKind, SynapseArtifact } from './synapse-artifacts.js';

const ARM = 'https://schema.management.azure.com/schemas/2018-06-01/Microsoft.DataFactory.json';
const RESOURCE: Record<ArtifactKind, { def: string; type: string }> = {
  linkedService: { def: 'factories_linkedservices', type: 'Microsoft.DataFactory/factories/linkedservices' },
  dataset: { def: 'factories_datasets', type: 'Microsoft.DataFactory/factories/datasets' },
  pipeline: { def: 'factories_pipelines', type: 'Microsoft.DataFactory/factories/pipelines' },
  trigger: { def: 'factories_triggers', type: 'Microsoft.DataFactory/factories/triggers' },
};
/** The `oneOf` unions whose branch is chosen by `type`: errors are reported for the matching branch only. */
const UNIONS: Record<string, string> = {
  linkedService: 'LinkedService',
  dataset: 'Dataset',
  trigger: 'Trigger',
  activity: 'Activity',
  source: 'CopySource',
  sink: 'CopySink',
};

interface ArmSchema {
  readonly definitions: Record<string, { oneOf?: { properties?: { type?: { enum?: string[] } } }[] }>;
}

/** The few Ajv methods used; the draft-04 build's default export is the Ajv class. */
interface AjvInstance {
  addSchema(schema: unknown): unknown;
  getSchema(ref: string): ValidateFunction | undefined;
  compile(schema: unknown): ValidateFunction;
}
type AjvConstructor = new (options: Record<string, unknown>) => AjvInstance;

/** One readable problem with an artifact. */
export interface ValidationProblem {
  readonly artifact: string;
  readonly path: string;
  readonly message: string;
}

/** Default location of the ARM schema files: `synapse/schemas/` in the project, overridable by `FERRY_SCHEMAS`. */
export function defaultSchemaDir(): string {
  return process.env.FERRY_SCHEMAS ?? path.resolve('synapse', 'schemas');
}

/**
 * Validates Synapse artifacts against the Data Factory ARM schema (draft-04) with readable errors: a union
 * (`Activity`, `CopySource`, `Dataset`...) is checked against the branch named by the value's `type` first, so
 * one wrong field gives one message, not one per alternative.
 */
export class ArtifactValidator {
  #ajv: AjvInstance;
  #cache = new Map<string, ValidateFunction>();
  #schema: ArmSchema;

  private constructor(ajv: AjvInstance, schema: ArmSchema) {
    this.#ajv = ajv;
    this.#schema = schema;
  }

  /** Loads `Microsoft.DataFactory-2018-06-01.json` and `common-definitions.json` from a folder. */
  static load(schemaDir = defaultSchemaDir()): ArtifactValidator {
    const require = createRequire(import.meta.url);
    const arm = require(path.join(schemaDir, 'Microsoft.DataFactory-2018-06-01.json'));
    const common = require(path.join(schemaDir, 'common-definitions.json'));
    const ajv = new (AjvDraft04 as unknown as AjvConstructor)({
      strict: false,
      allErrors: true,
      validateFormats: false,
      verbose: true,
    });
    ajv.addSchema(common);
    ajv.addSchema(arm);
    return new ArtifactValidator(ajv, arm);
  }

  #get(ref: string): ValidateFunction {
    const hit = this.#cache.get(ref);
    if (hit) return hit;
    const v = this.#ajv.getSchema(ref) ?? this.#ajv.compile({ $ref: ref });
    this.#cache.set(ref, v);
    return v;
  }

  /** Problems of one artifact; empty when it is valid. */
  validate(artifact: SynapseArtifact): ValidationProblem[] {
    const r = RESOURCE[artifact.kind];
    const envelope = { name: artifact.name, apiVersion: '2018-06-01', type: r.type, properties: artifact.properties };
    const whole = this.#get(`${ARM}#/resourceDefinitions/${r.def}`);
    if (whole(envelope)) return [];
    const label = `${artifact.kind} \`${artifact.name}\``;
    const problems = this.#dispatched(artifact);
    if (problems.length > 0) return problems.map((p) => ({ artifact: label, ...p }));
    return summarise(whole.errors ?? []).map((p) => ({ artifact: label, ...p }));
  }

  /** Problems of many artifacts. */
  validateAll(artifacts: readonly SynapseArtifact[]): ValidationProblem[] {
    return artifacts.flatMap((a) => this.validate(a));
  }

  #branch(union: string, type: unknown): { ref: string } | { known: string[] } {
    const oneOf = this.#schema.definitions[union]?.oneOf ?? [];
    const i = oneOf.findIndex((b) => b.properties?.type?.enum?.includes(String(type)));
    if (i < 0) return { known: oneOf.flatMap((b) => b.properties?.type?.enum ?? []).sort() };
    return { ref: `${ARM}#/definitions/${union}/oneOf/${i}` };
  }

  #check(union: string, value: unknown, at: string): { path: string; message: string }[] {
    const type = (value as { type?: unknown } | null)?.type;
    const b = this.#branch(union, type);
    if ('known' in b) {
      return [
        {
          path: `${at}/type`,
          message: `\`${String(type)}\` is not a known ${union} type; known types include ${b.known.slice(0, 12).join(', ')}…`,
        },
      ];
    }
    const v = this.#get(b.ref);
    if (v(value)) return [];
    return summarise(v.errors ?? []).map((e) => ({
      path: `${at}${e.path === '/' ? '' : e.path}`,
      message: `(${String(type)}) ${e.message}`,
    }));
  }

  #dispatched(a: SynapseArtifact): { path: string; message: string }[] {
    const p = a.properties as Record<string, unknown>;
    if (a.kind !== 'pipeline') return this.#check(UNIONS[a.kind], p, '/properties');
    const out: { path: string; message: string }[] = [];
    // Activities inside If branches are dispatched by their own type too, so a problem is reported where it is.
    const visit = (list: unknown, prefix: string) => {
      const activities = Array.isArray(list) ? (list as Record<string, unknown>[]) : [];
      activities.forEach((act, i) => {
        const at = `${prefix}/${i}(${String(act.name)})`;
        const tp = act.typeProperties as Record<string, unknown> | undefined;
        const before = out.length;
        if (act.type === 'Copy' && tp) {
          if (tp.source) out.push(...this.#check(UNIONS.source, tp.source, `${at}/typeProperties/source`));
          if (tp.sink) out.push(...this.#check(UNIONS.sink, tp.sink, `${at}/typeProperties/sink`));
        }
        if (act.type === 'IfCondition' && tp) {
          visit(tp.ifTrueActivities, `${at}/typeProperties/ifTrueActivities`);
          visit(tp.ifFalseActivities, `${at}/typeProperties/ifFalseActivities`);
        }
        if (out.length === before) out.push(...this.#check(UNIONS.activity, act, at));
      });
    };
    visit(p.activities, '/properties/activities');
    return out;
  }
}

/** Keeps the deepest, de-duplicated errors and says what value was wrong. */
function summarise(errors: readonly ErrorObject[]): { path: string; message: string }[] {
  // Each typed field also accepts an ARM expression (`[...]`); errors from that alternative are noise.
  const relevant = errors.filter(
    (e) =>
      e.keyword !== 'oneOf' &&
      e.keyword !== 'anyOf' &&
      !e.schemaPath.includes('expression') &&
      !e.schemaPath.includes('common/definitions'),
  );
  const seen = new Set<string>();
  const out: { path: string; message: string }[] = [];
  for (const e of relevant.length ? relevant : errors) {
    const detail =
      e.keyword === 'enum'
        ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => `\`${String(v)}\``).join(', ')}`
        : e.keyword === 'required'
          ? `is missing required property \`${(e.params as { missingProperty: string }).missingProperty}\``
          : e.keyword === 'additionalProperties'
            ? `has unknown property \`${(e.params as { additionalProperty: string }).additionalProperty}\``
            : (e.message ?? e.keyword);
    const key = `${e.instancePath}|${detail}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({
      path: e.instancePath || '/',
      message: `${detail}${e.keyword === 'enum' || e.keyword === 'type' ? ` (got \`${JSON.stringify(e.data)}\`)` : ''}`,
    });
  }
  return out.slice(0, 10);
}

/** One line per problem, for the CLI and test failures. */
export function formatProblems(problems: readonly ValidationProblem[]): string {
  return problems.map((p) => `${p.artifact}: ${p.path} ${p.message}`).join('\n');
}
