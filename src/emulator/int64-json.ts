/**
 * The service writes Int64 metadata limits as exact JSON integers (`"MaxValue": 9223372036854775807`), which a JS
 * number cannot hold. The emulator keeps such literals from its snapshot files as marked strings and writes them back
 * as bare digits in its metadata responses, so a client sees the bytes the service would send.
 */
const MARK = '\u0000int64:';
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const MARKED = /"\\u0000int64:(-?\d+)"/g;

/** `JSON.parse` that turns integer literals beyond ±(2^53 − 1) into marked strings holding their digits. */
export function parseKeepingInt64(text: string): unknown {
  return JSON.parse(
    text.replace(TOKEN, (token) =>
      /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? JSON.stringify(`${MARK}${token}`) : token,
    ),
  );
}

/** `JSON.stringify` that writes the marked strings of `parseKeepingInt64` back as exact integer literals. */
export function stringifyWithInt64(value: unknown): string {
  return JSON.stringify(value).replace(MARKED, '$1');
}

/** The number a marked Int64 stands for, rounded to a double; other values pass through. */
export function int64AsNumber(value: unknown): unknown {
  return typeof value === 'string' && value.startsWith(MARK) ? Number(value.slice(MARK.length)) : value;
}
