import { hostOf } from './host-of.js'
import { clipText } from './clip-text.js'
import type { Attempt } from './model.js'
import { parseRetryAfter } from './retry-policy.js'
import type { Signer } from './signer.js'
import type { Transport } from './transport.js'
import { VERSION } from './version.js'

const USER_AGENT = `cotwebhook/${VERSION}`

/**
 * One HTTP attempt: build the signed request, send it with a timeout and without following
 * redirects, read a bounded part of the response, and classify the outcome.
 */

/** How an attempt ended. `gone` (410) means the receiver asked never to be called again. */
export type Outcome = 'success' | 'gone' | 'retry'

/** Everything one attempt needs. */
export interface AttemptRequest {
  /** Where to POST. */
  url: string
  /** The delivery id (`webhook-id`). */
  id: string
  /** The COTEvent, serialised once per delivery. */
  body: string
  /** The webhook's valid secrets, prepared by `signer`. */
  keys: readonly unknown[]
  /** Makes the signature. */
  signer: Signer
  /** Abort the attempt after this long, body included. */
  timeoutMs: number
  /** Keep at most this many bytes of the response body. */
  maxResponseBytes: number
  /** Upper bound for `Retry-After`. */
  maxRetryAfterMs: number
  /** The HTTP client. */
  transport: Transport
  /** The clock. */
  now: () => number
  /** More headers (trace context); the webhook headers win over any of the same name. */
  headers?: Readonly<Record<string, string>>
}

/** What one attempt gave. */
export interface AttemptResult {
  /** success, gone, or retry. */
  outcome: Outcome
  /** The record of the attempt (what the log keeps). */
  attempt: Attempt
  /** The response body (truncated) or a description of the failure. */
  response: string
  /** The receiver's `Retry-After` on 429 or 503, capped. */
  retryAfterMs?: number
}

// Only these statuses carry a Retry-After we honour: "slow down" and "come back later".
const RETRY_AFTER_STATUSES = new Set([429, 503])

// Cotalker logs a failure without a response as status 409; we do too, with `error` saying what it was.
const NO_RESPONSE_STATUS = 409

/**
 * Sends one attempt. Never throws for anything the network or the receiver does. `extraHeaders`
 * (default `request.headers`) go with the request; the webhook headers win over any of the same name.
 *
 * @example
 * ```ts
 * const r = await sendAttempt({ url, id, body, keys, signer: webCryptoSigner, timeoutMs: 15_000, maxResponseBytes: 20_480,
 *   maxRetryAfterMs: 3_600_000, transport: fetchTransport(), now: Date.now })
 * r.outcome // 'success' | 'gone' | 'retry'
 * ```
 */
export async function sendAttempt(request: AttemptRequest, extraHeaders: Readonly<Record<string, string>> | undefined = request.headers): Promise<AttemptResult> {
  const startedAt = request.now()
  const timestamp = Math.floor(startedAt / 1000)
  const signature = await request.signer.sign(request.keys, request.id, timestamp, request.body)
  const controller = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort()
  }, request.timeoutMs)
  try {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': request.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signature,
    }
    // Added after, not spread first: a spread of objects of varying shape made every attempt's header
    // object a slow one to build (a third of the attempt's own time with trace headers on). Names are
    // compared lower-cased (HTTP's are case-insensitive) and as own keys (`constructor` is a header too).
    if (extraHeaders) {
      for (const [name, value] of Object.entries(extraHeaders)) {
        const lower = name.toLowerCase()
        if (!Object.hasOwn(headers, lower)) headers[lower] = value
      }
    }
    const response = await request.transport({
      url: request.url,
      headers,
      body: request.body,
      signal: controller.signal,
      timeoutMs: request.timeoutMs,
      maxResponseBytes: request.maxResponseBytes,
    })
    const text = response.body
    const durationMs = request.now() - startedAt
    const status = response.status
    const outcome: Outcome = status >= 200 && status < 300 ? 'success' : status === 410 ? 'gone' : 'retry'
    const result: AttemptResult = {
      outcome,
      attempt: { at: new Date(startedAt).toISOString(), status, durationMs },
      response: text,
    }
    if (RETRY_AFTER_STATUSES.has(status)) {
      const retryAfterMs = parseRetryAfter(response.header('retry-after'), request.now(), request.maxRetryAfterMs)
      if (retryAfterMs !== undefined) result.retryAfterMs = retryAfterMs
    }
    if (outcome === 'retry' && status >= 300 && status < 400) {
      // Redirects are never followed: a receiver that moved must be re-registered.
      // The note and the body together stay within the log's limit (a Location header may be 16 KB).
      result.response = clipText(`redirect to ${response.header('location') ?? '(no location)'} not followed${text ? `: ${text}` : ''}`, request.maxResponseBytes)
    }
    return result
  } catch (cause) {
    const durationMs = request.now() - startedAt
    const error = timedOut ? `timeout: no complete response within ${request.timeoutMs} ms` : describeNetworkError(cause)
    return {
      outcome: 'retry',
      attempt: { at: new Date(startedAt).toISOString(), status: NO_RESPONSE_STATUS, durationMs, error },
      response: clipText(`POST ${hostOf(request.url)}: ${error} after ${durationMs} ms`, request.maxResponseBytes),
    }
  } finally {
    clearTimeout(timer)
  }
}

// Node's fetch wraps socket errors as `TypeError: fetch failed` with the system error as `cause`.
const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'refused: connection refused',
  ECONNRESET: 'reset: connection reset by the receiver',
  EPIPE: 'reset: connection closed while sending',
  UND_ERR_SOCKET: 'reset: connection closed by the receiver',
  ENOTFOUND: 'dns: host name not found',
  EAI_AGAIN: 'dns: host name lookup failed',
  EHOSTUNREACH: 'unreachable: no route to host',
  ENETUNREACH: 'unreachable: network unreachable',
  UND_ERR_HEADERS_TIMEOUT: 'timeout: no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'timeout: response body stalled',
  UND_ERR_HEADERS_OVERFLOW: 'protocol: response headers larger than the client accepts',
  HPE_HEADER_OVERFLOW: 'protocol: response headers larger than the client accepts',
  UND_ERR_RESPONSE_EXCEEDED_MAX_SIZE: 'protocol: response larger than the client accepts',
}

function describeNetworkError(error: unknown): string {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current; depth++) {
    const code = (current as { code?: unknown }).code
    // The transport refused the resolved destination (cotwebhook/node): say why, it is the customer's to fix.
    if (code === 'ERR_UNSAFE_DESTINATION') return `unsafe: ${(current as Error).message} (${code})`
    if (typeof code === 'string' && NETWORK_CODES[code]) return `${NETWORK_CODES[code]} (${code})`
    current = (current as { cause?: unknown }).cause
  }
  // Unknown: every message down the cause chain ("fetch failed" alone says nothing).
  const messages: string[] = []
  current = error
  for (let depth = 0; depth < 4 && current; depth++) {
    const message = current instanceof Error ? current.message : String(current)
    const code = (current as { code?: unknown }).code
    if (message && !messages.includes(message)) messages.push(typeof code === 'string' ? `${message} (${code})` : message)
    current = (current as { cause?: unknown }).cause
  }
  return `network: ${messages.join(': ') || 'unknown failure'}`
}

