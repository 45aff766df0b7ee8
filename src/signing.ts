import { fromBase64, toBase64 } from './base64.js'
import { WebhookVerificationError } from './errors.js'
import type { COTEvent } from './model.js'
import { PUBLIC_KEY_PREFIX, SIGNING_KEY_PREFIX, importPublicKey, importSigningKey } from './signing-keys.js'

/**
 * Standard Webhooks signing on WebCrypto: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by
 * the bytes of a `whsec_<base64>` secret, and `v1a,<base64 Ed25519 signature>` under a `whsk_`
 * signing key (see ./signing-keys.ts). Several valid keys give several space-separated signatures.
 */

const SECRET_PREFIX = 'whsec_'
const encoder = new TextEncoder()

/** How far a `webhook-timestamp` may be from now before `verifyWebhook` refuses it (5 minutes). */
export const TIMESTAMP_TOLERANCE_SECONDS = 5 * 60

/**
 * A new secret: `whsec_` and the base64 of 32 random bytes (the spec allows 24 to 64).
 *
 * @example
 * ```ts
 * generateSecret() // 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
 * ```
 */
export function generateSecret(): string {
  return SECRET_PREFIX + toBase64(crypto.getRandomValues(new Uint8Array(32)))
}

/**
 * The signing key of a secret, importable once and reused for every attempt of a delivery: an HMAC
 * key for a `whsec_` secret, an Ed25519 key for a `whsk_` signing key.
 *
 * @example
 * ```ts
 * const key = await importSecret('whsec_…') // key.algorithm.name === 'HMAC'
 * ```
 */
export async function importSecret(secret: string): Promise<CryptoKey> {
  if (secret.startsWith(SIGNING_KEY_PREFIX)) return importSigningKey(secret)
  const bytes = secretBytes(secret)
  return crypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
}

/**
 * The `webhook-signature` header value for one message under one or more keys.
 *
 * @example
 * ```ts
 * const keys = await Promise.all(secrets.map(importSecret))
 * await sign(keys, deliveryId, Math.floor(Date.now() / 1000), body) // 'v1,K5oZ…='
 * ```
 */
export async function sign(keys: readonly CryptoKey[], id: string, timestamp: number, body: string): Promise<string> {
  const content = encoder.encode(`${id}.${timestamp}.${body}`)
  const signatures = await Promise.all(
    keys.map(async (key) => {
      const ed25519 = key.algorithm.name === 'Ed25519'
      const signature = await crypto.subtle.sign(ed25519 ? 'Ed25519' : 'HMAC', key, content)
      return `${ed25519 ? 'v1a' : 'v1'},${toBase64(new Uint8Array(signature))}`
    }),
  )
  return signatures.join(' ')
}

/** Headers as a `Headers`, a plain object (Node's `IncomingHttpHeaders` included) or a getter. */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>

/**
 * Verifies a received webhook and returns its COTEvent. Rejects with {@link WebhookVerificationError}
 * when a header is missing, the timestamp is more than 5 minutes off, or no signature matches.
 *
 * @param secret - the webhook's `whsec_…` secret, or its `whpk_…` public key when it signs with
 *   Ed25519 (`v1a`); several during a rotation, of either kind
 * @param headers - the request headers
 * @param body - the raw request body, exactly as received
 * @example
 * ```ts
 * app.post('/hook', async (c) => {
 *   const event = await verifyWebhook(secret, c.req.raw.headers, await c.req.text())
 *   return c.body(null, 204)
 * })
 * ```
 */
export async function verifyWebhook(
  secret: string | readonly string[],
  headers: HeadersLike,
  body: string | Uint8Array,
  options: { now?: number; toleranceSeconds?: number } = {},
): Promise<COTEvent> {
  const id = header(headers, 'webhook-id')
  const timestampText = header(headers, 'webhook-timestamp')
  const signatures = header(headers, 'webhook-signature')
  if (!id || !timestampText || !signatures) {
    throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header')
  }
  const timestamp = Number(timestampText)
  const now = Math.floor((options.now ?? Date.now()) / 1000)
  const tolerance = options.toleranceSeconds ?? TIMESTAMP_TOLERANCE_SECONDS
  if (!/^\d+$/.test(timestampText) || Math.abs(now - timestamp) > tolerance) {
    throw new WebhookVerificationError(`webhook-timestamp ${timestampText} is more than ${tolerance} s from now`)
  }
  const text = typeof body === 'string' ? body : new TextDecoder().decode(body)
  const content = encoder.encode(`${id}.${timestampText}.${text}`)
  const secrets = typeof secret === 'string' ? [secret] : secret
  const keys = await Promise.all(secrets.map(verifyingKey))
  for (const candidate of signatures.split(' ')) {
    const [version, value] = candidate.split(',', 2)
    if ((version !== 'v1' && version !== 'v1a') || !value) continue
    let signature: Uint8Array<ArrayBuffer>
    try {
      signature = fromBase64(value)
    } catch {
      continue
    }
    const algorithm = version === 'v1a' ? 'Ed25519' : 'HMAC'
    // subtle.verify compares in constant time.
    for (const key of keys) {
      if (key.algorithm.name === algorithm && (await crypto.subtle.verify(algorithm, key, signature, content))) return JSON.parse(text) as COTEvent
    }
  }
  throw new WebhookVerificationError('no webhook-signature matches the secret')
}

/** The key a receiver verifies with: HMAC for `whsec_`, Ed25519 for `whpk_`; a `whsk_` is refused. */
async function verifyingKey(secret: string): Promise<CryptoKey> {
  if (secret.startsWith(SIGNING_KEY_PREFIX)) {
    throw new WebhookVerificationError('a receiver verifies with the public key (whpk_…), never the signing key (whsk_…): keep that with the sender')
  }
  try {
    return secret.startsWith(PUBLIC_KEY_PREFIX) ? await importPublicKey(secret) : await importSecret(secret)
  } catch (cause) {
    throw new WebhookVerificationError('the secret is not a valid whsec_ secret or whpk_ public key', { cause })
  }
}

function header(headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined
  const record = headers as Record<string, string | string[] | undefined>
  const value = record[name] ?? Object.entries(record).find(([k]) => k.toLowerCase() === name)?.[1]
  return Array.isArray(value) ? value.join(' ') : value
}

function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const text = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret
  const bytes = fromBase64(text)
  if (bytes.length === 0) throw new RangeError('a whsec_ secret must not be empty')
  return bytes
}
