import { createCircuitBreaker, type CircuitBreaker, type CircuitBreakerOptions, type CircuitState } from './circuit-breaker.js'
import { createHealthTracker, type HealthOptions, type HealthTracker, type WebhookHealth } from './health.js'
import type { COTWebhook } from './model.js'
import type { DisableReason, HookCaller } from './operator-hooks.js'

/**
 * What an engine knows of each endpoint and does about it: the failure runs (health), the circuit,
 * turning a webhook off, and forgetting both when the webhook gets a new URL or is turned on again.
 */

/** A webhook's health as this engine saw it, with its circuit. */
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
  circuitBreaker?: CircuitBreakerOptions | false | undefined
  health?: HealthOptions | undefined
  /** How long an attempt may take (others wait this long for a circuit's probe). */
  attemptMs: number
  /** Turns a webhook off; `false` when it was off already. */
  deactivate: (company: string, webhookId: string) => Promise<boolean>
  hook: HookCaller
}

/** The guard's handle. */
export interface EndpointGuard {
  readonly breaker: CircuitBreaker
  readonly health: HealthTracker
  /** Turns a webhook off and tells the operator, once. */
  disable(company: string, webhookId: string, reason: DisableReason): Promise<void>
  /** A registry write: a new endpoint, or one turned on again, starts with a clean slate. */
  written(webhookId: string, change: { before?: COTWebhook; after: COTWebhook }): void
  /** What is known of the webhook now. */
  report(webhook: COTWebhook, now: number): HealthReport
}

/**
 * Creates the guard.
 *
 * @example
 * ```ts
 * const guard = createEndpointGuard({ attemptMs: 15_000, deactivate: (c, id) => registry.deactivate(c, id), hook })
 * guard.report(webhook, Date.now()).circuit // 'closed'
 * ```
 */
export function createEndpointGuard(options: EndpointGuardOptions): EndpointGuard {
  const breaker = createCircuitBreaker(options.circuitBreaker ?? {}, { attemptMs: options.attemptMs })
  const health = createHealthTracker(options.health)
  return {
    breaker,
    health,
    async disable(company, webhookId, reason) {
      const seen = health.get(webhookId)
      if (await options.deactivate(company, webhookId)) {
        options.hook('webhookDisabled', { company, webhookId, reason, consecutiveFailures: seen.consecutiveFailures, failingSince: seen.failingSince })
      }
    },
    written(webhookId, { before, after }) {
      // Other edits (a description, a rotated secret) keep the counts, so they cannot be used to dodge
      // the circuit or the health rule.
      if (before && (before.url !== after.url || (!before.isActive && after.isActive))) {
        health.reset(webhookId)
        breaker.reset(webhookId)
      }
    },
    report(webhook, now) {
      const circuit = breaker.state(webhook._id, now)
      return {
        webhookId: webhook._id,
        isActive: webhook.isActive,
        ...health.get(webhook._id),
        circuit: circuit.state,
        failedAttempts: circuit.failures,
        circuitOpenUntil: circuit.openUntil ?? null,
      }
    },
  }
}
