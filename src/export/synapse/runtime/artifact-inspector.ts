import { COPY_KEYS, SINK_KEYS } from './activities/copy-activity.js';
import { DATA_TYPE_PROPERTIES } from './activities/data-activities.js';
import { DELETE_STORE_SETTINGS, DELETE_TYPE_PROPERTIES } from './activities/delete-activity.js';
import {
  DATASET_KEYS,
  DATASET_TYPE_PROPERTIES,
  LINKED_SERVICE_KEYS,
  LINKED_SERVICE_TYPES,
} from './activities/runtime-services.js';
import { SOURCE_KEYS, STORE_SETTINGS_KEYS } from './activities/tabular-source.js';
import { WEB_AUTHENTICATION_KEYS, WEB_TYPE_PROPERTIES } from './activities/web-activity.js';
import type { ArtifactStore } from './artifact-store.js';
import { type StepRenderings, stepIdOf, tsqlMarkers } from './connectors/sql-engine.js';
import { isExpressionObject } from './expression/dynamic-value.js';
import { KNOWN_FUNCTIONS } from './expression/expression-evaluator.js';
import { type ExpressionNode, parseExpression } from './expression/expression-parser.js';
import { isObject, type JsonObject } from './expression/json-value.js';
import { CONTROL_TYPES, PIPELINE_KEYS, POLICY_KEYS, TYPE_PROPERTIES } from './pipeline-engine.js';
import { IGNORED_ACTIVITY_KEYS } from './property-check.js';
import { RECURRENCE_KEYS } from './triggers/recurrence.js';
import { TRIGGER_KEYS, TRIGGER_TYPE_PROPERTIES } from './triggers/trigger-scheduler.js';

/** Something in the artifacts the runtime cannot execute as written. */
export interface Finding {
  /**
   * `activity-type`, `property`, `function`, `expression-syntax`, `linked-service-type`, `trigger-type`: the runtime
   * does not implement it (an error naming it at run time). `sql-without-duckdb-rendering`: a T-SQL statement with
   * no plan step id, which the DuckDB engine refuses until the export carries step ids (issue 11).
   */
  readonly kind:
    | 'activity-type'
    | 'property'
    | 'function'
    | 'expression-syntax'
    | 'linked-service-type'
    | 'trigger-type'
    | 'sql-without-duckdb-rendering';
  /** `pipeline pl_x / activity Y / typeProperties.sink.foo`. */
  readonly where: string;
  readonly detail: string;
}

const DATA_TYPES = ['Lookup', 'Script', 'GetMetadata', 'Copy', 'Delete', 'WebActivity'];
const TRIGGER_TYPES = ['ScheduleTrigger', 'TumblingWindowTrigger'];

/**
 * Walks every artifact without running it and lists what the runtime would refuse: activity types, properties and
 * expression functions it does not implement, and SQL it cannot run on DuckDB. Running the artifacts fails on the
 * same things with the same names; this lists them all at once.
 */
export function inspectArtifacts(store: ArtifactStore, renderings?: StepRenderings): Finding[] {
  const findings: Finding[] = [];
  const add = (kind: Finding['kind'], where: string, detail: string) => findings.push({ kind, where, detail });
  const keys = (object: unknown, known: readonly string[], where: string) => {
    if (!isObject(object)) return;
    for (const k of Object.keys(object)) if (!known.includes(k)) add('property', where, `\`${k}\``);
  };
  const expressions = (value: unknown, where: string) => {
    for (const text of expressionTexts(value)) {
      for (const body of bodies(text)) {
        try {
          for (const fn of functionNames(parseExpression(body)))
            if (!KNOWN_FUNCTIONS.includes(fn)) add('function', where, `\`${fn}()\``);
        } catch (error) {
          add('expression-syntax', where, (error as Error).message);
        }
      }
    }
  };
  const sql = (value: unknown, where: string) => {
    if (value === undefined) return;
    const text = isExpressionObject(value) ? value.value : typeof value === 'string' ? value : undefined;
    if (text === undefined) return;
    const markers = tsqlMarkers(text);
    const id = stepIdOf(text);
    if (markers.length && id === undefined) add('sql-without-duckdb-rendering', where, markers.join(', '));
    // With the renderings at hand, a step id they do not know is refused at run time as well.
    if (id !== undefined && renderings && renderings(id) === undefined)
      add('sql-without-duckdb-rendering', where, `step \`${id}\` has no DuckDB rendering`);
  };

  for (const name of store.names('linkedService')) {
    const ls = store.get('linkedService', name).properties;
    if (!LINKED_SERVICE_TYPES.includes(String(ls.type)))
      add('linked-service-type', `linkedService ${name}`, `\`${ls.type}\``);
    keys(ls, LINKED_SERVICE_KEYS, `linkedService ${name}`);
    if (ls.connectVia !== undefined) add('property', `linkedService ${name}`, '`connectVia`');
  }
  for (const name of store.names('dataset')) {
    const ds = store.get('dataset', name).properties;
    keys(ds, DATASET_KEYS, `dataset ${name}`);
    const known = DATASET_TYPE_PROPERTIES[String(ds.type)];
    if (known) keys(ds.typeProperties, known, `dataset ${name} / typeProperties`);
    else add('property', `dataset ${name}`, `dataset type \`${ds.type}\``);
  }
  for (const name of store.names('pipeline')) {
    const p = store.get('pipeline', name).properties;
    keys(p, PIPELINE_KEYS, `pipeline ${name}`);
    const visit = (activities: unknown, path: string) => {
      if (!Array.isArray(activities)) return;
      for (const a of activities) {
        if (!isObject(a)) continue;
        const where = `pipeline ${name} / ${path}${a.name}`;
        const type = String(a.type);
        keys(a, IGNORED_ACTIVITY_KEYS, where);
        keys(a.policy, POLICY_KEYS, `${where} / policy`);
        const tp: JsonObject = isObject(a.typeProperties) ? a.typeProperties : {};
        expressions(tp, where);
        expressions(a.inputs, where);
        expressions(a.outputs, where);
        if ((CONTROL_TYPES as readonly string[]).includes(type)) {
          keys(tp, TYPE_PROPERTIES[type]!, `${where} / typeProperties`);
          for (const branch of ['ifTrueActivities', 'ifFalseActivities', 'activities', 'defaultActivities'])
            visit(tp[branch], `${path}${a.name} / `);
          if (Array.isArray(tp.cases))
            for (const c of tp.cases) if (isObject(c)) visit(c.activities, `${path}${a.name} / `);
        } else if (DATA_TYPES.includes(type)) {
          if (type === 'Copy') {
            keys(tp, COPY_KEYS, `${where} / typeProperties`);
            const source = isObject(tp.source) ? tp.source : {};
            const sink = isObject(tp.sink) ? tp.sink : {};
            const sourceKeys = SOURCE_KEYS[String(source.type)];
            if (sourceKeys) keys(source, sourceKeys, `${where} / source`);
            else add('property', `${where} / source`, `source type \`${source.type}\``);
            keys(source.storeSettings, STORE_SETTINGS_KEYS, `${where} / source.storeSettings`);
            const sinkKeys = SINK_KEYS[String(sink.type)];
            if (sinkKeys) keys(sink, sinkKeys, `${where} / sink`);
            else add('property', `${where} / sink`, `sink type \`${sink.type}\``);
            sql(source.sqlReaderQuery, `${where} / source.sqlReaderQuery`);
            sql(sink.preCopyScript, `${where} / sink.preCopyScript`);
          } else if (type === 'WebActivity') {
            keys(tp, WEB_TYPE_PROPERTIES, `${where} / typeProperties`);
            if (isObject(tp.authentication)) {
              const authKeys = WEB_AUTHENTICATION_KEYS[String(tp.authentication.type)];
              if (authKeys) keys(tp.authentication, authKeys, `${where} / authentication`);
              else add('property', `${where} / authentication`, `authentication type \`${tp.authentication.type}\``);
            }
          } else if (type === 'Delete') {
            keys(tp, DELETE_TYPE_PROPERTIES, `${where} / typeProperties`);
            keys(tp.storeSettings, DELETE_STORE_SETTINGS, `${where} / storeSettings`);
          } else {
            keys(tp, DATA_TYPE_PROPERTIES[type]!, `${where} / typeProperties`);
            if (type === 'Lookup' && isObject(tp.source)) {
              const sourceKeys = SOURCE_KEYS[String(tp.source.type)];
              if (sourceKeys) keys(tp.source, sourceKeys, `${where} / source`);
              else add('property', `${where} / source`, `source type \`${tp.source.type}\``);
              sql(tp.source.sqlReaderQuery, `${where} / source.sqlReaderQuery`);
            }
            if (type === 'Script' && Array.isArray(tp.scripts)) {
              for (const [i, s] of tp.scripts.entries()) if (isObject(s)) sql(s.text, `${where} / block ${i + 1}`);
            }
          }
        } else {
          add('activity-type', where, `\`${type}\``);
        }
      }
    };
    visit(p.activities, '');
  }
  for (const name of store.names('trigger')) {
    const t = store.get('trigger', name).properties;
    if (!TRIGGER_TYPES.includes(String(t.type))) add('trigger-type', `trigger ${name}`, `\`${t.type}\``);
    keys(t, TRIGGER_KEYS, `trigger ${name}`);
    const known = TRIGGER_TYPE_PROPERTIES[String(t.type)];
    if (known) keys(t.typeProperties, known, `trigger ${name} / typeProperties`);
    if (isObject(t.typeProperties) && t.type === 'ScheduleTrigger')
      keys(t.typeProperties.recurrence, RECURRENCE_KEYS, `trigger ${name} / recurrence`);
    expressions(t.pipelines ?? t.pipeline, `trigger ${name}`);
  }
  for (const name of store.names('dataset'))
    expressions(store.get('dataset', name).properties.typeProperties, `dataset ${name}`);
  return findings;
}

function expressionTexts(value: unknown): string[] {
  if (isExpressionObject(value)) return [value.value];
  if (typeof value === 'string') return value.startsWith('@') || value.includes('@{') ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(expressionTexts);
  if (isObject(value)) return Object.values(value).flatMap(expressionTexts);
  return [];
}

/** Expression bodies of a string: the whole value after `@`, or each `@{…}`. */
function bodies(text: string): string[] {
  if (text.startsWith('@@')) return [];
  if (text.startsWith('@') && !text.startsWith('@{')) return [text.slice(1)];
  const out: string[] = [];
  for (let i = text.indexOf('@{'); i >= 0; i = text.indexOf('@{', i + 2)) {
    if (i > 0 && text[i - 1] === '@') continue;
    let depth = 0;
    let inString = false;
    for (let j = i + 2; j < text.length; j++) {
      const c = text[j];
      if (c === "'") inString = !inString;
      else if (!inString && c === '{') depth++;
      else if (!inString && c === '}') {
        if (depth === 0) {
          out.push(text.slice(i + 2, j));
          break;
        }
        depth--;
      }
    }
  }
  return out;
}

function functionNames(node: ExpressionNode): string[] {
  if (node.kind === 'literal') return [];
  if (node.kind === 'call') return [node.name, ...node.args.flatMap(functionNames)];
  return [...functionNames(node.target), ...(typeof node.key === 'string' ? [] : functionNames(node.key))];
}
