/**
 * CSRF tokens for the console's forms: an HMAC of the company and the time it was issued, under a
 * key only the server holds. A page from another site cannot read a token (same-origin policy) nor
 * make one (no key), so a form it submits is refused. WebCrypto only: it runs on every runtime.
 */

/** Issues and checks tokens. */
export interface Csrf {
  /** A token for forms of this company's pages. */
  issue(company: string): Promise<string>
  /** Whether `token` was issued by this key for this company, less than `maxAgeMs` ago. */
  check(company: string, token: unknown): Promise<boolean>
}

const encoder = new TextEncoder()

/**
 * Creates the token maker. Without a secret, a random key per process: tokens then do not survive
 * a restart and are not shared by several instances (pass `secret` for that).
 *
 * @example
 * ```ts
 * const csrf = createCsrf({ secret: process.env.CONSOLE_SECRET })
 * const token = await csrf.issue(company) // put in a hidden field
 * await csrf.check(company, form._csrf)   // true
 * ```
 */
export function createCsrf(options: { secret?: string; maxAgeMs?: number; now?: () => number } = {}): Csrf {
  const maxAgeMs = options.maxAgeMs ?? 12 * 3_600_000
  const now = options.now ?? Date.now
  let key: Promise<CryptoKey> | undefined
  const keyOf = () =>
    (key ??= crypto.subtle.importKey(
      'raw',
      options.secret ? encoder.encode(options.secret) : crypto.getRandomValues(new Uint8Array(32)),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    ))
  const mac = async (company: string, issuedAt: number) => {
    const signature = new Uint8Array(await crypto.subtle.sign('HMAC', await keyOf(), encoder.encode(`${company}.${issuedAt}`)))
    return btoa(String.fromCharCode(...signature)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  }
  return {
    async issue(company) {
      const issuedAt = now()
      return `${issuedAt}.${await mac(company, issuedAt)}`
    },
    async check(company, token) {
      if (typeof token !== 'string') return false
      const [at, given, extra] = token.split('.')
      const issuedAt = Number(at)
      if (extra !== undefined || !given || !Number.isSafeInteger(issuedAt)) return false
      if (now() - issuedAt > maxAgeMs || issuedAt > now() + 60_000) return false
      return timingSafeEqual(given, await mac(company, issuedAt))
    },
  }
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}
