import { UsageError } from '../../../../core/errors.js';
import {
  msFromTicks,
  parseTimestamp,
  ticksFromMs,
  wallClockToUtc,
  zoneOffsetMinutes,
} from '../expression/date-time.js';
import { isObject, type JsonObject } from '../expression/json-value.js';
import { checkKeys } from '../property-check.js';
import { UnsupportedError } from '../runtime-error.js';

const FREQUENCIES = ['Minute', 'Hour', 'Day', 'Week', 'Month'] as const;
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const UNIT_MS: Record<string, number> = { Minute: 60_000, Hour: 3_600_000, Day: 86_400_000, Week: 7 * 86_400_000 };

export const RECURRENCE_KEYS = ['frequency', 'interval', 'startTime', 'endTime', 'timeZone', 'schedule'];

/** A schedule trigger's recurrence, read and checked (how-to-create-schedule-trigger). */
export interface Recurrence {
  readonly frequency: (typeof FREQUENCIES)[number];
  readonly interval: number;
  readonly startMs: number;
  readonly endMs?: number;
  readonly timeZone: string;
  readonly hours?: readonly number[];
  readonly minutes?: readonly number[];
  readonly weekDays?: readonly number[];
  readonly monthDays?: readonly number[];
}

/** Reads `typeProperties.recurrence`; times without zone are wall-clock in `timeZone` (UTC by default). */
export function readRecurrence(value: unknown, trigger: string): Recurrence {
  if (!isObject(value)) throw new UsageError(`Schedule trigger \`${trigger}\` has no recurrence.`);
  checkKeys(value, RECURRENCE_KEYS, `the recurrence of \`${trigger}\``);
  const frequency = FREQUENCIES.find((f) => f === value.frequency);
  if (!frequency)
    throw new UsageError(
      `Recurrence frequency \`${value.frequency}\` of \`${trigger}\` is not one of ${FREQUENCIES.join(', ')}.`,
    );
  const interval = value.interval === undefined ? 1 : Number(value.interval);
  if (!Number.isInteger(interval) || interval < 1 || interval > 1000)
    throw new UsageError(`Recurrence interval \`${value.interval}\` of \`${trigger}\` must be an integer 1–1000.`);
  if (typeof value.startTime !== 'string') throw new UsageError(`Schedule trigger \`${trigger}\` needs a startTime.`);
  const timeZone = typeof value.timeZone === 'string' ? value.timeZone : 'UTC';
  const toMs = (text: string, what: string) => {
    const ticks = parseTimestamp(text, `${what} of ${trigger}`);
    // With a non-UTC zone times are written without offset and read as wall-clock time there (tzblog).
    const utc = timeZone === 'UTC' || /(Z|[+-]\d{2}:?\d{2})$/i.test(text) ? ticks : wallClockToUtc(ticks, timeZone);
    return msFromTicks(utc);
  };
  const out: { -readonly [K in keyof Recurrence]: Recurrence[K] } = {
    frequency,
    interval,
    startMs: toMs(value.startTime, 'startTime'),
    timeZone,
  };
  if (typeof value.endTime === 'string') out.endMs = toMs(value.endTime, 'endTime');
  if (value.schedule !== undefined) {
    if (!isObject(value.schedule)) throw new UsageError(`The schedule of \`${trigger}\` is not an object.`);
    const s: JsonObject = value.schedule;
    checkKeys(s, ['hours', 'minutes', 'weekDays', 'monthDays', 'monthlyOccurrences'], `the schedule of \`${trigger}\``);
    if (s.monthlyOccurrences !== undefined)
      throw new UnsupportedError(
        `schedule.monthlyOccurrences of \`${trigger}\` is not implemented by the local runtime.`,
      );
    const ints = (v: unknown, lo: number, hi: number, what: string) => {
      if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && (x as number) >= lo && (x as number) <= hi))
        throw new UsageError(`schedule.${what} of \`${trigger}\` must be integers ${lo}–${hi}.`);
      return [...(v as number[])].sort((a, b) => a - b);
    };
    if (s.hours !== undefined) out.hours = ints(s.hours, 0, 23, 'hours');
    if (s.minutes !== undefined) out.minutes = ints(s.minutes, 0, 59, 'minutes');
    if (s.weekDays !== undefined) {
      if (frequency !== 'Week')
        throw new UsageError(`schedule.weekDays of \`${trigger}\` is only valid with frequency Week.`);
      out.weekDays = (s.weekDays as unknown[]).map((d) => {
        const i = WEEKDAYS.indexOf(String(d));
        if (i < 0) throw new UsageError(`Week day \`${d}\` of \`${trigger}\` is not one of ${WEEKDAYS.join(', ')}.`);
        return i;
      });
    }
    if (s.monthDays !== undefined) {
      if (frequency !== 'Month')
        throw new UsageError(`schedule.monthDays of \`${trigger}\` is only valid with frequency Month.`);
      out.monthDays = ints(s.monthDays, -31, 31, 'monthDays').filter((d) => d !== 0);
    }
    if (frequency === 'Minute')
      throw new UnsupportedError(
        `A schedule with frequency Minute (\`${trigger}\`) is not implemented by the local runtime.`,
      );
  }
  return out;
}

/** Occurrences with `afterMs < t ≤ untilMs`, ascending, never before startTime nor after endTime. */
export function occurrences(r: Recurrence, afterMs: number, untilMs: number): number[] {
  const out: number[] = [];
  const last = Math.min(untilMs, r.endMs ?? Number.POSITIVE_INFINITY);
  const keep = (t: number) => t > afterMs && t <= last && t >= r.startMs;
  const hasSchedule = r.hours || r.minutes || r.weekDays || r.monthDays;
  if (
    !hasSchedule &&
    (r.frequency === 'Minute' || r.frequency === 'Hour' || r.timeZone === 'UTC') &&
    r.frequency !== 'Month'
  ) {
    const step = r.interval * UNIT_MS[r.frequency]!;
    let k = Math.max(0, Math.ceil((afterMs + 1 - r.startMs) / step));
    for (let t = r.startMs + k * step; t <= last; t = r.startMs + ++k * step) if (keep(t)) out.push(t);
    return out;
  }
  // Calendar periods in wall-clock time of the zone: days, weeks or months from the start.
  const startWall = wall(r.startMs, r.timeZone);
  const startDate = new Date(startWall);
  const defaultHour = startDate.getUTCHours();
  const defaultMinute = startDate.getUTCMinutes();
  for (let period = 0; period < 100_000; period++) {
    const times: number[] = [];
    const hours = r.hours ?? [defaultHour];
    const minutes = r.minutes ?? [defaultMinute];
    if (r.frequency === 'Hour') {
      const base = r.startMs + period * r.interval * 3_600_000;
      const h = new Date(wall(base, r.timeZone));
      for (const m of r.minutes ?? [defaultMinute])
        times.push(Date.UTC(h.getUTCFullYear(), h.getUTCMonth(), h.getUTCDate(), h.getUTCHours(), m));
    } else {
      const days: number[] = [];
      if (r.frequency === 'Day')
        days.push(
          Date.UTC(startDate.getUTCFullYear(), startDate.getUTCMonth(), startDate.getUTCDate() + period * r.interval),
        );
      if (r.frequency === 'Week') {
        const weekStart = Date.UTC(
          startDate.getUTCFullYear(),
          startDate.getUTCMonth(),
          startDate.getUTCDate() - startDate.getUTCDay() + period * 7 * r.interval,
        );
        for (const wd of r.weekDays ?? [startDate.getUTCDay()]) days.push(weekStart + wd * 86_400_000);
      }
      if (r.frequency === 'Month') {
        const y = startDate.getUTCFullYear();
        const m = startDate.getUTCMonth() + period * r.interval;
        const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
        for (const d of r.monthDays ?? [startDate.getUTCDate()]) {
          const day = d > 0 ? d : lastDay + d + 1;
          if (day >= 1 && day <= lastDay) days.push(Date.UTC(y, m, day));
        }
      }
      for (const day of days)
        for (const h of hours) for (const m of minutes) times.push(day + h * 3_600_000 + m * 60_000);
    }
    const utcTimes = times
      .map((t) => (r.timeZone === 'UTC' ? t : msFromTicks(wallClockToUtc(ticksFromMs(t), r.timeZone))))
      .sort((a, b) => a - b);
    for (const t of utcTimes) if (keep(t)) out.push(t);
    const periodEnd = utcTimes.length ? utcTimes[utcTimes.length - 1]! : 0;
    if (periodEnd > last) break;
  }
  return out;
}

function wall(utcMs: number, zone: string): number {
  return zone === 'UTC' ? utcMs : utcMs + zoneOffsetMinutes(zone, ticksFromMs(utcMs)) * 60_000;
}
