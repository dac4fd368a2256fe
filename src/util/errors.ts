// Errors that a user can cause (a bad flag, a missing file, a malformed line) are thrown as
// UserError. The CLI prints them as one line and exits non-zero, with no stack trace.
// Anything else is a bug in minichat and keeps its stack trace.

export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * A model's outputs are not finite numbers (NaN or infinity): its weights have diverged
 * (a learning rate far too high). Training loops catch it to stop with the last good
 * checkpoint; anywhere else it is one line like any UserError.
 */
export class NotFiniteError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'NotFiniteError';
  }
}

/** Throw a UserError unless `cond` holds. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new UserError(typeof message === 'string' ? message : message());
}
