import { ServiceFault } from './service-fault.js';

/** Who a request is from, as the service-protection limits count users. */
export interface Caller {
  /** Stable id of the calling user: the token's `oid` (object id of the application user's service principal). */
  readonly id: string;
  /** True when the request carried no token (the emulator lets such requests in as one anonymous user). */
  readonly anonymous: boolean;
}

const ANONYMOUS: Caller = { id: 'anonymous', anonymous: true };

/**
 * Identifies the caller from the bearer token, the way the service does: the limits are per user, and the user is
 * the one the Entra ID access token names (`oid`, or `appid`/`azp` for an application token without one), not
 * whatever a header claims and not the token's text (a refreshed token is the same user). A token that is not a JWT
 * naming a user is refused with 401 like the service's. The emulator does not check signatures: it is a local stand-in
 * for the service, reached on loopback, not an authority. Requests without `Authorization` count as one anonymous user.
 */
export function callerOf(headers: Readonly<Record<string, string>>): Caller {
  const header = headers.authorization;
  if (header === undefined) return ANONYMOUS;
  const m = /^Bearer\s+([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)$/.exec(header.trim());
  if (!m) throw unauthorized('The Authorization header is not a bearer JWT.');
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(m[2]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw unauthorized('The bearer token payload is not JSON.');
  }
  const id = [claims.oid, claims.appid, claims.azp].find((v) => typeof v === 'string' && v.length > 0);
  if (typeof id !== 'string') throw unauthorized('The bearer token names no user (no oid, appid or azp claim).');
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) throw unauthorized('The bearer token expired.');
  return { id: id.toLowerCase(), anonymous: false };
}

function unauthorized(message: string): ServiceFault {
  // The service answers 401 with an empty body and a WWW-Authenticate challenge; the message is the emulator's.
  return new ServiceFault(401, '', message, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
}
