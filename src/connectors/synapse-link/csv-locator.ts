/** One CSV record as a JS scan sees it: its fields and the physical line it starts on (1-based). */
export interface LocatedRecord {
  readonly fields: readonly (string | null)[];
  readonly line: number;
  readonly record: number;
}

/**
 * Walks an RFC-4180 CSV text (`"` quotes, `""` inside quotes, quoted line breaks are data) record by record.
 * Only for error paths and small files: bulk reading is DuckDB's job. Empty unquoted fields are null.
 */
export function* csvRecords(text: string): Generator<LocatedRecord> {
  let i = 0;
  let line = 1;
  let record = 0;
  const n = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  i = n;
  while (i < text.length) {
    const startLine = line;
    const fields: (string | null)[] = [];
    let field = '';
    let quoted = false;
    let wasQuoted = false;
    for (;;) {
      if (i >= text.length) {
        fields.push(wasQuoted ? field : field === '' ? null : field);
        break;
      }
      const ch = text[i]!;
      if (quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          quoted = false;
          i += 1;
          continue;
        }
        if (ch === '\n') line += 1;
        field += ch;
        i += 1;
        continue;
      }
      if (ch === '"') {
        quoted = true;
        wasQuoted = true;
        i += 1;
        continue;
      }
      if (ch === ',') {
        fields.push(wasQuoted ? field : field === '' ? null : field);
        field = '';
        wasQuoted = false;
        i += 1;
        continue;
      }
      if (ch === '\r' && text[i + 1] === '\n') {
        i += 1;
        continue;
      }
      if (ch === '\n') {
        fields.push(wasQuoted ? field : field === '' ? null : field);
        i += 1;
        line += 1;
        break;
      }
      field += ch;
      i += 1;
    }
    record += 1;
    yield { fields, line: startLine, record };
  }
}

/** The physical line (1-based) where record number `record` (1-based) starts; undefined past the end. */
export function lineOfRecord(text: string, record: number): number | undefined {
  for (const r of csvRecords(text)) if (r.record === record) return r.line;
  return undefined;
}

/** Number of physical lines a text has (a final line break does not start a new line). */
export function lineCount(text: string): number {
  if (text === '') return 0;
  let n = 1;
  for (let i = 0; i < text.length - 1; i++) if (text.charCodeAt(i) === 10) n += 1;
  return n;
}
