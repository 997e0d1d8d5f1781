import { FerryError } from '../core/errors.js';

/**
 * An error the emulator answers with: HTTP status, the Web API hex code (may be empty, as the service sends for some
 * errors) and the service's message. Becomes `{"error":{"code","message"}}` on the wire (reference §8).
 */
export class ServiceFault extends FerryError {
  readonly status: number;
  readonly hexCode: string;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, hexCode: string, message: string, headers: Record<string, string> = {}) {
    super('emulator.service_fault', message);
    this.name = 'ServiceFault';
    this.status = status;
    this.hexCode = hexCode;
    this.headers = headers;
  }

  /** The JSON error body of the Web API. */
  body(): string {
    return JSON.stringify({ error: { code: this.hexCode, message: this.message } });
  }
}

/** Documented error responses (reference §1, §5, §8 and the test vectors); texts are the service's where known. */
export const faults = {
  notFoundSegment: (segment: string) =>
    new ServiceFault(404, '0x8006088a', `Resource not found for the segment '${segment}'.`),
  // TV3 shows the older empty code; the current service sends ObjectDoesNotExist (reference §1.3).
  recordNotFound: (table: string, id: string) =>
    new ServiceFault(404, '0x80040217', `${table} With Id = ${id} Does Not Exist`),
  recordsNotFound: (table: string, id: string) =>
    new ServiceFault(404, '0x80040217', `${table} With Ids = ${id} Do Not Exist`),
  keyNotFound: (table: string) =>
    new ServiceFault(404, '0x80040217', `A record with the specified key values does not exist in ${table} entity`),
  matchingKeyExists: () => new ServiceFault(412, '', 'A record with matching key values already exists.'),
  versionMismatch: () =>
    new ServiceFault(
      412,
      '0x80060882',
      "The version of the existing record doesn't match the RowVersion property provided.",
    ),
  duplicateDetected: () =>
    new ServiceFault(
      412,
      '0x80040333',
      'A record was not created or updated because a duplicate of the current record already exists.',
    ),
  entityKeyViolated: (keyName: string, attributes: readonly string[]) =>
    new ServiceFault(
      412,
      '0x80060892',
      `Entity Key ${keyName} violated. A record with the same value for ${attributes.join(', ')} already exists. ` +
        `A duplicate record cannot be created. Change the value of ${attributes.join(', ')} and try again.`,
    ),
  duplicateId: () => new ServiceFault(412, '0x80040237', 'Cannot insert duplicate key.'),
  invalidKey: (table: string) =>
    new ServiceFault(
      400,
      '0x80060890',
      `The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.${table}'. Ensure that the names ` +
        `and number of key properties match the declared or alternate key properties for the resource ` +
        `'Microsoft.Dynamics.CRM.${table}'.`,
    ),
  invalidProperty: (property: string, table: string) =>
    new ServiceFault(
      400,
      '0x0',
      `Invalid property '${property}' was found in entity 'Microsoft.Dynamics.CRM.${table}'.`,
    ),
  payload: (entitySet: string, inner: string) =>
    new ServiceFault(
      400,
      '0x80048d19',
      `Error identified in Payload provided by the user for Entity :'${entitySet}'  ---->  InnerException : ${inner}`,
    ),
  undeclaredNavigation: (entitySet: string, name: string) =>
    faults.payload(
      entitySet,
      `Microsoft.OData.ODataException: An undeclared property '${name}' which only has property annotations in the ` +
        `payload but no property value was found in the payload. In OData, only declared navigation properties and ` +
        `declared named streams can be represented as properties without values.`,
    ),
  tooLong: (attribute: string, table: string, max: number) =>
    new ServiceFault(
      400,
      '0x80044331',
      `A validation error occurred.  The length of the '${attribute}' attribute of the '${table}' entity exceeded the maximum allowed length of '${max}'.`,
    ),
  // Code and text for range errors are not documented (reference §8 marks them UNVERIFIED); the emulator uses the
  // validation family 0x80044331 with the wording the service uses for out-of-range values.
  outOfRange: (value: unknown, attribute: string, table: string, min: number, max: number) =>
    new ServiceFault(
      400,
      '0x80044331',
      `A validation error occurred. The value ${String(value)} of '${attribute}' on record of type '${table}' is outside the valid range. Accepted Values: ${min} to ${max}`,
    ),
  optionOutOfRange: (value: unknown, attribute: string, table: string, allowed: readonly number[]) =>
    new ServiceFault(
      400,
      '0x80061005',
      `The value is out of range. Value ${String(value)} of '${attribute}' on record of type '${table}' is not a valid option. Accepted Values: ${allowed.join(',')}`,
    ),
  dateTooEarly: (value: unknown, attribute: string, table: string) =>
    new ServiceFault(
      400,
      '0x80044331',
      `A validation error occurred. The date-time value ${String(value)} of '${attribute}' on record of type '${table}' is before 1/1/1753 12:00:00 AM, the minimum allowed.`,
    ),
  /** `CannotUseOpportunitySetStateMessage` in the service's error-code list; `{0}`/`{1}` as the service fills them. */
  useCloseMessage: (table: string, label: string) =>
    new ServiceFault(
      400,
      '0x80100005',
      `This message can not be used to set the state of ${table} to ${label}. In order to set state of ${table} to ${label}, use the ${label} message instead.`,
    ),
  invalidStatus: (status: number, state: number, table: string) =>
    new ServiceFault(
      400,
      '0x80040203',
      `${status} is not a valid status code for state code ${table}State.${state} on ${table}.`,
    ),
  requiredNull: (attribute: string, table: string) =>
    new ServiceFault(
      400,
      '0x80040203',
      `Attribute '${attribute}' of entity '${table}' is system required and cannot be set to null.`,
    ),
  badValue: (entitySet: string, value: unknown, edmType: string) =>
    faults.payload(
      entitySet,
      `Microsoft.OData.ODataException: Cannot convert the literal '${typeof value === 'string' ? value : JSON.stringify(value)}' to the expected type '${edmType}'.`,
    ),
  querySyntax: (message: string) => new ServiceFault(400, '0x80060888', message),
  methodNotAllowed: (method: string, path: string) =>
    new ServiceFault(405, '0x80060888', `The HTTP method '${method}' is not allowed for '${path}'.`),
};
