import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../core/errors.js';

/**
 * One stored row. `attributes` is keyed by attribute logical name and holds the values as the emulator stores them:
 * - strings, numbers, booleans as sent (after validation); money/decimal/double as JSON numbers;
 * - DateTime: UserLocal as UTC `YYYY-MM-DDTHH:MM:SSZ`, TimeZoneIndependent as the wall-clock time sent plus `Z`,
 *   DateOnly as `YYYY-MM-DD`;
 * - MultiSelectPicklist as the normalised string `"1,9"`;
 * - lookups (Lookup, Customer, Owner): `attributes[<attr>]` = the target GUID and `attributes['<attr>@target']` = the
 *   target table's logical name (both `null` after a disassociate). The Web API shape `_<attr>_value` is produced only
 *   when a row is serialised for a GET.
 * The primary id is `id`, not repeated in `attributes`. Rows are immutable: every write stores a new object, so a
 * reader may keep the objects it got.
 */
export interface StoredRow {
  readonly id: string;
  readonly versionNumber: number;
  readonly createdOn: string;
  readonly modifiedOn: string;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** One change, as Synapse Link would see it: `record` is the row's attributes after the write, null for a delete. */
export interface JournalEntry {
  readonly seq: number;
  readonly table: string;
  readonly id: string;
  readonly versionNumber: number;
  readonly op: 'upsert' | 'delete';
  readonly at: string;
  readonly record: Readonly<Record<string, unknown>> | null;
}

/** An alternate key the store keeps unique. */
export interface StoreKey {
  readonly name: string;
  readonly attributes: readonly string[];
}

/** Where a transaction can be rolled back to. */
export interface StoreSavepoint {
  readonly undoLength: number;
  readonly journalLength: number;
}

/** The store file's format: a header line, then one journal entry per line. */
const STORE_FORMAT = 'ferry-emulator-store/2';

interface StoreFileHeader {
  readonly format: typeof STORE_FORMAT;
  /** Version counter and sequence when the file was last written whole (appends may take them further). */
  readonly version: number;
  readonly seq: number;
}

/** The older format: one JSON document, rewritten whole on every save. Still read; replaced by the next save. */
interface SavedStore {
  readonly format: 'ferry-emulator-store/1';
  readonly version: number;
  readonly seq: number;
  readonly tables: Record<string, StoredRow[]>;
  readonly journal: JournalEntry[];
}

/** Key value text for the uniqueness index; null when a key column is empty (such rows are not indexed). */
export function keyIndexText(values: readonly unknown[]): string | null {
  const parts: string[] = [];
  for (const value of values) {
    if (value === null || value === undefined) return null;
    // Dataverse databases use a case-insensitive collation (Latin1_General_CI_AI), so `A1` and `a1` are the same key.
    parts.push(typeof value === 'string' ? `s:${value.toLowerCase()}` : `${typeof value}:${String(value)}`);
  }
  return parts.join('\u0000');
}

/** {@link keyIndexText} of a row's values for `key`, without building the array for the common one-column key. */
function keyTextOf(key: StoreKey, attributes: Readonly<Record<string, unknown>>): string | null {
  if (key.attributes.length !== 1) return keyIndexText(key.attributes.map((a) => attributes[a]));
  const value = attributes[key.attributes[0]!];
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? `s:${value.toLowerCase()}` : `${typeof value}:${String(value)}`;
}

/**
 * The emulator's in-memory tables, alternate-key indexes and change journal (Maps). Persisted as the journal itself,
 * appended line by line (see {@link EmulatorStore.appendTo}); a load replays it.
 * `versionNumber` grows on every write across the whole store, like Dataverse's rowversion. Writes made inside a
 * savepoint can be rolled back (bulk requests and `$batch` change sets are all-or-nothing).
 */
export class EmulatorStore {
  #rows = new Map<string, Map<string, StoredRow>>();
  #keys = new Map<string, readonly StoreKey[]>();
  #index = new Map<string, Map<string, Map<string, string>>>();
  #journal: JournalEntry[] = [];
  #version = 1000;
  #seq = 0;
  #undo: Array<() => void> = [];
  #openSavepoints = 0;
  #listeners: Array<() => void> = [];
  /** The last journal sequence number on disk, and the file it is in. */
  #persistedSeq = 0;
  #persistedFile: string | undefined;

  /** Declares a table and the alternate keys to keep unique; rows already stored are indexed. */
  defineTable(table: string, keys: readonly StoreKey[] = []): void {
    if (!this.#rows.has(table)) this.#rows.set(table, new Map());
    this.#keys.set(table, keys);
    const byKey = new Map<string, Map<string, string>>();
    for (const key of keys) byKey.set(key.name, new Map());
    this.#index.set(table, byKey);
    for (const row of this.#rows.get(table)!.values()) this.#indexRow(table, row);
  }

  /** Logical names of the tables the store knows. */
  tables(): string[] {
    return [...this.#rows.keys()];
  }

  /** All rows of a table, in insertion order (the objects are immutable; see {@link StoredRow}). */
  rows(table: string): StoredRow[] {
    return [...(this.#rows.get(table)?.values() ?? [])];
  }

  /** One row by primary id (case-insensitive GUID), or undefined. */
  get(table: string, id: string): StoredRow | undefined {
    return this.#rows.get(table)?.get(id.toLowerCase());
  }

  /** Number of rows in a table. */
  count(table: string): number {
    return this.#rows.get(table)?.size ?? 0;
  }

  /** Highest version number handed out so far. */
  get lastVersion(): number {
    return this.#version;
  }

  /** Journal entries with `seq > afterSeq`, oldest first. Default `afterSeq` is `0` (everything). */
  journal(afterSeq = 0): JournalEntry[] {
    // seq values are dense and start at 1, but rolled-back writes leave no gaps only if nothing else was appended;
    // a binary search keeps this correct either way.
    let lo = 0;
    let hi = this.#journal.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#journal[mid].seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    return this.#journal.slice(lo);
  }

  /** Finds a row id by alternate key values (in the key's attribute order). */
  findByKey(table: string, keyName: string, values: readonly unknown[]): string | undefined {
    const text = keyIndexText(values);
    if (text === null) return undefined;
    return this.#index.get(table)?.get(keyName)?.get(text);
  }

  /** The first alternate key whose values in `attributes` already belong to another row than `id`, if any. */
  keyConflict(table: string, id: string, attributes: Readonly<Record<string, unknown>>): StoreKey | undefined {
    for (const key of this.#keys.get(table) ?? []) {
      const text = keyIndexText(key.attributes.map((a) => attributes[a]));
      if (text === null) continue;
      const owner = this.#index.get(table)?.get(key.name)?.get(text);
      if (owner !== undefined && owner !== id.toLowerCase()) return key;
    }
    return undefined;
  }

  /** Inserts or replaces a row with these attributes; returns the stored row. */
  put(table: string, id: string, attributes: Record<string, unknown>, now = new Date()): StoredRow {
    const rows = this.#table(table);
    const key = id.toLowerCase();
    const previous = rows.get(key);
    const at = isoSeconds(now);
    const row: StoredRow = {
      id: key,
      versionNumber: ++this.#version,
      createdOn: previous?.createdOn ?? at,
      modifiedOn: at,
      attributes,
    };
    if (previous) this.#unindexRow(table, previous);
    rows.set(key, row);
    this.#indexRow(table, row);
    this.#remember(() => {
      this.#unindexRow(table, row);
      if (previous) {
        rows.set(key, previous);
        this.#indexRow(table, previous);
      } else {
        rows.delete(key);
      }
    });
    this.#append({ table, id: key, versionNumber: row.versionNumber, op: 'upsert', at, record: attributes });
    return row;
  }

  /** Deletes a row; returns false when it did not exist. */
  delete(table: string, id: string, now = new Date()): boolean {
    const rows = this.#table(table);
    const key = id.toLowerCase();
    const previous = rows.get(key);
    if (!previous) return false;
    rows.delete(key);
    this.#unindexRow(table, previous);
    this.#remember(() => {
      rows.set(key, previous);
      this.#indexRow(table, previous);
    });
    this.#append({ table, id: key, versionNumber: ++this.#version, op: 'delete', at: isoSeconds(now), record: null });
    return true;
  }

  /** Starts an all-or-nothing unit; pair with {@link release} or {@link rollback}. */
  savepoint(): StoreSavepoint {
    this.#openSavepoints += 1;
    return { undoLength: this.#undo.length, journalLength: this.#journal.length };
  }

  /** Undoes every write since the savepoint (version numbers are not reused, like SQL rowversion). */
  rollback(point: StoreSavepoint): void {
    while (this.#undo.length > point.undoLength) this.#undo.pop()!();
    this.#journal.length = point.journalLength;
    this.#closeSavepoint();
  }

  /** Keeps the writes since the savepoint. */
  release(_point: StoreSavepoint): void {
    this.#closeSavepoint();
  }

  /** Calls `listener` after every committed change (used for the debounced save). */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Appends the changes committed since the last append (or load) to the store file, creating it with its header
   * when missing. The file is the change journal, one JSON line per change, so a million-record store is never
   * rewritten as a whole; a write torn by a crash leaves at most a partial last line, which loading drops.
   */
  async appendTo(file: string): Promise<number> {
    const pending = this.journal(this.#persistedSeq);
    if (pending.length === 0 && this.#persistedFile === file) return 0;
    if (this.#persistedFile !== file) {
      // A file this store did not load or write yet: write it whole (atomically), then append from there on.
      await this.saveTo(file);
      return pending.length;
    }
    const lines = pending.map((e) => `${JSON.stringify(e)}\n`).join('');
    const handle = await open(file, 'a');
    try {
      await handle.write(lines);
      // Once on disk, a crash cannot lose these changes (the journal is what the next start replays).
      await handle.datasync();
    } finally {
      await handle.close();
    }
    this.#persistedSeq = pending.at(-1)!.seq;
    return pending.length;
  }

  /**
   * Writes the whole store (its journal, with a header line) to `file` atomically: temporary file, then rename. This
   * is also the compaction of a file that was torn or written in the older single-JSON format.
   */
  async saveTo(file: string): Promise<void> {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
    const handle = await open(tmp, 'w');
    // The entries as of now: changes committed while the file is written go into the next append.
    const journal = this.#journal.slice();
    try {
      const header: StoreFileHeader = { format: STORE_FORMAT, version: this.#version, seq: this.#seq };
      await handle.write(`${JSON.stringify(header)}\n`);
      // In slices: one string for a million entries would be hundreds of MB.
      for (let i = 0; i < journal.length; i += 10_000) {
        await handle.write(
          journal
            .slice(i, i + 10_000)
            .map((e) => `${JSON.stringify(e)}\n`)
            .join(''),
        );
      }
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    this.#persistedSeq = journal.at(-1)?.seq ?? 0;
    this.#persistedFile = file;
  }

  /**
   * Loads a store file written by {@link saveTo}/{@link appendTo} (or the older single-JSON format, which the next
   * save replaces); a missing file leaves the store empty. Replays the journal: rows, version counter and sequence
   * come back as they were. A partial last line (a crash mid-append) is dropped and cut off the file; any other bad
   * line is an error naming it.
   */
  async loadFrom(file: string): Promise<boolean> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    try {
      const first = Buffer.alloc(64);
      const { bytesRead } = await handle.read(first, 0, 64, 0);
      if (/^\{\s*"format"\s*:\s*"ferry-emulator-store\/1"/.test(first.subarray(0, bytesRead).toString('utf8'))) {
        await this.#loadLegacy(file, await readFile(file, 'utf8'));
        return true;
      }
      let header: StoreFileHeader | undefined;
      let lineNo = 0;
      let goodBytes = 0;
      let maxVersion = this.#version;
      /** Applies one line; false for an unreadable last line without its newline (a torn append). */
      const apply = (line: string, complete: boolean): boolean => {
        lineNo += 1;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch (error) {
          if (!complete) return false;
          throw new FerryError(
            'emulator.store_unreadable',
            `Emulator store file \`${file}\` line ${lineNo} is not valid JSON; delete the file to start empty or restore a backup.`,
            { cause: error },
          );
        }
        if (!header) {
          header = value as StoreFileHeader;
          if (header?.format !== STORE_FORMAT) {
            throw new FerryError(
              'emulator.store_format',
              `Emulator store file \`${file}\` has format \`${String(header?.format)}\`, expected \`${STORE_FORMAT}\`; delete it to start empty.`,
            );
          }
          return true;
        }
        const entry = value as JournalEntry;
        this.#replay(entry);
        if (entry.versionNumber > maxVersion) maxVersion = entry.versionNumber;
        return true;
      };
      // Bytes, not text: lines are cut at newline bytes (a newline byte never occurs inside a UTF-8 sequence), and the
      // offset of the last complete line is then known without measuring every line again.
      const stream = handle.createReadStream({ autoClose: false, start: 0, highWaterMark: 1 << 16 });
      let rest: Buffer = Buffer.alloc(0);
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        // `rest` (the unfinished line of the previous chunk) starts at file offset `goodBytes`.
        const buf = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
        let from = 0;
        for (let nl = buf.indexOf(10, from); nl >= 0; nl = buf.indexOf(10, from)) {
          if (nl > from) apply(buf.toString('utf8', from, nl), true);
          from = nl + 1;
        }
        goodBytes += from;
        rest = buf.subarray(from);
      }
      if (rest.length > 0) {
        // The last append was cut short: a line that parses only lacked its newline (keep it and end it); anything
        // else is a torn write of changes that were never acknowledged as saved, cut off the file.
        if (apply(rest.toString('utf8'), false)) await handle.write('\n', goodBytes + rest.length);
        else await handle.truncate(goodBytes);
      }
      if (!header) {
        throw new FerryError(
          'emulator.store_unreadable',
          `Emulator store file \`${file}\` has no header line; delete it to start empty or restore a backup.`,
        );
      }
      const saved = header as StoreFileHeader;
      this.#version = Math.max(maxVersion, saved.version);
      this.#seq = Math.max(this.#seq, saved.seq, this.#journal.at(-1)?.seq ?? 0);
      this.#persistedSeq = this.#journal.at(-1)?.seq ?? 0;
      this.#persistedFile = file;
      return true;
    } finally {
      await handle.close();
    }
  }

  /** Applies one journal entry of a loaded file: the row as that change left it, and the entry itself. */
  #replay(entry: JournalEntry): void {
    const rows = this.#table(entry.table);
    const previous = rows.get(entry.id);
    if (previous) this.#unindexRow(entry.table, previous);
    if (entry.op === 'delete') rows.delete(entry.id);
    else {
      const row: StoredRow = {
        id: entry.id,
        versionNumber: entry.versionNumber,
        createdOn: previous?.createdOn ?? entry.at,
        modifiedOn: entry.at,
        attributes: entry.record ?? {},
      };
      rows.set(entry.id, row);
      this.#indexRow(entry.table, row);
    }
    this.#journal.push(entry);
  }

  async #loadLegacy(file: string, text: string): Promise<void> {
    let data: SavedStore;
    try {
      data = JSON.parse(text) as SavedStore;
    } catch (error) {
      throw new FerryError(
        'emulator.store_unreadable',
        `Emulator store file \`${file}\` is not valid JSON; delete it to start empty or restore a backup.`,
        { cause: error },
      );
    }
    this.#version = data.version;
    this.#seq = data.seq;
    this.#journal = data.journal;
    for (const [table, rows] of Object.entries(data.tables)) {
      const map = this.#table(table);
      for (const row of rows) map.set(row.id, row);
      if (this.#keys.has(table)) this.defineTable(table, this.#keys.get(table)!);
    }
    // Not #persistedFile: the first append rewrites the file in the journal format.
  }

  #table(table: string): Map<string, StoredRow> {
    let rows = this.#rows.get(table);
    if (!rows) {
      rows = new Map();
      this.#rows.set(table, rows);
    }
    return rows;
  }

  #append(entry: Omit<JournalEntry, 'seq'>): void {
    this.#journal.push({ seq: ++this.#seq, ...entry });
    if (this.#openSavepoints === 0) for (const listener of this.#listeners) listener();
  }

  #remember(undo: () => void): void {
    // Outside a savepoint nothing can be rolled back, so keep no undo log (saves memory on big loads).
    if (this.#openSavepoints > 0) this.#undo.push(undo);
  }

  #closeSavepoint(): void {
    this.#openSavepoints -= 1;
    if (this.#openSavepoints === 0) {
      this.#undo.length = 0;
      for (const listener of this.#listeners) listener();
    }
  }

  #indexRow(table: string, row: StoredRow): void {
    const byKey = this.#index.get(table);
    if (!byKey) return;
    for (const key of this.#keys.get(table) ?? []) {
      const text = keyTextOf(key, row.attributes);
      if (text !== null) byKey.get(key.name)!.set(text, row.id);
    }
  }

  #unindexRow(table: string, row: StoredRow): void {
    const byKey = this.#index.get(table);
    if (!byKey) return;
    for (const key of this.#keys.get(table) ?? []) {
      const text = keyTextOf(key, row.attributes);
      if (text !== null && byKey.get(key.name)!.get(text) === row.id) byKey.get(key.name)!.delete(text);
    }
  }
}

/** ISO-8601 UTC with whole seconds, the precision Dataverse keeps for createdon/modifiedon. */
export function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}
