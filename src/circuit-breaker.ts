/**
 * A circuit breaker per webhook, in process. After `failureThreshold` failed attempts in a row the
 * circuit opens: the webhook's deliveries are handed back to the store, due when it closes, instead
 * of holding send slots on an endpoint that is down. When the cool-down ends one probe attempt goes
 * through (half-open): success closes the circuit, failure opens it again for twice as long.
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
  /** May an attempt to this webhook start now? A probe must report back with `success` or `failure`. */
  admit(webhookId: string, now: number): Admission
  /** An attempt succeeded; resolves `true` when that closed an open circuit. */
  success(webhookId: string): boolean
  /** An attempt failed; returns the time the circuit stays open until, when this opened it. */
  failure(webhookId: string, now: number): number | undefined
  /** An admitted probe ended without an attempt (deferred, or the run stopped). */
  abandon(webhookId: string): void
  /** The circuit's state now. */
  state(webhookId: string, now: number): { state: CircuitState; failures: number; openUntil?: number }
}

// While a probe is out, the others look again after this long.
const PROBE_WAIT_MS = 1_000
// Circuits kept at most: the idle, closed ones are dropped first.
const MAX_CIRCUITS = 100_000

/**
 * Creates the breaker; `false` options make one that always admits.
 *
 * @example
 * ```ts
 * const breaker = createCircuitBreaker({ failureThreshold: 5 })
 * const admission = breaker.admit(webhookId, Date.now())
 * ```
 */
export function createCircuitBreaker(options: CircuitBreakerOptions | false = {}): CircuitBreaker {
  const enabled = options !== false
  const config = options || {}
  const threshold = config.failureThreshold ?? 5
  const cooldown = config.cooldownMs ?? 10_000
  const maxCooldown = config.maxCooldownMs ?? 300_000
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`circuitBreaker.failureThreshold must be a positive integer, not ${threshold}`)
  if (!Number.isInteger(cooldown) || cooldown < 1) throw new RangeError(`circuitBreaker.cooldownMs must be a positive integer, not ${cooldown}`)
  if (!Number.isInteger(maxCooldown) || maxCooldown < cooldown) throw new RangeError(`circuitBreaker.maxCooldownMs must be an integer ≥ cooldownMs, not ${maxCooldown}`)
  const circuits = new Map<string, Circuit>()

  const get = (id: string): Circuit => {
    let circuit = circuits.get(id)
    if (!circuit) {
      if (circuits.size >= MAX_CIRCUITS) {
        for (const [key, value] of circuits) if (!value.failures && !value.probing) circuits.delete(key)
      }
      circuit = { failures: 0, openUntil: 0, cooldownMs: cooldown, probing: false }
      circuits.set(id, circuit)
    }
    return circuit
  }

  return {
    admit(id, now) {
      if (!enabled) return { ok: true, probe: false }
      const circuit = circuits.get(id)
      if (!circuit || circuit.failures < threshold) return { ok: true, probe: false }
      if (now < circuit.openUntil) return { ok: false, until: circuit.openUntil }
      if (circuit.probing) return { ok: false, until: now + PROBE_WAIT_MS }
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
    failure(id, now) {
      if (!enabled) return undefined
      const circuit = get(id)
      const wasProbe = circuit.probing
      circuit.probing = false
      circuit.failures++
      if (circuit.failures < threshold) return undefined
      if (wasProbe) circuit.cooldownMs = Math.min(circuit.cooldownMs * 2, maxCooldown)
      else if (circuit.failures > threshold && now < circuit.openUntil) return undefined // already open (a straggler)
      circuit.openUntil = now + circuit.cooldownMs
      return circuit.openUntil
    },
    abandon(id) {
      const circuit = circuits.get(id)
      if (circuit) circuit.probing = false
    },
    state(id, now) {
      const circuit = circuits.get(id)
      if (!enabled || !circuit || circuit.failures < threshold) return { state: 'closed', failures: circuit?.failures ?? 0 }
      return { state: now < circuit.openUntil ? 'open' : 'half-open', failures: circuit.failures, openUntil: circuit.openUntil }
    },
  }
}
