import { UsageError } from '../../core/errors.js';
import { bigintSafe } from '../../core/log.js';
import { csvRecord } from '../../report/csv.js';
import type { Command } from '../command.js';
import { openState } from '../services.js';

/** `ferry rejects --run <id>`: the rows a run could not deliver, with why. */
export const rejectsCommand: Command = {
  name: 'rejects',
  summary: 'show the rejected rows of a run (or the open rejects of a pipeline)',
  usage: 'rejects (--run <id> | --pipeline <name>) [--reason <code>] [--format text|json|csv] [--json]',
  options: {
    run: {
      type: 'string',
      valueName: '<id>',
      defaultText: 'this or --pipeline is required',
      description: 'the rejects of this run (see ferry runs)',
    },
    pipeline: {
      type: 'string',
      valueName: '<name>',
      defaultText: 'this or --run is required',
      description: 'the open rejects of this pipeline',
    },
    reason: {
      type: 'string',
      valueName: '<code>',
      defaultText: 'every reason',
      description: 'only this reason, e.g. string.too_long',
    },
    limit: { type: 'string', valueName: '<n>', check: 'whole-number', defaultText: '1000', description: 'how many' },
    format: {
      type: 'string',
      valueName: '<text|json|csv>',
      defaultText: 'text',
      description: 'csv for data owners (one row per reject, RFC 4180 quoting)',
    },
  },
  examples: [
    { text: 'Every rejected row of a run, with reason, file and row:', command: 'ferry rejects --run <run-id>' },
    {
      text: 'Open rejects of a pipeline for one reason:',
      command: 'ferry rejects --pipeline accounts-inbound --reason choice.unknown_label',
    },
  ],
  async run(input) {
    const runId = typeof input.values.run === 'string' ? input.values.run : undefined;
    const pipeline = typeof input.values.pipeline === 'string' ? input.values.pipeline : undefined;
    if (!runId && !pipeline)
      throw new UsageError('Say which rejects: --run <id> (see `ferry runs`) or --pipeline <name>.');
    const format = typeof input.values.format === 'string' ? input.values.format : input.json ? 'json' : 'text';
    if (!REJECT_FORMATS.includes(format as (typeof REJECT_FORMATS)[number]))
      throw new UsageError(`--format \`${format}\` is not known; use ${REJECT_FORMATS.join(', ')}.`);
    const state = openState(input.config);
    try {
      if (runId && !state.getRun(runId))
        throw new UsageError(`Run \`${runId}\` is not in the state store; list runs with \`ferry runs\`.`);
      const rejects = state.listRejects({
        ...(runId ? { runId } : { pipeline: pipeline!, status: 'open' as const }),
        ...(typeof input.values.reason === 'string' ? { reason: input.values.reason } : {}),
        limit: Number(input.values.limit ?? 1000),
      });
      if (format === 'csv') {
        // For data owners: one row per rejected record, opened in a spreadsheet.
        input.print(csvRecord(REJECT_CSV_COLUMNS));
        for (const r of rejects)
          input.print(
            csvRecord([
              r.pipeline,
              r.runId,
              r.reason,
              r.key,
              r.sourceFile,
              r.rowNumber,
              r.message,
              r.status,
              r.createdAt,
              r.row === undefined ? null : JSON.stringify(r.row, bigintSafe),
            ]),
          );
        return 0;
      }
      for (const r of rejects) {
        if (format === 'json') {
          input.print(JSON.stringify(r, bigintSafe));
        } else {
          const where = r.sourceFile ? ` ${r.sourceFile}${r.rowNumber ? `:${r.rowNumber}` : ''}` : '';
          input.print(`#${r.id} [${r.reason}] ${r.status}${where}${r.key ? ` key ${r.key}` : ''}\n    ${r.message}`);
        }
      }
      if (format === 'text') input.print(`${rejects.length} reject(s).`);
      return 0;
    } finally {
      state.close();
    }
  },
};

const REJECT_FORMATS = ['text', 'json', 'csv'] as const;
const REJECT_CSV_COLUMNS = [
  'pipeline',
  'run_id',
  'reason',
  'key',
  'source_file',
  'row_number',
  'message',
  'status',
  'created_at',
  'row',
];
