import { LRUCache } from 'lru-cache'

/**
 * A circuit breaker per webhook, in process. After `failureThreshold` failed attempts in a row the
 * circuit opens: the webhook's deliveries are handed back to the store, due after it closes, instead
 * of holding send slots on an endpoint that is down. When the cool-down ends one probe attempt goes
 * through (half-open): its success closes the circuit, its failure opens it again for twice as long.
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

/** What `admit` decides. */
export type Admission = { ok: true; probe: boolean } | { ok: false; until: number }

interface Circuit {
  failures: number
  openUntil: number
  cooldownMs: number
  probing: boolean
}

/** The breaker's handle. */
export interface CircuitBreaker {
  /** May an attempt to this webhook start now? A probe must report back with `success`, `failure` or `abandon`. */
  admit(webhookId: string, now: number): Admission
  /** An attempt succeeded (a probe's, or a straggler's: either shows the endpoint answers); `true` when that closed an open circuit. */
  success(webhookId: string): boolean
  /** An attempt failed; returns the time the circuit stays open until, when this opened it. */
  failure(webhookId: string, now: number, probe: boolean): number | undefined
  /** An admitted probe ended without an attempt (deferred, or the run stopped). */
  abandon(webhookId: string): void
  /** Forgets a webhook's circuit (its URL changed, or it was turned on again). */
  reset(webhookId: string): void
  /** The circuit's state now. */
  state(webhookId: string, now: number): { state: CircuitState; failures: number; openUntil?: number }
}

/** Options the engine adds. */
export interface CircuitRuntime {
  /** How long an attempt may take: the others wait this long for a probe out. */
  attemptMs: number
  /** Spreads hand-backs so a circuit's deliveries do not all come due at once. Default Math.random. */
  random?: () => number
}

// Circuits kept at most; the least recently used go first.
const MAX_CIRCUITS = 100_000

/**
 * Creates the breaker; `false` makes one that always admits.
 *
 * @example
 * ```ts
 * const breaker = createCircuitBreaker({ failureThreshold: 5 }, { attemptMs: 15_000 })
 * const admission = breaker.admit(webhookId, Date.now())
 * ```
 */
export function createCircuitBreaker(options: CircuitBreakerOptions | false = {}, runtime: CircuitRuntime = { attemptMs: 15_000 }): CircuitBreaker {
  const enabled = options !== false
  const config = options || {}
  const threshold = config.failureThreshold ?? 5
  const cooldown = config.cooldownMs ?? 10_000
  const maxCooldown = config.maxCooldownMs ?? 300_000
  const random = runtime.random ?? Math.random
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`circuitBreaker.failureThreshold must be a positive integer, not ${threshold}`)
  if (!Number.isInteger(cooldown) || cooldown < 1) throw new RangeError(`circuitBreaker.cooldownMs must be a positive integer, not ${cooldown}`)
  if (!Number.isInteger(maxCooldown) || maxCooldown < cooldown) throw new RangeError(`circuitBreaker.maxCooldownMs must be an integer ≥ cooldownMs, not ${maxCooldown}`)
  const circuits = new LRUCache<string, Circuit>({ max: MAX_CIRCUITS })
  // A hand-back lands somewhere in the next tenth of the wait (at most a second later), not all at once.
  const spread = (until: number, now: number) => until + Math.floor(random() * Math.min(1_000, Math.max(1, (until - now) / 10)))

  return {
    admit(id, now) {
      if (!enabled) return { ok: true, probe: false }
      const circuit = circuits.get(id)
      if (!circuit || circuit.failures < threshold) return { ok: true, probe: false }
      if (now < circuit.openUntil) return { ok: false, until: spread(circuit.openUntil, now) }
      // Half-open with a probe out: look again once it has had its time.
      if (circuit.probing) return { ok: false, until: spread(now + runtime.attemptMs, now) }
      circuit.probing = true
      return { ok: true, probe: true }
    },
    success(id) {
      const circuit = circuits.get(id)
      if (!circuit) return false
      const wasOpen = circuit.failures >= threshold
      circuits.delete(id)
      return enabled && wasOpen
    },
    failure(id, now, probe) {
      if (!enabled) return undefined
      let circuit = circuits.get(id)
      if (!circuit) circuits.set(id, (circuit = { failures: 0, openUntil: 0, cooldownMs: cooldown, probing: false }))
      circuit.failures++
      if (probe) {
        // Only the probe's own failure decides the next cool-down.
        circuit.probing = false
        circuit.cooldownMs = Math.min(circuit.cooldownMs * 2, maxCooldown)
        circuit.openUntil = now + circuit.cooldownMs
        return circuit.openUntil
      }
      if (circuit.failures === threshold) {
        circuit.openUntil = now + circuit.cooldownMs
        return circuit.openUntil
      }
      return undefined // closed and under the threshold, or a straggler of an already open circuit
    },
    abandon(id) {
      const circuit = circuits.get(id)
      if (circuit) circuit.probing = false
    },
    reset(id) {
      circuits.delete(id)
    },
    state(id, now) {
      const circuit = circuits.get(id)
      if (!enabled || !circuit || circuit.failures < threshold) return { state: 'closed', failures: circuit?.failures ?? 0 }
      return { state: now < circuit.openUntil ? 'open' : 'half-open', failures: circuit.failures, openUntil: circuit.openUntil }
    },
  }
}
