import { circuitPolicy, circuitStateAt, type CircuitBreakerOptions, type CircuitState } from './circuit-breaker.js'
import { healthPolicy, type HealthOptions, type WebhookHealth } from './health.js'
import type { COTWebhook } from './model.js'
import type { DisableReason, HookCaller } from './operator-hooks.js'
import type { RateLimiter } from './rate-limit.js'
import { LRUCache } from 'lru-cache'
import type { EndpointChange, EndpointPolicy, EndpointState, RateLimit, Store } from './store.js'

/**
 * What an engine does about endpoints, over the state the store keeps for every engine: the policy
 * each settle applies (health, circuit), turning a webhook off, starting afresh when a webhook gets a
 * new URL or is turned on again, keeping the stored rate in line with the options, and the report.
 */

/** A webhook's health as the store holds it, with its circuit. */
export interface HealthReport extends WebhookHealth {
  /** The webhook's `_id`. */
  webhookId: string
  /** Whether the webhook is on. */
  isActive: boolean
  /** `open`: attempts are held back; `half-open`: one probe may go; `closed`: normal. */
  circuit: CircuitState
  /** Failed attempts in a row (what opens the circuit). */
  failedAttempts: number
  /** While open: when the next probe may go (epoch ms). */
  circuitOpenUntil: number | null
}

/** Options of {@link createEndpointGuard}. */
export interface EndpointGuardOptions {
  store: Store
  circuitBreaker?: CircuitBreakerOptions | false | undefined
  health?: HealthOptions | undefined
  limiter: RateLimiter
  /** Turns a webhook off; `false` when it was off already. */
  deactivate: (company: string, webhookId: string) => Promise<boolean>
  hook: HookCaller
}

/** The guard's handle. */
export interface EndpointGuard {
  /** What every settle that reports an attempt applies. */
  readonly policy: EndpointPolicy
  /** Turns a webhook off and tells the operator, once (from the engine whose write turned it off). */
  disable(company: string, webhookId: string, reason: DisableReason, counts: Pick<WebhookHealth, 'consecutiveFailures' | 'failingSince'>): Promise<void>
  /** Whether one more exhausted delivery would turn the webhook off (read before it is recorded). */
  wouldDisable(webhookId: string, now: number): Promise<{ reason: DisableReason; consecutiveFailures: number; failingSince: number } | undefined>
  /** A registry write: a new endpoint, or one turned on again, starts with a clean slate; the rate follows the options. */
  written(webhookId: string, change: { before?: COTWebhook; after: COTWebhook }): Promise<void>
  /** A claim showed the rate the store keeps for a webhook: set it to what the options say if it differs. */
  syncRate(webhook: COTWebhook, stored: RateLimit | null): Promise<void>
  /** What the store holds of the webhook now. */
  report(webhook: COTWebhook, now: number): Promise<HealthReport>
  /** A settle answered this about the webhook's endpoint: remember whether its circuit is open. */
  learned(webhookId: string, change: EndpointChange | undefined): void
  /**
   * Until when the webhook's circuit is open, as far as this engine's settles have told it (0: not
   * known to be open). A delivery claimed before the circuit opened checks it before it is sent.
   */
  heldUntil(webhookId: string, now: number): number
}

// Circuits this engine saw open, kept for the most recently failing webhooks only.
const KNOWN_CIRCUITS = 10_000

/**
 * Creates the guard.
 *
 * @example
 * ```ts
 * const guard = createEndpointGuard({ store, limiter, deactivate: (c, id) => registry.deactivate(c, id), hook })
 * await guard.report(webhook, Date.now()) // { circuit: 'closed', consecutiveFailures: 0, … }
 * ```
 */
export function createEndpointGuard(options: EndpointGuardOptions): EndpointGuard {
  const { store, limiter, hook } = options
  const policy: EndpointPolicy = { ...circuitPolicy(options.circuitBreaker ?? {}), ...healthPolicy(options.health) }
  // The rates this engine last saw stored or set, so a claim that agrees costs nothing.
  const knownRates = new Map<string, string>()
  const rateKey = (rate: RateLimit | null) => (rate ? `${rate.perSecond}/${rate.burst}` : 'none')

  const openCircuits = new LRUCache<string, number>({ max: KNOWN_CIRCUITS })

  const setRate = async (webhookId: string, rate: RateLimit | null) => {
    await store.setRate(webhookId, rate)
    knownRates.set(webhookId, rateKey(rate))
  }

  return {
    policy,

    learned(webhookId, change) {
      if (change?.openUntil !== undefined) openCircuits.set(webhookId, change.openUntil)
      else if (change) openCircuits.delete(webhookId)
    },

    heldUntil(webhookId, now) {
      const until = openCircuits.get(webhookId)
      if (until === undefined) return 0
      if (until > now) return until
      openCircuits.delete(webhookId)
      return 0
    },

    async disable(company, webhookId, reason, counts) {
      if (await options.deactivate(company, webhookId)) {
        hook('webhookDisabled', { company, webhookId, reason, consecutiveFailures: counts.consecutiveFailures, failingSince: counts.failingSince })
      }
    },

    async wouldDisable(webhookId, now) {
      const { disableAfterFailures, disableAfterMs } = policy
      if (!disableAfterFailures && !disableAfterMs) return undefined
      const state = await store.endpoint(webhookId)
      const consecutiveFailures = state.consecutiveFailures + 1
      const failingSince = state.failingSince ?? now
      if (disableAfterFailures && consecutiveFailures >= disableAfterFailures) return { reason: 'failures', consecutiveFailures, failingSince }
      if (disableAfterMs && now - failingSince >= disableAfterMs) return { reason: 'failing-too-long', consecutiveFailures, failingSince }
      return undefined
    },

    async written(webhookId, { before, after }) {
      // Other edits (a description, a rotated secret) keep the counts, so they cannot be used to dodge
      // the circuit or the health rule.
      if (before && (before.url !== after.url || (!before.isActive && after.isActive))) await store.resetEndpoint(webhookId)
      const rate = limiter.rateOf(after)
      if (knownRates.get(webhookId) !== rateKey(rate) && (before || rate)) await setRate(webhookId, rate)
    },

    async syncRate(webhook, stored) {
      const rate = limiter.rateOf(webhook)
      if (rateKey(rate) === rateKey(stored)) knownRates.set(webhook._id, rateKey(rate))
      else await setRate(webhook._id, rate)
    },

    async report(webhook, now) {
      const state: EndpointState = await store.endpoint(webhook._id)
      return {
        webhookId: webhook._id,
        isActive: webhook.isActive,
        consecutiveFailures: state.consecutiveFailures,
        failingSince: state.failingSince,
        lastSuccessAt: state.lastSuccessAt,
        lastFailureAt: state.lastFailureAt,
        circuit: policy.failureThreshold ? circuitStateAt(state, now) : 'closed',
        failedAttempts: state.failedAttempts,
        circuitOpenUntil: state.openUntil,
      }
    },
  }
}
