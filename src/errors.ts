/**
 * Typed errors. Each carries a stable `code` (the `error.code` of an HTTP error body) and the HTTP
 * `status` the REST face answers with, so the mapping lives with the error instead of in a switch.
 */

/** The `error.code` values the REST API answers with. */
export type ErrorCode =
  | 'validation_error'
  | 'invalid_json'
  | 'unauthorized'
  | 'not_found'
  | 'conflict'
  | 'unsafe_url'
  | 'payload_too_large'
  | 'lease_lost'
  | 'verification_failed'

/**
 * Base class of every error the library throws on purpose.
 *
 * @example
 * ```ts
 * try { await hooks.registry.get(company, id) }
 * catch (e) { if (e instanceof WebhookError) console.log(e.code, e.status) }
 * ```
 */
export class WebhookError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode
  /** HTTP status the REST API maps this error to. */
  readonly status: number

  constructor(code: ErrorCode, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.status = status
  }
}

/**
 * Bad input: `fields` maps each offending field (dotted path, `''` for the whole value) to messages.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof ValidationError) console.log(e.fields) } // { code: ['code: only …'] }
 * ```
 */
export class ValidationError extends WebhookError {
  /** Messages per field path. */
  readonly fields: Record<string, string[]>

  constructor(message: string, fields: Record<string, string[]>, options?: { cause?: unknown }) {
    super('validation_error', 400, message, options)
    this.fields = fields
  }

  /**
   * One field, one rule: the common case outside valibot schemas.
   *
   * @example
   * ```ts
   * throw ValidationError.field('code', 'code cannot be changed once saved')
   * ```
   */
  static field(field: string, message: string): ValidationError {
    return new ValidationError(message, { [field]: [message] })
  }
}

/**
 * A request body that is not JSON.
 *
 * @example
 * ```ts
 * throw new InvalidJsonError('request body is not valid JSON', { cause })
 * ```
 */
export class InvalidJsonError extends WebhookError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid_json', 400, message, options)
  }
}

/**
 * The caller could not be tied to a company.
 *
 * @example
 * ```ts
 * throw new UnauthorizedError('no company for this request')
 * ```
 */
export class UnauthorizedError extends WebhookError {
  constructor(message = 'missing or unknown credentials: no company for this request') {
    super('unauthorized', 401, message)
  }
}

/**
 * A webhook or log that does not exist in the caller's company (another company's ids included).
 *
 * @example
 * ```ts
 * throw new NotFoundError('webhook', id)
 * ```
 */
export class NotFoundError extends WebhookError {
  constructor(what: string, id: string) {
    super('not_found', 404, `${what} ${id} not found`)
  }
}

/**
 * A duplicate `code` in the company, or a stale `__v` on update.
 *
 * @example
 * ```ts
 * throw new ConflictError('code "wo_update" is already used in this company', 'code')
 * ```
 */
export class ConflictError extends WebhookError {
  /** The field the conflict is about (`code` or `__v`). */
  readonly field: string

  constructor(message: string, field: string) {
    super('conflict', 409, message)
    this.field = field
  }
}

/**
 * A delivery URL refused by the URL policy; the message names the rule and the host.
 *
 * @example
 * ```ts
 * throw new UnsafeUrlError('http://127.0.0.1/', '127.0.0.1 is a loopback address', { privateNetwork: true })
 * ```
 */
export class UnsafeUrlError extends WebhookError {
  /** The refused URL. */
  readonly url: string
  /** Why it was refused. */
  readonly reason: string

  constructor(url: string, reason: string, options: { privateNetwork?: boolean; cause?: unknown } = {}) {
    super(
      'unsafe_url',
      400,
      options.privateNetwork
        ? `url: ${reason}; set allowPrivateNetworks: true to allow private, loopback and link-local destinations`
        : `url: ${reason}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    )
    this.url = url
    this.reason = reason
  }
}

/**
 * A body or event over the configured size.
 *
 * @example
 * ```ts
 * throw new PayloadTooLargeError(65536)
 * ```
 */
export class PayloadTooLargeError extends WebhookError {
  constructor(limitBytes: number) {
    super('payload_too_large', 413, `body is larger than ${limitBytes} bytes`)
  }
}

/**
 * An event whose JSON is over the engine's `maxEventBytes`: refused by `emit()` before anything is stored.
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof EventTooLargeError) console.log(e.bytes, e.limitBytes) }
 * ```
 */
export class EventTooLargeError extends WebhookError {
  /** The event's size as JSON, in bytes. */
  readonly bytes: number
  /** The limit it is over. */
  readonly limitBytes: number

  constructor(bytes: number, limitBytes: number) {
    super('payload_too_large', 413, `event: is ${bytes} bytes as JSON, over the limit of ${limitBytes} bytes (maxEventBytes); send a reference to large data instead`)
    this.bytes = bytes
    this.limitBytes = limitBytes
  }
}

/**
 * A store refused a settle or release because the caller no longer holds the delivery's lease
 * (it expired and the delivery may have been claimed by someone else).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof LeaseLostError) return } // another instance owns it now
 * ```
 */
export class LeaseLostError extends WebhookError {
  constructor(deliveryId: string) {
    super('lease_lost', 409, `delivery ${deliveryId}: the lease is no longer held by this claimer`)
  }
}

/**
 * `verifyWebhook` refused a request: missing header, stale timestamp or no matching signature.
 *
 * @example
 * ```ts
 * try { await verifyWebhook(secret, req.headers, body) }
 * catch (e) { if (e instanceof WebhookVerificationError) return new Response(null, { status: 401 }) }
 * ```
 */
export class WebhookVerificationError extends WebhookError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('verification_failed', 401, message, options)
  }
}

/**
 * A host's company resolver (`webhookApi` or `webhookConsole`'s `company` option) returned something
 * that is not a company id. The host's configuration, not the caller's: answered 500, and reported
 * through `onError` with the value it returned.
 *
 * @example
 * ```ts
 * webhookApi(hooks, { company: (c) => companyIdFor(tenantOf(c)), onError: (e) => log.error(e) })
 * ```
 */
export class CompanyResolverError extends Error {
  /** What the resolver returned. */
  readonly value: unknown

  constructor(where: string, value: unknown) {
    super(
      `${where}: options.company returned ${JSON.stringify(value)}, which is not a company id (a 24-hex ObjectId); ` +
        'map your tenant keys to ObjectIds, for example with companyIdFor(key)',
    )
    this.name = 'CompanyResolverError'
    this.value = value
  }
}
