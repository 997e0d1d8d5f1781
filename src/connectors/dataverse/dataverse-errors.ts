import type { ErrorCode } from '../../core/error-codes.js';
import { FerryError } from '../../core/errors.js';

/** The service's error body, `{"error":{"code":"0x8004...","message":"..."}}` (reference §8). */
export interface ServiceError {
  readonly code: string;
  readonly message: string;
}

/** Reads `{ error: { code, message } }` from a response body; undefined when the body is not such JSON. */
export function parseServiceError(body: string | unknown): ServiceError | undefined {
  let value: unknown = body;
  if (typeof body === 'string') {
    if (body.trim() === '') return undefined;
    try {
      value = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const error = (value as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (!error || typeof error !== 'object') return undefined;
  return {
    code: typeof error.code === 'string' ? error.code : '',
    message: typeof error.message === 'string' ? error.message : '',
  };
}

/** Reject reason for a service error: `dataverse.<hex code>`, or `dataverse.http_<status>` when the code is empty. */
export function rejectReasonFor(status: number, error: ServiceError | undefined): string {
  const code = error?.code?.trim();
  return code ? `dataverse.${code.toLowerCase()}` : `dataverse.http_${status}`;
}

/**
 * True when the error says a lookup target does not exist (yet): alternate-key binds answer `A record with the
 * specified key values does not exist in <entity> entity`, GUID binds `<entity> With Id = <guid> Does Not Exist`
 * (ObjectDoesNotExist `0x80040217`, reference §5). The writer only addresses rows by key, so on an upsert this
 * can only be a bind.
 */
export function isMissingLookupTarget(error: ServiceError | undefined): boolean {
  if (!error) return false;
  if (error.code.toLowerCase() === '0x80040217') return true;
  return /specified key values does not exist|with id = .* does not exist|do not exist/i.test(error.message);
}

/**
 * The one place where failed Dataverse calls become `FerryError`s: the stable code names the service code or the
 * HTTP status, the disposition says whether trying later can help.
 */
export function mapDataverseError(context: {
  method: string;
  url: string;
  status?: number;
  body?: string;
  cause?: unknown;
  attempts?: number;
}): FerryError {
  const where = `${context.method} ${redactUrl(context.url)}`;
  const tries = context.attempts && context.attempts > 1 ? ` after ${context.attempts} attempts` : '';
  if (context.status === undefined) {
    const reason = context.cause instanceof Error ? context.cause.message : String(context.cause);
    return new FerryError(
      'dataverse.unreachable',
      `Dataverse did not answer \`${where}\`${tries}: ${reason}. Check the URL and the network, then run again.`,
      {
        cause: context.cause,
      },
    );
  }
  const error = parseServiceError(context.body ?? '');
  const status = context.status;
  const text = error?.message ? `: ${error.message}` : '';
  const details = { status, serviceError: error ?? (context.body ? context.body.slice(0, 2000) : null) };
  if (status === 429) {
    return new FerryError(
      'dataverse.throttled',
      `Dataverse kept throttling \`${where}\`${tries}${text}. Lower the concurrency or run again later.`,
      {
        details,
      },
    );
  }
  if (status === 401) {
    return new FerryError(
      'dataverse.unauthorized',
      `Dataverse refused the token for \`${where}\` (401)${text}. Check the credentials (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) and the application user.`,
      {
        details,
      },
    );
  }
  if (status === 403) {
    return new FerryError(
      'dataverse.forbidden',
      `Dataverse denied \`${where}\` (403)${text}. Give the application user the needed security role.`,
      {
        details,
      },
    );
  }
  if (status >= 500 || status === 408) {
    return new FerryError(
      `dataverse.http_${status}`,
      `Dataverse failed \`${where}\` with ${status}${tries}${text}. It is probably temporary; run again later.`,
      {
        details,
      },
    );
  }
  // The service's own error code (`0x80040217`) is a family of the catalogue: `dataverse.0x<code>`.
  const code: ErrorCode = error?.code
    ? (`dataverse.${error.code.toLowerCase()}` as ErrorCode)
    : `dataverse.http_${status}`;
  return new FerryError(
    code,
    `Dataverse answered \`${where}\` with ${status}${text}. Fix the request or the data it carries.`,
    {
      details,
    },
  );
}

/** Drops the query string (it may carry key values of customers) from URLs in messages. */
function redactUrl(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}
