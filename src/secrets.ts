import * as v from 'valibot'
import { generateSecret } from './signing.js'
import { generateSigningKey, isSigningKey, type SignatureScheme } from './signing-keys.js'
import type { StoredWebhook } from './store.js'

// A webhook's signing secrets as the registry keeps them: the current one first, then those retiring
// after a rotation; the shape a given secret must have; a new one of either kind.

/** The current secret of a stored webhook. */
export function currentSecret(record: StoredWebhook): string {
  const first = record.secrets[0]
  return typeof first === 'string' ? first : first!.secret
}

/** The secrets to sign with at `now` (current first), and when that set next changes. */
export function validSecrets(record: StoredWebhook, now: number): { secrets: string[]; changesAt: number } {
  const secrets = [currentSecret(record)]
  let changesAt = Infinity
  for (const entry of record.secrets.slice(1)) {
    if (typeof entry === 'string') secrets.push(entry)
    else if (entry.expiresAt > now) {
      secrets.push(entry.secret)
      changesAt = Math.min(changesAt, entry.expiresAt)
    }
  }
  return { secrets, changesAt }
}

/** A secret given to a rotation: a `whsec_` secret of 24 to 64 bytes, or a `whsk_` Ed25519 signing key. */
export const SecretSchema = v.pipe(
  v.string('must be a string'),
  v.regex(/^wh(sec|sk)_[A-Za-z0-9+/]+={0,2}$/, 'must be whsec_ or whsk_ followed by base64'),
  v.check((value) => {
    if (value.startsWith('whsk_')) return isSigningKey(value) || !/^whsk_[A-Za-z0-9+/]+={0,2}$/.test(value)
    if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(value)) return true // already reported by the regex
    const bytes = Math.floor(((value.length - 6) * 3) / 4) - (value.match(/=+$/)?.[0].length ?? 0)
    return bytes >= 24 && bytes <= 64
  }, 'must carry 24 to 64 bytes (whsec_) or 64 bytes (whsk_: the Ed25519 seed, then its public key)'),
)

/** A new key of `scheme`: a `whsec_` secret or a `whsk_` Ed25519 signing key. */
export const newKey = (scheme: SignatureScheme) => (scheme === 'ed25519' ? generateSigningKey() : Promise.resolve(generateSecret()))
