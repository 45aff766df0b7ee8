import type { COTWebhook } from './model.js'

/**
 * Rate limits, in process: a token bucket per webhook (deliveries per second) and a cap on requests
 * in flight per receiver host, so one slow or chatty customer cannot take every send slot. A
 * delivery over a limit is handed back to the store, due when the limit allows it, without using up
 * an attempt and without holding a slot while it waits.
 */

/** Options of the limits; all are off by default. */
export interface RateLimitOptions {
  /**
   * Attempts per second per webhook: a number for all, or a function of the webhook (return
   * `undefined` for no limit). Default: no limit.
   */
  perSecond?: number | ((webhook: COTWebhook) => number | undefined)
  /** Attempts a webhook may make at once after being idle (the bucket's size). Default: `max(1, perSecond)`. */
  burst?: number
  /** Requests in flight at once to one host (`host:port` of the URL). Default: no limit. */
  hostConcurrency?: number
}

/** What `acquire` decides: go (and `release` when the request ends), or wait until `until`. */
export type RateAdmission = { ok: true; release: () => void } | { ok: false; until: number; reason: string }

/** The limiter's handle. */
export interface RateLimiter {
  /** Takes a token of the webhook and a slot of its host, or says when to look again. */
  acquire(webhook: COTWebhook, now: number): RateAdmission
}

// A full host is looked at again after this long (a slot frees when any request to it ends).
const HOST_WAIT_MS = 250
const MAX_BUCKETS = 100_000

/**
 * Creates the limiter.
 *
 * @example
 * ```ts
 * const limiter = createRateLimiter({ perSecond: 10, hostConcurrency: 4 })
 * const admission = limiter.acquire(webhook, Date.now())
 * ```
 */
export function createRateLimiter(options: RateLimitOptions = {}): RateLimiter {
  const { perSecond, burst, hostConcurrency } = options
  if (typeof perSecond === 'number' && !(perSecond > 0)) throw new RangeError(`rateLimit.perSecond must be a positive number, not ${perSecond}`)
  if (burst !== undefined && !(Number.isInteger(burst) && burst >= 1)) throw new RangeError(`rateLimit.burst must be a positive integer, not ${burst}`)
  if (hostConcurrency !== undefined && !(Number.isInteger(hostConcurrency) && hostConcurrency >= 1)) {
    throw new RangeError(`rateLimit.hostConcurrency must be a positive integer, not ${hostConcurrency}`)
  }
  const buckets = new Map<string, { tokens: number; at: number }>()
  const hosts = new Map<string, number>()

  const rateOf = (webhook: COTWebhook): number | undefined => {
    const rate = typeof perSecond === 'function' ? perSecond(webhook) : perSecond
    return rate !== undefined && rate > 0 && Number.isFinite(rate) ? rate : undefined
  }

  return {
    acquire(webhook, now) {
      let host: string | undefined
      if (hostConcurrency !== undefined) {
        host = hostOf(webhook.url)
        if ((hosts.get(host) ?? 0) >= hostConcurrency) {
          return { ok: false, until: now + HOST_WAIT_MS, reason: `${host} has ${hostConcurrency} requests in flight` }
        }
      }
      const rate = rateOf(webhook)
      if (rate !== undefined) {
        const size = burst ?? Math.max(1, rate)
        let bucket = buckets.get(webhook._id)
        if (!bucket) {
          if (buckets.size >= MAX_BUCKETS) buckets.clear()
          bucket = { tokens: size, at: now }
          buckets.set(webhook._id, bucket)
        }
        bucket.tokens = Math.min(size, bucket.tokens + ((now - bucket.at) * rate) / 1000)
        bucket.at = now
        if (bucket.tokens < 1) {
          return { ok: false, until: now + Math.ceil(((1 - bucket.tokens) * 1000) / rate), reason: `over ${rate} per second` }
        }
        bucket.tokens -= 1
      }
      if (host === undefined) return { ok: true, release: () => {} }
      const key = host
      hosts.set(key, (hosts.get(key) ?? 0) + 1)
      let released = false
      return {
        ok: true,
        release: () => {
          if (released) return
          released = true
          const left = (hosts.get(key) ?? 1) - 1
          if (left <= 0) hosts.delete(key)
          else hosts.set(key, left)
        },
      }
    },
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return url
  }
}
