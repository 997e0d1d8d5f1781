/** Seconds as `0.4 s`, `12 s`, `3 min 20 s`, `2 h 05 min`, `3 d 4 h`. */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '∞';
  if (seconds === 0) return '0 s';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const s = Math.round(seconds - m * 60);
    return s ? `${m} min ${s} s` : `${m} min`;
  }
  if (seconds < 86_400) {
    const h = Math.floor(seconds / 3600);
    const m = Math.round((seconds - h * 3600) / 60);
    return `${h} h ${String(m).padStart(2, '0')} min`;
  }
  const d = Math.floor(seconds / 86_400);
  return `${d} d ${Math.round((seconds - d * 86_400) / 3600)} h`;
}

/** A count with thousands separators; fractions to `digits` places. */
export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A share as a percentage: `0.4 %`, `12 %`. */
export function formatPercent(share: number): string {
  const p = share * 100;
  return `${p < 10 ? p.toFixed(1) : formatNumber(p)} %`;
}

/** `24h`, `7d`, `90m` → milliseconds; undefined for anything else. */
export function parseSince(text: string): number | undefined {
  const match = /^(\d+)\s*(m|h|d|w)$/.exec(text.trim());
  if (!match) return undefined;
  const n = Number(match[1]);
  return n * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[match[2] as 'm' | 'h' | 'd' | 'w'];
}
