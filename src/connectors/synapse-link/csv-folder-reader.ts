import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { FerryError } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import type { StagingEngine } from '../../core/staging.js';
import { duckIdent, duckLiteral } from '../../dialects/duckdb/duckdb-staging.js';
import type { CdmAttribute } from './cdm-model.js';
import { typedColumn } from './cdm-sql-types.js';
import { csvRecords, lineCount, lineOfRecord } from './csv-locator.js';

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
