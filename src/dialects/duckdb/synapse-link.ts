import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { CdmAttribute } from '../../connectors/synapse-link/cdm-model.js';
import { csvRecords, lineCount, lineOfRecord } from '../../connectors/synapse-link/csv-locator.js';
import { DECIMAL_TYPE, type DeltaSnapshot } from '../../connectors/synapse-link/delta-log.js';
import { OPTION_SET_FILES } from '../../connectors/synapse-link/option-set-labels.js';
import { FerryError } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import { lakeJoin } from '../../core/lake.js';
import type { StagingEngine } from '../../core/staging.js';
import { duckIdent, duckLiteral } from './driver.js';

/*
 * Reading Synapse Link exports into DuckDB staging: the CSV folders (typed per model.json), the live files of a
 * Delta snapshot, and the choice-label CSVs. The format logic (model.json, the Delta log, folder planning, CSV
 * record checks) lives in `src/connectors/synapse-link/`; this file is the SQL.
 */

/** One folder's CSV files of one table, with the column list of that folder's own `model.json`. */
export interface CsvFolderInput {
  /** Folder name (timestamp folder, or `root` for the non-incremental layout); stored in `__folder`. */
  readonly folder: string;
  readonly attributes: readonly CdmAttribute[];
  /** Lake paths of the table's CSV files in this folder. */
  readonly files: readonly string[];
}

/**
 * Stages one table's CSVs from several folders into a typed DuckDB table, set-based (`read_csv`, all VARCHAR,
 * then typed in SQL). `columns` is the union of all folders' attributes: a folder whose `model.json` predates an
 * added column gets NULL there. Fails (FerryError naming file and line) on a row wider than its folder's schema,
 * an unterminated quote, a file cut short, or a value that does not parse as its column's type.
 */
export class CsvFolderReader {
  #staging: StagingEngine;
  #lake: Lake;
  #fileIds = new Map<string, { id: number; folder: string }>();

  /** The view over a staged table: typed columns plus `__folder` and `__source_file`. */
  static viewSql(target: string): string {
    return `SELECT t.* EXCLUDE (__file_id, __bad), f.__folder, f.__source_file FROM ${duckIdent(target)} t LEFT JOIN ${duckIdent(`${target}__files`)} f ON t.__file_id = f.__file_id`;
  }

  constructor(staging: StagingEngine, lake: Lake) {
    this.#staging = staging;
    this.#lake = lake;
  }

  /**
   * Creates `target` with the union schema and loads every folder; returns the number of rows read. Rows carry a
   * `__file_id` (USMALLINT, in folder then file order) instead of two path strings per row — that saves ~100 MB per
   * million rows; `<target>__files` maps it to `__folder` and `__source_file`, and {@link viewSql} joins them back.
   */
  async stage(target: string, columns: readonly CdmAttribute[], folders: readonly CsvFolderInput[]): Promise<number> {
    const typed = columns.map((a) => typedColumn(a));
    const defs = typed.map((t) => `${duckIdent(t.name)} ${t.sqlType}`);
    await this.#staging.run(
      `CREATE OR REPLACE TABLE ${duckIdent(target)} (${[...defs, '__file_id USMALLINT', '__bad VARCHAR'].join(', ')})`,
    );
    this.#fileIds = new Map();
    for (const folder of folders)
      for (const f of folder.files) this.#fileIds.set(f, { id: this.#fileIds.size, folder: folder.folder });
    if (this.#fileIds.size > 65_535) {
      throw new FerryError(
        'synapse_link.too_many_files',
        `Window has ${this.#fileIds.size} CSV files for \`${target}\`; limit the window with maxFolders.`,
      );
    }
    const rows = [...this.#fileIds].map(([f, v]) => `(${v.id}, ${duckLiteral(v.folder)}, ${duckLiteral(f)})`);
    await this.#staging.run(
      `CREATE OR REPLACE TABLE ${duckIdent(`${target}__files`)} (__file_id USMALLINT, __folder VARCHAR, __source_file VARCHAR)`,
    );
    if (rows.length) await this.#staging.run(`INSERT INTO ${duckIdent(`${target}__files`)} VALUES ${rows.join(', ')}`);
    let total = 0;
    // Folders with the same column list are read by one read_csv, so DuckDB reads their files side by side.
    const groups = new Map<string, CsvFolderInput[]>();
    for (const folder of folders) {
      if (folder.files.length === 0) continue;
      const key = JSON.stringify(folder.attributes.map((a) => [a.name, a.dataType, a.precision, a.scale]));
      groups.set(key, [...(groups.get(key) ?? []), folder]);
    }
    for (const group of groups.values()) total += await this.#stageGroup(target, group);
    return total;
  }

  async #stageGroup(target: string, group: readonly CsvFolderInput[]): Promise<number> {
    const attributes = group[0]!.attributes;
    const locals = new Map<string, { file: string; folder: string }>();
    for (const input of group) {
      for (const f of input.files) locals.set(await this.#lake.toLocalPath(f), { file: f, folder: input.folder });
    }
    // The completeness scan (JS, I/O bound) runs while DuckDB reads the same files on its own threads.
    const complete = Promise.allSettled([...locals].map(([local, v]) => assertComplete(local, v.file)));
    const typed = attributes.map((a) => typedColumn(a));
    const t = (name: string) => duckIdent(`__t_${name}`);
    // Each typed value is computed once in the inner query; the outer one names the first column that failed.
    const checks = typed
      .filter((c) => c.canFail)
      .map((c) => `WHEN ${duckIdent(c.name)} IS NOT NULL AND ${t(c.name)} IS NULL THEN ${duckLiteral(c.name)}`);
    const bad = checks.length ? `CASE ${checks.join(' ')} END` : 'NULL::VARCHAR';
    const fileId = `CASE filename ${[...locals].map(([l, v]) => `WHEN ${duckLiteral(l)} THEN ${this.#fileIds.get(v.file)!.id}`).join(' ')} END::USMALLINT`;
    const select = [
      ...typed.map((c) => `${t(c.name)} AS ${duckIdent(c.name)}`),
      `${fileId} AS __file_id`,
      `${bad} AS __bad`,
    ];
    // One read_csv per record terminator: DuckDB takes the terminator from the first line break in the file, quoted
    // or not, so it is told the one the file's first record really ends with (see recordTerminator).
    const byTerminator = new Map<RecordTerminator, string[]>();
    for (const [local, v] of locals) {
      const terminator = await recordTerminator(local, v.file);
      byTerminator.set(terminator, [...(byTerminator.get(terminator) ?? []), local]);
    }
    const before = await this.#count(target);
    let readError: unknown;
    try {
      for (const [terminator, files] of byTerminator) {
        const inner = `SELECT *, ${typed.map((c) => `${c.expression} AS ${t(c.name)}`).join(', ')} FROM ${readCsvSql(files, attributes, true, terminator)}`;
        await this.#staging.run(`INSERT INTO ${duckIdent(target)} BY NAME SELECT ${select.join(', ')} FROM (${inner})`);
      }
    } catch (error) {
      readError = error;
    }
    // A cut-off file explains any read error it causes, so its message wins.
    const incomplete = (await complete).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (incomplete) throw incomplete.reason;
    if (readError) throw await this.#csvError(readError, new Map([...locals].map(([l, v]) => [l, v.file])));
    const ids = [...locals.values()].map((v) => this.#fileIds.get(v.file)!.id).join(', ');
    const badRow = await this.#staging.all<{ f: number; c: string }>(
      `SELECT __file_id AS f, __bad AS c FROM ${duckIdent(target)} WHERE __file_id IN (${ids}) AND __bad IS NOT NULL LIMIT 1`,
    );
    if (badRow.length > 0) {
      const file = [...this.#fileIds].find(([, v]) => v.id === Number(badRow[0]!.f))![0];
      throw await this.#valueError(file, badRow[0]!.c, attributes);
    }
    return (await this.#count(target)) - before;
  }

  async #count(target: string): Promise<number> {
    const [row] = await this.#staging.all<{ n: bigint }>(`SELECT count(*) AS n FROM ${duckIdent(target)}`);
    return Number(row?.n ?? 0);
  }

  // DuckDB reports the record number ("CSV Error on Line: N") and the local file; say the lake file and physical line.
  async #csvError(error: unknown, locals: ReadonlyMap<string, string>): Promise<FerryError> {
    const message = error instanceof Error ? error.message : String(error);
    const fileMatch = /\n\s*file = (.+)\n/.exec(message);
    const local = fileMatch?.[1]?.trim();
    const lakeFile = (local && locals.get(local)) ?? local ?? '(unknown file)';
    const recordMatch = /CSV Error on Line: (\d+)/.exec(message);
    let line: number | undefined;
    if (recordMatch && local && locals.has(local)) {
      line = lineOfRecord(await fs.readFile(local, 'utf8'), Number(recordMatch[1]));
    }
    const where = `\`${lakeFile}\`${line ? ` line ${line}` : recordMatch ? ` record ${recordMatch[1]}` : ''}`;
    const wider = /Expected Number of Columns: (\d+) Found: (\d+)/.exec(message);
    if (wider) {
      return new FerryError(
        'synapse_link.row_too_wide',
        `${where} has more fields than the ${wider[1]} columns of its folder's model.json; the folder is not committed. Check that the CSV belongs to this folder's schema, then run again.`,
        { cause: error, details: { file: lakeFile, line } },
      );
    }
    if (/unterminated quote/i.test(message)) {
      return new FerryError(
        'synapse_link.truncated_file',
        `${where} has a quoted value that never ends (the file looks cut short); the folder is not committed. Re-export or re-copy the file, then run again.`,
        { cause: error, details: { file: lakeFile, line } },
      );
    }
    const first = message.split('\n')[0];
    return new FerryError(
      'synapse_link.csv',
      `Reading ${where} failed: ${first}. The folder is not committed; fix the file and run again.`,
      { cause: error, details: { file: lakeFile, line } },
    );
  }

  async #valueError(lakeFile: string, column: string, attributes: readonly CdmAttribute[]): Promise<FerryError> {
    const index = attributes.findIndex((a) => a.name === column);
    const attr = attributes[index]!;
    const t = typedColumn(attr, '$v');
    const text = await fs.readFile(await this.#lake.toLocalPath(lakeFile), 'utf8');
    for (const r of csvRecords(text)) {
      const value = r.fields[index];
      if (value === null || value === undefined) continue;
      const [ok] = await this.#staging.all<{ bad: boolean }>(
        `SELECT ${t.expression.replaceAll('$v', '$1::VARCHAR')} IS NULL AS bad`,
        [value],
      );
      if (ok?.bad) {
        return new FerryError(
          'synapse_link.bad_value',
          `\`${lakeFile}\` line ${r.line}: column \`${column}\` (${attr.dataType}) value \`${value}\` is not ${t.expected}; the folder is not committed. Fix the export (or the model.json type) and run again.`,
          { details: { file: lakeFile, line: r.line, column, value } },
        );
      }
    }
    return new FerryError(
      'synapse_link.bad_value',
      `\`${lakeFile}\`: column \`${column}\` (${attr.dataType}) has a value that is not ${t.expected}; the folder is not committed.`,
      { details: { file: lakeFile, column } },
    );
  }
}

/**
 * The `read_csv` call for headerless Synapse Link CSVs: all VARCHAR, `"` quotes doubled inside values, quoted
 * line breaks, short rows padded with NULL. `parallel=false` because DuckDB's parallel scanner cannot combine
 * null padding with quoted newlines; several files are still read side by side.
 *
 * `terminator` is what the files' records end with (see {@link recordTerminator}). LF files get `new_line = '\n'`
 * so a CRLF inside a quoted value of the first record is data, not the file's terminator. CRLF files are left to
 * DuckDB's own detection: in DuckDB 1.5 an explicit `new_line = '\r\n'` under `strict_mode` reads no rows at all,
 * and a CRLF file's first line break is a CRLF unless its first record holds a bare LF in a quoted value, which
 * {@link recordTerminator} refuses by name.
 */
export function readCsvSql(
  localFiles: readonly string[],
  attributes: readonly CdmAttribute[],
  filename = false,
  terminator: RecordTerminator = 'lf',
): string {
  const columns = attributes.map((a) => `${duckLiteral(a.name)}: 'VARCHAR'`).join(', ');
  const files = `[${localFiles.map(duckLiteral).join(', ')}]`;
  const newLine = terminator === 'lf' ? `, new_line = '\\n'` : '';
  return `read_csv(${files}, columns = {${columns}}, header = false, delim = ',', quote = '"', escape = '"', null_padding = true, auto_detect = false, parallel = false, strict_mode = true${newLine}${filename ? ', filename = true' : ''})`;
}

/** What a CSV file's records end with: Synapse Link writes LF; files that passed through Windows tools have CRLF. */
export type RecordTerminator = 'lf' | 'crlf';

/**
 * The terminator of the file's first record: the first line break outside quotes, CRLF when a CR precedes it. Reads
 * only as far as that line break. A CRLF file whose first record holds a bare LF inside a quoted value is refused
 * (DuckDB would take that LF for the terminator and misread the file), naming the file.
 */
export async function recordTerminator(local: string, lakeFile = local): Promise<RecordTerminator> {
  let quoted = false;
  let previous = -1;
  let bareLfInQuotes = false;
  const stream = createReadStream(local, { highWaterMark: 64 << 10 });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        if (b === 0x22) quoted = !quoted;
        else if (b === 0x0a) {
          if (quoted) {
            if (previous !== 0x0d) bareLfInQuotes = true;
          } else {
            const terminator: RecordTerminator = previous === 0x0d ? 'crlf' : 'lf';
            if (terminator === 'crlf' && bareLfInQuotes) {
              throw new FerryError(
                'synapse_link.csv',
                `\`${lakeFile}\` ends its records with CRLF but its first record holds a bare LF inside a quoted value, which DuckDB's CSV reader cannot tell from a record end; rewrite the file with one kind of line break (LF, as Synapse Link writes), then run again.`,
                { details: { file: lakeFile } },
              );
            }
            return terminator;
          }
        }
        previous = b;
      }
    }
  } finally {
    stream.destroy();
  }
  return 'lf';
}

// Synapse Link ends every row with a line break, so a file without one at the end was cut short; an odd number
// of `"` means it was cut inside a quoted value (DuckDB would read the rest of the file as that value).
async function assertComplete(local: string, lakeFile: string): Promise<void> {
  let quotes = 0;
  let last = -1;
  const stream = createReadStream(local, { highWaterMark: 4 << 20 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(0x22); i !== -1; i = chunk.indexOf(0x22, i + 1)) quotes += 1;
    if (chunk.length > 0) last = chunk[chunk.length - 1]!;
  }
  if (last === -1) return;
  if (last !== 0x0a) {
    const lines = lineCount(await fs.readFile(local, 'utf8'));
    throw new FerryError(
      'synapse_link.truncated_file',
      `\`${lakeFile}\` line ${lines} ends without a line break: the file is truncated (still being written or cut short); the folder is not committed. Re-copy the file or wait for Synapse Link to finish, then run again.`,
      { details: { file: lakeFile, line: lines } },
    );
  }
  if (quotes % 2 === 1) {
    const text = await fs.readFile(local, 'utf8');
    let line = lineCount(text);
    for (const r of csvRecords(text)) line = r.line;
    throw new FerryError(
      'synapse_link.truncated_file',
      `\`${lakeFile}\` line ${line} starts a quoted value that never ends: the file is truncated; the folder is not committed. Re-copy the file or re-export the folder, then run again.`,
      { details: { file: lakeFile, line } },
    );
  }
}

/** How one CDM column is typed from its VARCHAR text in DuckDB. */
export interface TypedColumn {
  readonly name: string;
  /** DuckDB type of the typed column. */
  readonly sqlType: string;
  /** Expression turning the VARCHAR column into `sqlType`; NULL where the text does not parse. */
  readonly expression: string;
  /** True when a non-empty text can fail to parse (then the reader checks it). */
  readonly canFail: boolean;
  /** What a valid value looks like, for error messages. */
  readonly expected: string;
}

// Synapse Link writes `M/d/yyyy h:mm:ss tt` for SinkCreatedOn/SinkModifiedOn; the MS template also accepts 24h.
const US_DATETIME = `['%m/%d/%Y %I:%M:%S %p', '%m/%d/%Y %H:%M:%S']`;
const DEFAULT_DECIMAL = { precision: 38, scale: 10 } as const;

/**
 * The DuckDB typing of a CDM attribute read as text. Decimals wider than 18 digits go through HUGEINT: DuckDB's
 * direct VARCHAR→DECIMAL(>18) cast costs about 8 µs a value, ~90× the HUGEINT route (dependency evaluation §2).
 */
export function typedColumn(attr: CdmAttribute, source = duckIdent(attr.name)): TypedColumn {
  const c = source;
  switch (attr.dataType) {
    case 'guid':
      return col(attr, 'UUID', `TRY_CAST(${c} AS UUID)`, 'a GUID like `50bff458-d47a-4924-804b-31c5a83108e6`');
    case 'int64':
      return col(attr, 'BIGINT', `TRY_CAST(${c} AS BIGINT)`, 'a whole number');
    case 'double':
      return col(attr, 'DOUBLE', `TRY_CAST(${c} AS DOUBLE)`, 'a number');
    case 'boolean':
      return col(
        attr,
        'BOOLEAN',
        `CASE lower(${c}) WHEN 'true' THEN true WHEN 'false' THEN false WHEN '1' THEN true WHEN '0' THEN false END`,
        '`True`, `False` or empty',
      );
    case 'decimal': {
      const precision = Math.min(38, attr.precision ?? DEFAULT_DECIMAL.precision);
      const scale = Math.min(precision, attr.scale ?? (attr.precision === undefined ? DEFAULT_DECIMAL.scale : 0));
      const type = `DECIMAL(${precision},${scale})`;
      if (precision <= 18)
        return col(attr, type, `TRY_CAST(${c} AS ${type})`, `a decimal number (${precision},${scale})`);
      // Digits as a scaled HUGEINT, then one exact multiply by 10^-scale. Extra fraction digits are cut, not rounded.
      const digits =
        scale === 0
          ? `split_part(${c}, '.', 1)`
          : `split_part(${c}, '.', 1) || rpad(split_part(${c}, '.', 2), ${scale}, '0')`;
      const unit = scale === 0 ? '1' : `0.${'0'.repeat(scale - 1)}1::DECIMAL(${scale + 1},${scale})`;
      // The DOUBLE parse rejects text like `1.2.3` that the digit splice would accept.
      const wide = `CASE WHEN TRY_CAST(${c} AS DOUBLE) IS NOT NULL THEN (TRY_CAST(${digits} AS HUGEINT)::DECIMAL(38,0) * ${unit})::${type} END`;
      // Most values fit 18 digits, and that cast is ~4× cheaper again; COALESCE only evaluates the wide route for the
      // rest. (Synapse Link writes at most `scale` fraction digits; more would be rounded here and cut there.)
      const expression = scale <= 18 ? `coalesce(TRY_CAST(${c} AS DECIMAL(18,${scale}))::${type}, ${wide})` : wide;
      return col(attr, type, expression, `a decimal number (${precision},${scale})`);
    }
    case 'dateTime':
    case 'dateTimeOffset':
      return col(
        attr,
        'TIMESTAMPTZ',
        `CASE WHEN contains(${c}, '/') THEN TRY_STRPTIME(${c}, ${US_DATETIME})::TIMESTAMPTZ ELSE TRY_CAST(${c} AS TIMESTAMPTZ) END`,
        'a date and time as `M/d/yyyy h:mm:ss tt`, `yyyy-MM-ddTHH:mm:ss.fffffff+00:00` or `yyyy-MM-ddTHH:mm:ssZ`',
      );
    case 'date':
      return col(
        attr,
        'DATE',
        `CASE WHEN contains(${c}, '/') THEN TRY_STRPTIME(${c}, '%m/%d/%Y')::DATE ELSE TRY_CAST(${c} AS DATE) END`,
        'a date as `M/d/yyyy` or `yyyy-MM-dd`',
      );
    case 'time':
      return col(attr, 'TIME', `TRY_CAST(${c} AS TIME)`, 'a time as `HH:mm:ss`');
    default:
      return { name: attr.name, sqlType: 'VARCHAR', expression: c, canFail: false, expected: 'text' };
  }
}

function col(attr: CdmAttribute, sqlType: string, expression: string, expected: string): TypedColumn {
  return { name: attr.name, sqlType, expression, canFail: true, expected };
}

/**
 * Stages the live rows of a Delta snapshot into `target` with `read_parquet([...])` over the live files, partition
 * columns filled from the log, every schema column cast to its Delta type (a column missing from older files is
 * NULL), plus `__folder` (`delta@<version>`) and `__source_file`. Returns the row count.
 */
export async function stageDeltaSnapshot(
  staging: StagingEngine,
  lake: Lake,
  snapshot: DeltaSnapshot,
  target: string,
): Promise<number> {
  const label = `delta@${snapshot.version}`;
  const defs = snapshot.fields.map((f) => `${duckIdent(f.name)} ${duckTypeOfDelta(f.type)}`);
  await staging.run(
    `CREATE OR REPLACE TABLE ${duckIdent(target)} (${[...defs, '__folder VARCHAR', '__source_file VARCHAR', '__bad VARCHAR'].join(', ')})`,
  );
  if (snapshot.files.length === 0) return 0;
  const locals: string[] = [];
  for (const f of snapshot.files) locals.push(await lake.toLocalPath(f.path));
  const list = `[${locals.map(duckLiteral).join(', ')}]`;
  const present = new Set(
    (
      await staging.all<{ column_name: string }>(`DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true)`)
    ).map((r) => r.column_name),
  );
  // One VALUES row per live file: its lake path and partition values, joined on the file name DuckDB reports.
  // With column mapping, partition values are keyed by physical name too.
  const physical = snapshot.partitionColumns.map(
    (logical) => snapshot.fields.find((x) => x.name === logical)?.physicalName ?? logical,
  );
  const valuesRows = snapshot.files.map((f, i) => {
    const parts = physical.map((p) => f.partitionValues[p] ?? null);
    return `(${[duckLiteral(locals[i]!), duckLiteral(f.path), ...parts.map((v) => (v === null ? 'NULL' : duckLiteral(v)))].join(', ')})`;
  });
  const pvCols = ['__local', '__lake', ...snapshot.partitionColumns.map((_, i) => `__p${i}`)];
  const select = snapshot.fields.map((f) => {
    const type = duckTypeOfDelta(f.type);
    const pi = snapshot.partitionColumns.indexOf(f.name);
    if (pi >= 0) return `CAST(v.__p${pi} AS ${type}) AS ${duckIdent(f.name)}`;
    return present.has(f.physicalName)
      ? `CAST(d.${duckIdent(f.physicalName)} AS ${type}) AS ${duckIdent(f.name)}`
      : `NULL::${type} AS ${duckIdent(f.name)}`;
  });
  await staging.run(
    `INSERT INTO ${duckIdent(target)} BY NAME SELECT ${select.join(', ')}, ${duckLiteral(label)} AS __folder, v.__lake AS __source_file
     FROM read_parquet(${list}, union_by_name = true, filename = true) d
     JOIN (VALUES ${valuesRows.join(', ')}) v(${pvCols.join(', ')}) ON d.filename = v.__local`,
  );
  const [row] = await staging.all<{ n: bigint }>(`SELECT count(*) AS n FROM ${duckIdent(target)}`);
  return Number(row?.n ?? 0);
}

/**
 * Loads the choice-label CSVs of one `OptionsetMetadata/` folder into staging tables named after the files
 * (`OptionsetMetadata`, `GlobalOptionsetMetadata`, ...), so extract SQL can join labels. A missing file gives an
 * empty table. Returns the row count per table.
 */
export async function loadOptionSetLabels(
  staging: StagingEngine,
  lake: Lake,
  optionSetFolder: string | null,
): Promise<Record<string, number>> {
  const reader = new CsvFolderReader(staging, lake);
  const counts: Record<string, number> = {};
  for (const [name, cols] of Object.entries(OPTION_SET_FILES)) {
    const attributes: CdmAttribute[] = cols.map(([n, t]) => ({ name: n, dataType: t, maxLength: -1 }));
    const file = optionSetFolder ? lakeJoin(optionSetFolder, `${name}.csv`) : null;
    const exists = file ? (await lake.stat(file)) !== undefined : false;
    const staged = `__labels_${name}`;
    counts[name] = await reader.stage(
      staged,
      attributes,
      exists && file ? [{ folder: optionSetFolder!, attributes, files: [file] }] : [],
    );
    await staging.run(
      `CREATE OR REPLACE VIEW ${duckIdent(name)} AS SELECT * EXCLUDE (__file_id, __bad) FROM ${duckIdent(staged)}`,
    );
  }
  return counts;
}

/** DuckDB type of each flat Delta (Spark) type the Delta log reader accepts, besides `decimal(p,s)`. */
const DUCK_TYPES = new Map([
  ['string', 'VARCHAR'],
  ['long', 'BIGINT'],
  ['integer', 'INTEGER'],
  ['short', 'SMALLINT'],
  ['byte', 'TINYINT'],
  ['float', 'FLOAT'],
  ['double', 'DOUBLE'],
  ['boolean', 'BOOLEAN'],
  ['binary', 'BLOB'],
  ['date', 'DATE'],
  ['timestamp', 'TIMESTAMPTZ'],
  ['timestamp_ntz', 'TIMESTAMP'],
]);

/** The DuckDB type of a Delta (Spark) primitive type. */
export function duckTypeOfDelta(type: string): string {
  const dec = DECIMAL_TYPE.exec(type);
  if (dec) return `DECIMAL(${dec[1]},${dec[2]})`;
  return DUCK_TYPES.get(type) ?? 'VARCHAR';
}

/** The actions of a Delta checkpoint (Parquet files), one object per row. */
export async function readCheckpointActions(
  staging: StagingEngine,
  localFiles: readonly string[],
): Promise<Record<string, unknown>[]> {
  const rows = await staging.all<{ j: string }>(
    `SELECT to_json(t)::VARCHAR AS j FROM read_parquet([${localFiles.map(duckLiteral).join(', ')}], union_by_name = true) t`,
  );
  return rows.map((r) => JSON.parse(r.j) as Record<string, unknown>);
}

/** The relation a runtime provides for the Synapse Link rows of `table` (column `__folder`: the timestamp folder). */
export function synapseLinkRelation(table: string): string {
  return `synapse_link_${table}`;
}
