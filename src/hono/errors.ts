import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { ConflictError, UnsafeUrlError, ValidationError, WebhookError } from '../errors.js'

/** The error body of every 4xx and 5xx the REST API answers: `{ error: { code, message, fields? } }`. */
export interface ErrorBody {
  error: {
    /** Stable code: `validation_error`, `invalid_json`, `unauthorized`, `not_found`, `conflict`, `unsafe_url`, `payload_too_large`, `internal`. */
    code: string
    /** What went wrong, naming the field and the rule. */
    message: string
    /** For validation errors: messages per field path. */
    fields?: Record<string, string[]>
  }
}

/**
 * Answers an error thrown by a route: a {@link WebhookError} with its own status and code, anything
 * else (a bug, a store that failed) with a 500 that reveals nothing.
 *
 * @example
 * ```ts
 * app.onError((error, c) => errorResponse(c, error, console.error))
 * ```
 */
export function errorResponse(c: Context, error: unknown, onError: (error: unknown) => void): Response {
  if (error instanceof WebhookError) {
    const body: ErrorBody = { error: { code: error.code, message: error.message } }
    if (error instanceof ValidationError) body.error.fields = error.fields
    else if (error instanceof UnsafeUrlError) body.error.fields = { url: [error.message] }
    else if (error instanceof ConflictError) body.error.fields = { [error.field]: [error.message] }
    return c.json(body, error.status as ContentfulStatusCode)
  }
  onError(error)
  const body: ErrorBody = { error: { code: 'internal', message: 'internal error' } }
  return c.json(body, 500)
}
