/**
 * The circuit breaker's options. The circuit itself is shared state kept by the store for each
 * webhook (see `endpoint-state.ts`): after `failureThreshold` failed attempts in a row it opens and
 * claims skip the webhook; when the cool-down ends one probe goes through (half-open): its success
 * closes the circuit, its failure opens it again for twice as long, up to `maxCooldownMs`.
 */

/** Options of the breaker. */
export interface CircuitBreakerOptions {
  /** Failed attempts in a row that open the circuit. Default 5. */
  failureThreshold?: number
  /** First cool-down. Default 10 000 ms. */
  cooldownMs?: number
  /** Longest cool-down (it doubles on each failed probe). Default 300 000 ms. */
  maxCooldownMs?: number
}

/** A webhook's circuit as seen now. */
export type CircuitState = 'closed' | 'open' | 'half-open'

/**
 * The breaker's settings with defaults applied and checked; `false` turns the circuit off (threshold 0).
 *
 * @example
 * ```ts
 * circuitPolicy({ failureThreshold: 3 }) // { failureThreshold: 3, cooldownMs: 10_000, maxCooldownMs: 300_000 }
 * ```
 */
export function circuitPolicy(options: CircuitBreakerOptions | false = {}): { failureThreshold: number; cooldownMs: number; maxCooldownMs: number } {
  const config = options || {}
  const threshold = config.failureThreshold ?? 5
  const cooldown = config.cooldownMs ?? 10_000
  const maxCooldown = config.maxCooldownMs ?? 300_000
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`circuitBreaker.failureThreshold must be a positive integer, not ${threshold}`)
  if (!Number.isInteger(cooldown) || cooldown < 1) throw new RangeError(`circuitBreaker.cooldownMs must be a positive integer, not ${cooldown}`)
  if (!Number.isInteger(maxCooldown) || maxCooldown < cooldown) throw new RangeError(`circuitBreaker.maxCooldownMs must be an integer ≥ cooldownMs, not ${maxCooldown}`)
  return { failureThreshold: options === false ? 0 : threshold, cooldownMs: cooldown, maxCooldownMs: maxCooldown }
}

/**
 * The circuit's state at `now` from the stored endpoint state.
 *
 * @example
 * ```ts
 * circuitStateAt({ openUntil: null }, Date.now()) // 'closed'
 * ```
 */
export function circuitStateAt(state: { openUntil: number | null }, now: number): CircuitState {
  if (state.openUntil === null) return 'closed'
  return now < state.openUntil ? 'open' : 'half-open'
}
