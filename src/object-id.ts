/**
 * MongoDB-style ObjectIds: 4 bytes of seconds since the epoch, 5 random bytes fixed per process,
 * and a 3-byte counter. Ids made later sort later, which the stores use for newest-first order.
 */

// The random middle, as hex, made once per process: on first use, because Cloudflare Workers refuse
// to generate random values while a module loads.
let processRandom = ''
let counter = 0
// Many ids are made within one second: keep its prefix.
let lastSeconds = -1
let prefix = ''

/**
 * A new ObjectId as 24 lowercase hexadecimal characters.
 *
 * @example
 * ```ts
 * objectId() // '6568f1c2a1b2c3d4e5000001'
 * ```
 */
export function objectId(now: number = Date.now()): string {
  if (!processRandom) {
    processRandom = Array.from(crypto.getRandomValues(new Uint8Array(5)), (b) => b.toString(16).padStart(2, '0')).join('')
    counter = crypto.getRandomValues(new Uint32Array(1))[0]! & 0xffffff
  }
  counter = (counter + 1) & 0xffffff
  const seconds = Math.floor(now / 1000)
  if (seconds !== lastSeconds) {
    lastSeconds = seconds
    prefix = (seconds >>> 0).toString(16).padStart(8, '0').slice(-8) + processRandom
  }
  return prefix + counter.toString(16).padStart(6, '0')
}

/**
 * A company id (an ObjectId) for a tenant key of the host's own, for hosts whose tenants are not keyed
 * by ObjectIds: the first 12 bytes of the key's SHA-256, as hex. The same key gives the same id on
 * every instance and runtime; keep the mapping if you ever need to go back from the id.
 *
 * @example
 * ```ts
 * webhookApi(hooks, { company: (c) => companyIdFor(tenantOf(c)) }) // 'acme' -> '…24 hex…'
 * ```
 */
export async function companyIdFor(key: string): Promise<string> {
  if (typeof key !== 'string' || key === '') throw new TypeError('companyIdFor: the tenant key must be a non-empty string')
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(key)))
  return Array.from(digest.subarray(0, 12), (b) => b.toString(16).padStart(2, '0')).join('')
}
