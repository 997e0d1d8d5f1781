/**
 * The `close-messages` steps (sql-steps.ts) built once for every dialect: the statements are the same, the few
 * functions that differ (JSON text, the refusal's parsing, column types) come from `CloseSqlFunctions`.
 */
import type { SqlDialect } from './sql-dialect.js';
import {
  CLOSE_LIMIT_MESSAGE,
  CLOSE_REFUSAL_MESSAGE,
  type CloseMessagePlan,
  type SynapseStepPlan,
  type TableName,
} from './sql-steps.js';

/** What a dialect adds to `SqlDialect` for the close steps. */
export interface CloseSqlFunctions {
  /** A text as a JSON string literal (quoted, escaped). */
  jsonString(expr: string): string;
  /** An expression as an integer. */
  int(expr: string): string;
  /** Column types of the close-state table. */
  readonly types: { readonly bigint: string; readonly int: string; readonly text: string };
  /**
   * A source (joined after the FROM's tables: `CROSS JOIN (…) AS e` / `CROSS APPLY (…) AS e`) giving `e.code`,
   * `e.message` (the service's `{"error":{"code","message"}}` found in `error`, NULL when there is none) and
   * `e.status` (the three digits after `Response status code: '`, else NULL) of a failed Web activity's message.
   */
  refusal(error: string): string;
}

type ClosePlan = Extract<SynapseStepPlan, { kind: 'close-messages' }>;

/** The table holding what was read of each row's record. */
export function closeStateTable(plan: ClosePlan): TableName {
  const sink = plan.conversion.names.sink;
  return { schema: sink.schema, table: `${sink.table}_close` };
}

export function closeSteps(plan: ClosePlan, d: SqlDialect, f: CloseSqlFunctions): string[] {
  const { names } = plan.conversion;
  const c: CloseMessagePlan = plan.close;
  const q = (n: string) => d.ident(n);
  const t = (n: TableName) => (n.schema ? `${q(n.schema)}.${q(n.table)}` : q(n.table));
  const sink = t(names.sink);
  const work = t(names.work);
  const rows = t(names.rows);
  const state = t(closeStateTable(plan));
  const rejectsInsert = `INSERT INTO ${t(names.rejects)} (${['run_id', 'pipeline', 'stage', 'reason', 'message', 'key', 'source_file', 'row_number', 'row_json', 'created_at'].map(q).join(', ')})`;
  const reject = (reason: string, message: string) =>
    `SELECT ${d.param('run_id')}, ${d.param('pipeline')}, ${d.literal('upsert-dataverse')}, ${reason}, ${message}, w.${q('__key')}, w.${q('__source_file')}, w.${q('__row_number')}, ${d.rowJson('r')}, ${d.nowText}`;
  const byState = (value: (s: CloseMessagePlan['states'][number]) => string) =>
    `CASE ${f.int(`s.${q('statecode')}`)} ${c.states.map((st) => `WHEN ${Math.trunc(st.state)} THEN ${value(st)}`).join(' ')} END`;
  const wantedStatus = `COALESCE(${f.int(`s.${q('statuscode')}`)}, ${byState((st) => String(Math.trunc(st.defaultStatus)))})`;
  const closing = `${f.int(`s.${q('statecode')}`)} IN (${c.states.map((st) => Math.trunc(st.state)).join(', ')})`;
  const ranked = `(SELECT s.${q('__row_id')}, ROW_NUMBER() OVER (ORDER BY s.${q('__row_id')}) AS ${q('close_rank')} FROM ${sink} AS s WHERE ${closing})`;
  // In the wanted state and status already (a rerun): nothing to send.
  const done = `(k.${q('statecode')} = ${f.int(`s.${q('statecode')}`)} AND k.${q('statuscode')} = ${wantedStatus})`;
  const withState = `FROM ${state} AS k INNER JOIN ${sink} AS s ON s.${q('__row_id')} = k.${q('row_id')} INNER JOIN ${work} AS w ON w.${q('__row_id')} = k.${q('row_id')}`;
  switch (plan.phase) {
    case 'list': {
      const literal = (k: CloseMessagePlan['key'][number]) => {
        const value = d.textOf(`s.${q(k.attribute)}`);
        return k.text
          ? d.concat([
              d.literal(`${k.attribute} eq '`),
              `REPLACE(${value}, ${d.literal("'")}, ${d.literal("''")})`,
              d.literal("'"),
            ])
          : d.concat([d.literal(`${k.attribute} eq `), value]);
      };
      const filter = c.key.flatMap((k, i) => (i === 0 ? [literal(k)] : [d.literal(' and '), literal(k)]));
      return [
        ...d.selectInto(
          state,
          `CAST(NULL AS ${f.types.bigint}) AS ${q('row_id')}, CAST(NULL AS ${f.types.text}) AS ${q('record_id')}, CAST(NULL AS ${f.types.int}) AS ${q('statecode')}, CAST(NULL AS ${f.types.int}) AS ${q('statuscode')}`,
          'WHERE 1 = 0',
        ),
        `${rejectsInsert} ${reject(d.literal('synapse.close_limit'), d.literal(CLOSE_LIMIT_MESSAGE.replace('{limit}', String(c.limit))))} FROM ${ranked} AS k INNER JOIN ${work} AS w ON w.${q('__row_id')} = k.${q('__row_id')} INNER JOIN ${rows} AS r ON r.${q('__row_id')} = k.${q('__row_id')} WHERE k.${q('close_rank')} > ${Math.trunc(c.limit)}`,
        `SELECT k.${q('__row_id')} AS ${q('row_id')}, ${d.concat(filter)} AS ${q('key_filter')} FROM ${ranked} AS k INNER JOIN ${sink} AS s ON s.${q('__row_id')} = k.${q('__row_id')} WHERE k.${q('close_rank')} <= ${Math.trunc(c.limit)} ORDER BY k.${q('__row_id')}`,
      ];
    }
    case 'record-state':
      // A retried activity records the row again: the earlier record goes first.
      return [
        `DELETE FROM ${state} WHERE ${q('row_id')} = ${f.int(d.param('row_id'))}`,
        `INSERT INTO ${state} (${['row_id', 'record_id', 'statecode', 'statuscode'].map(q).join(', ')}) VALUES (${f.int(d.param('row_id'))}, ${d.param('record_id')}, ${f.int(d.param('statecode'))}, ${f.int(d.param('statuscode'))})`,
      ];
    case 'reopens':
      // Closed the other way (Won → Lost): an update to Open (statecode 0) is allowed; UpdateMultiple by id sends it.
      return [
        `SELECT k.${q('row_id')} AS ${q('row_id')}, ${d.concat([d.literal(`{"Targets":[{"@odata.type":"Microsoft.Dynamics.CRM.${c.table}","${c.primaryId}":"`), `k.${q('record_id')}`, d.literal('","statecode":0}]}')])} AS ${q('body')} ${withState} WHERE k.${q('statecode')} <> 0 AND NOT ${done} ORDER BY k.${q('row_id')}`,
      ];
    case 'sends': {
      const subject = f.jsonString(d.concat([byState((st) => d.literal(st.subjectPrefix)), `w.${q('__key')}`]));
      const body = d.concat([
        d.literal(`{"${c.parameter}":{"@odata.type":"Microsoft.Dynamics.CRM.${c.activity}","subject":`),
        subject,
        d.literal(`,"${c.primaryId}@odata.bind":"/${c.entitySet}(`),
        `k.${q('record_id')}`,
        d.literal(')"},"Status":'),
        d.textOf(wantedStatus),
        d.literal('}'),
      ]);
      // A row whose reopen the service refused in this run is a reject already: no message for it.
      return [
        `SELECT k.${q('row_id')} AS ${q('row_id')}, ${byState((st) => d.literal(st.action))} AS ${q('action')}, ${body} AS ${q('body')} ${withState} WHERE NOT ${done} AND NOT EXISTS (SELECT 1 FROM ${t(names.rejects)} AS j WHERE j.${q('run_id')} = ${d.param('run_id')} AND j.${q('stage')} = ${d.literal('upsert-dataverse')} AND j.${q('key')} = w.${q('__key')}) ORDER BY k.${q('row_id')}`,
      ];
    }
    case 'refusal': {
      const reason = `CASE WHEN COALESCE(e.${q('code')}, ${d.literal('')}) <> ${d.literal('')} THEN ${d.concat([d.literal('dataverse.'), `LOWER(e.${q('code')})`])} WHEN e.${q('status')} IS NOT NULL THEN ${d.concat([d.literal('dataverse.http_'), `e.${q('status')}`])} ELSE ${d.literal('synapse.close_refused')} END`;
      const message = d.concat([
        d.literal(CLOSE_REFUSAL_MESSAGE[0]),
        `w.${q('__key')}`,
        d.literal(CLOSE_REFUSAL_MESSAGE[1]),
        `COALESCE(e.${q('message')}, ${d.param('error')})`,
        d.literal(CLOSE_REFUSAL_MESSAGE[2]),
      ]);
      return [
        `${rejectsInsert} ${reject(reason, message)} FROM ${work} AS w INNER JOIN ${rows} AS r ON r.${q('__row_id')} = w.${q('__row_id')} ${f.refusal(d.param('error'))} WHERE w.${q('__row_id')} = ${f.int(d.param('row_id'))}`,
      ];
    }
  }
}
