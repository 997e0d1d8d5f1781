import { FerryError } from '../../../core/errors.js';

/**
 * An activity failure as the monitoring view shows it: the documented error code where the docs give one
 * (`DynamicsOperationFailed`, `DynamicsMissingTargetForMultiTargetLookupField`, …) and a message naming the value.
 */
export class ActivityError extends FerryError {
  readonly errorCode: string;
  readonly failureType: 'UserError' | 'SystemError';

  constructor(
    errorCode: string,
    message: string,
    options: { cause?: unknown; failureType?: 'UserError' | 'SystemError' } = {},
  ) {
    super(`synapse_runtime.${errorCode}`, message, { cause: options.cause });
    this.name = 'ActivityError';
    this.errorCode = errorCode;
    this.failureType = options.failureType ?? 'UserError';
  }
}

/** Something in the artifacts the local runtime does not implement: never a silent pass. */
export class UnsupportedError extends FerryError {
  constructor(message: string) {
    super('synapse_runtime.unsupported', message);
    this.name = 'UnsupportedError';
  }
}
