/** Structured log lines. The CLI prints them plain on a terminal or as JSON with `--json`/`--log-json`. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Writes log lines to stderr (stdout is kept for results), plain or JSON. Default level `info`. */
export function createLogger(
  options: { json?: boolean; level?: LogLevel; write?: (line: string) => void } = {},
): Logger {
  const min = ORDER[options.level ?? (process.env.FERRY_LOG_LEVEL as LogLevel | undefined) ?? 'info'] ?? 1;
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    if (options.json) {
      write(JSON.stringify({ time: new Date().toISOString(), level, message, ...fields }, bigintSafe));
    } else {
      const extra = fields && Object.keys(fields).length ? ` ${formatFields(fields)}` : '';
      write(`${level === 'info' ? '' : `${level.toUpperCase()} `}${message}${extra}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function formatFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, bigintSafe)}`)
    .join(' ');
}

export function bigintSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
