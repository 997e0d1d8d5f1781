// Observed names are `yyyy-MM-ddTHH.mm.ssZ` (FastTrack, arcane, estuary); the docs give the colon form with millis.
const FOLDER = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})[.:](\d{2})[.:](\d{2})(?:\.(\d{1,7}))?Z$/;

/** Parses a Synapse Link timestamp folder name to ISO-8601 UTC, or undefined when the name is no timestamp. */
export function timestampFolder(name: string): string | undefined {
  const m = FOLDER.exec(name);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac] = m;
  const ms = frac ? frac.padEnd(3, '0').slice(0, 3) : '000';
  const iso = `${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`;
  const t = Date.parse(iso);
  if (Number.isNaN(t) || new Date(t).toISOString() !== iso) return undefined;
  return iso;
}

/** Formats a time as the folder name Synapse Link writes (`yyyy-MM-ddTHH.mm.ssZ`). */
export function folderNameFor(time: Date): string {
  return time
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll(':', '.');
}
