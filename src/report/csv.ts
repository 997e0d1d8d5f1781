/**
 * One CSV record (RFC 4180): fields with a comma, quote, CR or LF are quoted and their quotes doubled. Fields that
 * a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) get a leading apostrophe, so a rejected value
 * cannot turn into a formula in the data owner's Excel.
 */
export function csvRecord(fields: ReadonlyArray<unknown>): string {
  return fields.map(csvField).join(',');
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
