/**
 * Endpoint health, per webhook and per process: deliveries exhausted in a row, when that run of
 * failures began, and the last success. The policy turns a webhook off (`isActive: false`) after too
 * many exhausted deliveries in a row or after failing for too long; a 410 turns it off at once
 * (that is the sender's rule, not this file's).
 */

/** When to turn a failing webhook off. */
export interface HealthOptions {
  /** Deliveries exhausted in a row (no success between them) that turn the webhook off. 0: never. Default 50. */
  disableAfterFailures?: number
  /** Time since the first of those failures that turns the webhook off. 0: never. Default 432 000 000 (5 days). */
  disableAfterMs?: number
}

/** A webhook's health as this process saw it. */
export interface WebhookHealth {
  /** Deliveries exhausted in a row since the last success. */
  consecutiveFailures: number
  /** When the first attempt of that run failed (epoch ms), or `null` while healthy. */
  failingSince: number | null
  /** The last successful attempt (epoch ms), or `null` if none was seen. */
  lastSuccessAt: number | null
  /** The last failed attempt (epoch ms), or `null`. */
  lastFailureAt: number | null
}

/** The tracker's handle. */
export interface HealthTracker {
  /** An attempt failed (the delivery may still be retried). */
  attemptFailed(webhookId: string, at: number): void
  /** An attempt succeeded: the failure run ends. */
  succeeded(webhookId: string, at: number): void
  /** A delivery was exhausted; returns why the webhook should be turned off, if it should. */
  exhausted(webhookId: string, now: number): 'failures' | 'failing-too-long' | undefined
  /** What is known of the webhook. */
  get(webhookId: string): WebhookHealth
  /** Forgets a webhook (turned off, or turned on again by its owner). */
  reset(webhookId: string): void
}

const EMPTY: WebhookHealth = { consecutiveFailures: 0, failingSince: null, lastSuccessAt: null, lastFailureAt: null }
const MAX_TRACKED = 100_000

/**
 * Creates the tracker.
 *
 * @example
 * ```ts
 * const health = createHealthTracker({ disableAfterFailures: 20 })
 * if (health.exhausted(webhookId, Date.now())) await registry.deactivate(company, webhookId)
 * ```
 */
export function createHealthTracker(options: HealthOptions = {}): HealthTracker {
  const maxFailures = options.disableAfterFailures ?? 50
  const maxMs = options.disableAfterMs ?? 432_000_000
  if (!Number.isInteger(maxFailures) || maxFailures < 0) throw new RangeError(`health.disableAfterFailures must be an integer ≥ 0, not ${maxFailures}`)
  if (!Number.isInteger(maxMs) || maxMs < 0) throw new RangeError(`health.disableAfterMs must be an integer ≥ 0, not ${maxMs}`)
  const tracked = new Map<string, WebhookHealth>()

  const entry = (id: string): WebhookHealth => {
    let health = tracked.get(id)
    if (!health) {
      if (tracked.size >= MAX_TRACKED) {
        for (const [key, value] of tracked) if (!value.consecutiveFailures) tracked.delete(key)
      }
      health = { ...EMPTY }
      tracked.set(id, health)
    }
    return health
  }

  return {
    attemptFailed(id, at) {
      const health = entry(id)
      health.lastFailureAt = at
      health.failingSince ??= at
    },
    succeeded(id, at) {
      const health = entry(id)
      health.lastSuccessAt = at
      health.consecutiveFailures = 0
      health.failingSince = null
    },
    exhausted(id, now) {
      const health = entry(id)
      health.consecutiveFailures++
      health.failingSince ??= now
      if (maxFailures && health.consecutiveFailures >= maxFailures) return 'failures'
      if (maxMs && now - health.failingSince >= maxMs) return 'failing-too-long'
      return undefined
    },
    get: (id) => ({ ...(tracked.get(id) ?? EMPTY) }),
    reset(id) {
      const health = tracked.get(id)
      if (health) Object.assign(health, { consecutiveFailures: 0, failingSince: null })
    },
  }
}
