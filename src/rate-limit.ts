import { hostOf } from './host-of.js'
import { keyedSlots, type KeyedSlots } from './keyed-slots.js'
import type { COTWebhook } from './model.js'
import type { RateLimit } from './store.js'

/**
 * Rate limits: attempts per second per webhook, and requests in flight per receiver host, so one slow
 * or chatty customer cannot take every send slot. The per-second limit is kept by the store (a token
 * bucket per webhook, shared by every engine on it) and applied when deliveries are claimed: a
 * webhook over its rate is simply not handed out until a token is there. The host cap is per process:
 * a delivery whose host is full waits in line for a slot (without holding a send slot) as long as its
 * lease allows, and is handed back only past that.
 */

/** Options of the limits; all are off by default. */
export interface RateLimitOptions {
  /**
   * Attempts per second per webhook: a number for all, or a function of the webhook (return
   * `undefined` for no limit). Default: no limit. Kept in the store for each webhook when it is
   * created or changed, and whenever a claim shows the stored one differs from this.
   */
  perSecond?: number | ((webhook: COTWebhook) => number | undefined)
  /** Attempts a webhook may make at once after being idle (the bucket's size). Default: `max(1, perSecond)`. */
  burst?: number
  /** Requests in flight at once to one host (`host:port` of the URL). Default: no limit. */
  hostConcurrency?: number
  /**
   * Requests in flight at once for one webhook (with `ordering: 'none'`; ordered webhooks have one).
   * Default: a quarter of the engine's `concurrency`, at least 1, so one webhook whose endpoint hangs
   * cannot take every send slot.
   */
  webhookConcurrency?: number
}

/** The limiter's handle. */
export interface RateLimiter {
  /** The per-second limit this engine's options give a webhook, or `null`. */
  rateOf(webhook: COTWebhook): RateLimit | null
  /** A slot of the URL's host now (call the function to give it back), or `undefined` when it is full. */
  trySlot(url: string): (() => void) | undefined
  /** Waits in line for a slot of the URL's host; `undefined` after `maxWaitMs` or on abort. */
  waitSlot(url: string, maxWaitMs: number, signal: AbortSignal): Promise<(() => void) | undefined>
  /** The webhook's share of the send slots: held and waited for like a host's. */
  webhooks: KeyedSlots
}

// Without a host limit every attempt gets this (nothing to allocate on the hot path).
const NO_SLOT = () => {}

/**
 * Creates the limiter.
 *
 * @example
 * ```ts
 * const limiter = createRateLimiter({ perSecond: 10, hostConcurrency: 4 })
 * const release = limiter.trySlot(webhook.url) // a slot, or undefined when the host is full
 * ```
 */
export function createRateLimiter(options: RateLimitOptions = {}, concurrency = 32): RateLimiter {
  const { perSecond, burst, hostConcurrency, webhookConcurrency = Math.max(1, Math.ceil(concurrency / 4)) } = options
  if (typeof perSecond === 'number' && !(perSecond > 0)) throw new RangeError(`rateLimit.perSecond must be a positive number, not ${perSecond}`)
  if (burst !== undefined && !(Number.isInteger(burst) && burst >= 1)) throw new RangeError(`rateLimit.burst must be a positive integer, not ${burst}`)
  if (hostConcurrency !== undefined && !(Number.isInteger(hostConcurrency) && hostConcurrency >= 1)) {
    throw new RangeError(`rateLimit.hostConcurrency must be a positive integer, not ${hostConcurrency}`)
  }
  if (!(Number.isInteger(webhookConcurrency) && webhookConcurrency >= 1)) {
    throw new RangeError(`rateLimit.webhookConcurrency must be a positive integer, not ${webhookConcurrency}`)
  }
  const hosts = keyedSlots(hostConcurrency ?? Number.POSITIVE_INFINITY)

  const rateOf = (webhook: COTWebhook): RateLimit | null => {
    const rate = typeof perSecond === 'function' ? perSecond(webhook) : perSecond
    if (rate === undefined || !(rate > 0) || !Number.isFinite(rate)) return null
    return { perSecond: rate, burst: burst ?? Math.max(1, Math.floor(rate)) }
  }

  return {
    rateOf,
    trySlot: (url) => (hostConcurrency === undefined ? NO_SLOT : hosts.trySlot(hostOf(url))),
    waitSlot: (url, maxWaitMs, signal) => hosts.waitSlot(hostOf(url), maxWaitMs, signal),
    webhooks: keyedSlots(webhookConcurrency),
  }
}

