import { fromBase64, toBase64, toBase64Url } from './base64.js'

/**
 * The key kinds of Standard Webhooks: a shared `whsec_` secret signs `v1` (HMAC-SHA256); an Ed25519
 * `whsk_` signing key signs `v1a`, and the receiver holds only its `whpk_` public key. The kind of a
 * webhook's key is told by its prefix, so the COTWebhook itself carries nothing new.
 */

/** How a webhook's requests are signed: `'hmac-sha256'` (`v1`, the default) or `'ed25519'` (`v1a`). */
export type SignatureScheme = 'hmac-sha256' | 'ed25519'

/** The prefix of an Ed25519 signing key (kept by the sender only). */
export const SIGNING_KEY_PREFIX = 'whsk_'
/** The prefix of an Ed25519 public key (given to receivers). */
export const PUBLIC_KEY_PREFIX = 'whpk_'

// A signing key holds the 32-byte seed and then the 32-byte public key, as libsodium lays out a
// secret key: the public half is read off it without any crypto, and a receiver's key follows.
const SEED_BYTES = 32
const KEY_BYTES = 64

/**
 * The scheme a stored secret signs with, from its prefix.
 *
 * @example
 * ```ts
 * signatureSchemeOf('whsk_…') // 'ed25519'
 * signatureSchemeOf('whsec_…') // 'hmac-sha256'
 * ```
 */
export function signatureSchemeOf(secret: string): SignatureScheme {
  return secret.startsWith(SIGNING_KEY_PREFIX) ? 'ed25519' : 'hmac-sha256'
}

/**
 * A new Ed25519 signing key, `whsk_` and the base64 of its 32-byte seed and 32-byte public key.
 *
 * @example
 * ```ts
 * const key = await generateSigningKey() // 'whsk_…'
 * publicKeyOf(key) // 'whpk_…', for the receiver
 * ```
 */
export async function generateSigningKey(): Promise<string> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair
  const jwk = await crypto.subtle.exportKey('jwk', pair.privateKey)
  const seed = fromBase64(base64UrlToBase64(jwk.d!))
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey))
  const bytes = new Uint8Array(KEY_BYTES)
  bytes.set(seed, 0)
  bytes.set(publicKey, SEED_BYTES)
  return SIGNING_KEY_PREFIX + toBase64(bytes)
}

/**
 * The `whpk_` public key of a `whsk_` signing key: what a receiver verifies `v1a` signatures with.
 * A `whsec_` secret has no public half and is returned as it is (a receiver needs the secret itself).
 *
 * @example
 * ```ts
 * publicKeyOf('whsk_…') // 'whpk_…'
 * ```
 */
export function publicKeyOf(secret: string): string {
  if (signatureSchemeOf(secret) !== 'ed25519') return secret
  return PUBLIC_KEY_PREFIX + toBase64(signingKeyBytes(secret).subarray(SEED_BYTES))
}

/**
 * Imports a `whsk_` signing key for WebCrypto's Ed25519 `sign`, checking that its public half belongs
 * to its seed (a key pasted from elsewhere with the halves mixed up would sign what nobody verifies).
 *
 * @example
 * ```ts
 * const key = await importSigningKey('whsk_…')
 * await crypto.subtle.sign('Ed25519', key, bytes)
 * ```
 */
export async function importSigningKey(signingKey: string): Promise<CryptoKey> {
  const bytes = signingKeyBytes(signingKey)
  const key = await crypto.subtle.importKey(
    'jwk',
    { kty: 'OKP', crv: 'Ed25519', d: toBase64Url(bytes.subarray(0, SEED_BYTES)), x: toBase64Url(bytes.subarray(SEED_BYTES)) },
    { name: 'Ed25519' },
    false,
    ['sign'],
  )
  const probe = new Uint8Array([0x63, 0x77])
  const signature = await crypto.subtle.sign('Ed25519', key, probe)
  if (!(await crypto.subtle.verify('Ed25519', await importPublicKey(publicKeyOf(signingKey)), signature, probe))) {
    throw new RangeError('a whsk_ signing key must hold its seed and then the public key of that seed')
  }
  return key
}

/**
 * Imports a `whpk_` public key for WebCrypto's Ed25519 `verify`.
 *
 * @example
 * ```ts
 * const key = await importPublicKey('whpk_…')
 * ```
 */
export async function importPublicKey(publicKey: string): Promise<CryptoKey> {
  if (!publicKey.startsWith(PUBLIC_KEY_PREFIX)) throw new RangeError('an Ed25519 public key starts with whpk_')
  const bytes = fromBase64(publicKey.slice(PUBLIC_KEY_PREFIX.length))
  if (bytes.length !== SEED_BYTES) throw new RangeError(`a whpk_ public key must carry 32 bytes, not ${bytes.length}`)
  return crypto.subtle.importKey('raw', bytes, { name: 'Ed25519' }, false, ['verify'])
}

/** Whether `text` is a well-formed `whsk_` signing key (64 bytes of base64). */
export function isSigningKey(text: string): boolean {
  if (!/^whsk_[A-Za-z0-9+/]+={0,2}$/.test(text)) return false
  try {
    return fromBase64(text.slice(SIGNING_KEY_PREFIX.length)).length === KEY_BYTES
  } catch {
    return false
  }
}

function signingKeyBytes(signingKey: string): Uint8Array<ArrayBuffer> {
  if (!isSigningKey(signingKey)) throw new RangeError('a whsk_ signing key must be whsk_ and the base64 of 64 bytes')
  return fromBase64(signingKey.slice(SIGNING_KEY_PREFIX.length))
}

const base64UrlToBase64 = (text: string) => text.replace(/-/g, '+').replace(/_/g, '/')
