import type { JsonObject } from './expression/json-value.js';
import { UnsupportedError } from './runtime-error.js';

/** Keys every activity may carry; `userProperties`/`description` have no effect on execution. */
export const IGNORED_ACTIVITY_KEYS = [
  'name',
  'type',
  'dependsOn',
  'userProperties',
  'description',
  'policy',
  'typeProperties',
  'linkedServiceName',
  'inputs',
  'outputs',
  'state',
  'onInactiveMarkAs',
];

/**
 * Fails on a property the runtime does not implement, naming it: a property the runtime does not know could change
 * what the service does, so it is never ignored silently.
 */
export function checkKeys(object: JsonObject, known: readonly string[], where: string): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      throw new UnsupportedError(
        `Property \`${key}\` of ${where} is not implemented by the local runtime (known: ${known.join(', ')}).`,
      );
    }
  }
}
