import type { EndpointChange, EndpointReport, EndpointState } from './store.js'

/**
 * The rules of an endpoint's shared state, as one pure function: what an attempt's outcome does to a
 * webhook's health (deliveries exhausted in a row, how long it has been failing) and to its circuit
 * (attempts failed in a row open it; after the cool-down one probe goes; the probe's failure opens it
 * again for twice as long, its success closes it). The memory store applies it as is; the SQL stores
 * apply the same rules in SQL, and the conformance suite holds them to the same answers.
 */

/** The state of an endpoint nothing was recorded for yet. */
export function emptyEndpoint(): EndpointState {
  return {
    consecutiveFailures: 0,
    failingSince: null,
    lastSuccessAt: null,
    lastFailureAt: null,
    failedAttempts: 0,
    openUntil: null,
    cooldownMs: 0,
    probeUntil: null,
    rate: null,
    open: 0,
  }
}

/**
 * Applies an attempt's outcome to the state (in place) and says what changed.
 *
 * @param state - the endpoint's state, changed in place
 * @param report - the outcome and the rules
 * @param now - when the attempt ended
 * @param probe - whether the attempt was the half-open probe
 * @example
 * ```ts
 * const state = emptyEndpoint()
 * applyEndpointReport(state, { outcome: 'failure', policy }, Date.now(), false).circuit // opens at the threshold
 * ```
 */
export function applyEndpointReport(state: EndpointState, report: EndpointReport, now: number, probe: boolean): EndpointChange {
  const policy = report.policy
  let circuit: EndpointChange['circuit']
  let disable: EndpointChange['disable']
  if (report.outcome === 'success') {
    // Any success shows the endpoint answers: a probe's, or an attempt admitted before the circuit opened.
    if (state.openUntil !== null) circuit = { state: 'closed' }
    state.failedAttempts = 0
    state.openUntil = null
    state.cooldownMs = 0
    state.probeUntil = null
    state.lastSuccessAt = now
    state.consecutiveFailures = 0
    state.failingSince = null
  } else {
    state.lastFailureAt = now
    state.failingSince ??= now
    if (policy.failureThreshold > 0) {
      state.failedAttempts++
      if (probe) {
        // Only the probe's own failure decides the next cool-down.
        state.cooldownMs = Math.min(Math.max(state.cooldownMs, policy.cooldownMs) * 2, policy.maxCooldownMs)
        state.openUntil = now + state.cooldownMs
        state.probeUntil = null
        circuit = { state: 'open', until: state.openUntil }
      } else if (state.openUntil === null && state.failedAttempts >= policy.failureThreshold) {
        state.cooldownMs = policy.cooldownMs
        state.openUntil = now + policy.cooldownMs
        circuit = { state: 'open', until: state.openUntil }
      }
      // Otherwise: closed and under the threshold, or a straggler of a circuit already open.
    }
    if (report.exhausted) {
      state.consecutiveFailures++
      if (policy.disableAfterFailures > 0 && state.consecutiveFailures >= policy.disableAfterFailures) disable = 'failures'
      else if (policy.disableAfterMs > 0 && now - state.failingSince >= policy.disableAfterMs) disable = 'failing-too-long'
    }
  }
  return {
    ...(circuit ? { circuit } : {}),
    ...(state.openUntil !== null && state.openUntil > now ? { openUntil: state.openUntil } : {}),
    ...(disable ? { disable } : {}),
    consecutiveFailures: state.consecutiveFailures,
    failingSince: state.failingSince,
  }
}

/** Forgets a webhook's health and circuit (a new URL, or turned on again); its rate and last times stay. */
export function resetEndpointState(state: EndpointState): void {
  state.consecutiveFailures = 0
  state.failingSince = null
  state.failedAttempts = 0
  state.openUntil = null
  state.cooldownMs = 0
  state.probeUntil = null
}

/**
 * Refills a token bucket to `now` and says how many tokens are whole, and when the next one is.
 *
 * @example
 * ```ts
 * const bucket = { tokens: 0, at: 0 }
 * refill(bucket, { perSecond: 20, burst: 1 }, 50) // { whole: 1, nextAt: 50 }
 * ```
 */
export function refill(bucket: { tokens: number; at: number | null }, rate: { perSecond: number; burst: number }, now: number): { whole: number; nextAt: number } {
  if (bucket.at === null) bucket.tokens = rate.burst
  else bucket.tokens = Math.min(rate.burst, bucket.tokens + (Math.max(0, now - bucket.at) * rate.perSecond) / 1000)
  bucket.at = now
  const whole = Math.floor(bucket.tokens + 1e-9)
  return { whole, nextAt: whole >= 1 ? now : now + Math.ceil(((1 - bucket.tokens) * 1000) / rate.perSecond) }
}

/**
 * The earliest an endpoint lets anything go: after an open circuit's cool-down, once a probe out has
 * come back, when its rate bucket holds a token. `-Infinity`: nothing holds it back.
 *
 * @example
 * ```ts
 * endpointGate(queue.endpoint, queue.bucket) // -Infinity for a healthy webhook without a rate
 * ```
 */
export function endpointGate(endpoint: EndpointState, bucket: { tokens: number; at: number | null }): number {
  const { openUntil, probeUntil, rate } = endpoint
  let at = Number.NEGATIVE_INFINITY
  if (openUntil !== null) at = Math.max(at, openUntil, probeUntil === null ? Number.NEGATIVE_INFINITY : probeUntil + 1)
  if (rate && bucket.at !== null && bucket.tokens < 1) at = Math.max(at, bucket.at + Math.ceil(((1 - bucket.tokens) * 1000) / rate.perSecond))
  return at
}
