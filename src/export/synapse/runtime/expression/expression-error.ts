import { FerryError } from '../../../../core/errors.js';

/** A pipeline expression that cannot be parsed or evaluated; the message names the expression or function. */
export class ExpressionError extends FerryError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('synapse_runtime.expression', message, options);
    this.name = 'ExpressionError';
  }
}
