/**
 * Endpoint health options. The counts themselves are shared state kept by the store for each
 * webhook (see `endpoint-state.ts`): deliveries exhausted in a row, when that run of failures began,
 * the last success. The policy turns a webhook off (`isActive: false`) after too many exhausted
 * deliveries in a row or after failing for too long; a 410 turns it off at once (the sender's rule).
 */

/** When to turn a failing webhook off. */
export interface HealthOptions {
  /** Deliveries exhausted in a row (no success between them) that turn the webhook off. 0: never. Default 50. */
  disableAfterFailures?: number
  /** Time since the first of those failures that turns the webhook off. 0: never. Default 432 000 000 (5 days). */
  disableAfterMs?: number
}

/** A webhook's health, as every engine on the store sees it. */
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

/**
 * The health settings with defaults applied and checked.
 *
 * @example
 * ```ts
 * healthPolicy({ disableAfterFailures: 20 }) // { disableAfterFailures: 20, disableAfterMs: 432_000_000 }
 * ```
 */
export function healthPolicy(options: HealthOptions = {}): { disableAfterFailures: number; disableAfterMs: number } {
  const maxFailures = options.disableAfterFailures ?? 50
  const maxMs = options.disableAfterMs ?? 432_000_000
  if (!Number.isInteger(maxFailures) || maxFailures < 0) throw new RangeError(`health.disableAfterFailures must be an integer ≥ 0, not ${maxFailures}`)
  if (!Number.isInteger(maxMs) || maxMs < 0) throw new RangeError(`health.disableAfterMs must be an integer ≥ 0, not ${maxMs}`)
  return { disableAfterFailures: maxFailures, disableAfterMs: maxMs }
}
