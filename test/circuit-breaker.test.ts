import { describe, expect, it } from 'vitest'
import { circuitPolicy, circuitStateAt } from '../src/circuit-breaker.js'
import { applyEndpointReport, emptyEndpoint, refill, resetEndpointState } from '../src/endpoint-state.js'
import type { EndpointPolicy, EndpointReport } from '../src/store.js'

// The endpoint rules one step at a time, on a clock the test moves (the stores apply the same rules;
// the conformance suite holds them to it).
describe('the endpoint state rules', () => {
  const policy: EndpointPolicy = { failureThreshold: 2, cooldownMs: 100, maxCooldownMs: 350, disableAfterFailures: 3, disableAfterMs: 1_000 }
  const failure: EndpointReport = { outcome: 'failure', policy }
  const success: EndpointReport = { outcome: 'success', policy }

  it('opens at the threshold and doubles the cool-down after each failed probe, up to the cap', () => {
    const s = emptyEndpoint()
    expect(applyEndpointReport(s, failure, 0, false)).toEqual({ consecutiveFailures: 0, failingSince: 0 })
    expect(applyEndpointReport(s, failure, 10, false)).toMatchObject({ circuit: { state: 'open', until: 110 }, openUntil: 110 })
    expect(circuitStateAt(s, 50)).toBe('open')
    expect(circuitStateAt(s, 110)).toBe('half-open')
    expect(applyEndpointReport(s, failure, 120, true)).toMatchObject({ circuit: { state: 'open', until: 320 } }) // 200 ms now
    expect(applyEndpointReport(s, failure, 330, true)).toMatchObject({ circuit: { state: 'open', until: 680 } }) // 400 capped at 350
    expect(s).toMatchObject({ openUntil: 680, cooldownMs: 350, failedAttempts: 4 })
  })

  it('a straggler failing while open changes no cool-down; any success closes it and ends the failing run', () => {
    const s = emptyEndpoint()
    applyEndpointReport(s, failure, 0, false)
    applyEndpointReport(s, failure, 0, false) // open until 100
    expect(applyEndpointReport(s, failure, 105, false)).not.toHaveProperty('circuit')
    expect(s.openUntil).toBe(100)
    expect(applyEndpointReport(s, success, 106, false)).toEqual({ circuit: { state: 'closed' }, consecutiveFailures: 0, failingSince: null })
    expect(s).toMatchObject({ failedAttempts: 0, openUntil: null, cooldownMs: 0, lastSuccessAt: 106, lastFailureAt: 105 })
  })

  it('says when to turn the webhook off: exhausted deliveries in a row, or failing too long', () => {
    const s = emptyEndpoint()
    const exhausted = { ...failure, policy: { ...policy, failureThreshold: 0 }, exhausted: true }
    expect(applyEndpointReport(s, exhausted, 0, false)).toEqual({ consecutiveFailures: 1, failingSince: 0 })
    expect(applyEndpointReport(s, exhausted, 500, false)).toEqual({ consecutiveFailures: 2, failingSince: 0 })
    expect(applyEndpointReport(s, exhausted, 600, false)).toMatchObject({ disable: 'failures', consecutiveFailures: 3 })
    const slow = emptyEndpoint()
    const onlyTime = { ...exhausted, policy: { ...exhausted.policy, disableAfterFailures: 0 } }
    expect(applyEndpointReport(slow, onlyTime, 0, false)).not.toHaveProperty('disable')
    expect(applyEndpointReport(slow, onlyTime, 1_000, false)).toMatchObject({ disable: 'failing-too-long' })
    expect(s.failedAttempts).toBe(0) // circuit off: no counting
    resetEndpointState(s)
    expect(s).toMatchObject({ consecutiveFailures: 0, failingSince: null, lastFailureAt: 600 })
  })

  it('checks its settings by name; false turns the circuit off', () => {
    expect(circuitPolicy(false).failureThreshold).toBe(0)
    expect(() => circuitPolicy({ failureThreshold: 0 })).toThrow('circuitBreaker.failureThreshold must be a positive integer, not 0')
    expect(() => circuitPolicy({ cooldownMs: 100, maxCooldownMs: 10 })).toThrow('circuitBreaker.maxCooldownMs must be an integer ≥ cooldownMs, not 10')
  })
})

describe('the rate bucket', () => {
  it('starts full, refills at its rate up to the burst, and says when the next token comes', () => {
    const bucket = { tokens: 0, at: null as number | null }
    const rate = { perSecond: 10, burst: 2 }
    expect(refill(bucket, rate, 0)).toEqual({ whole: 2, nextAt: 0 })
    bucket.tokens -= 2
    expect(refill(bucket, rate, 0)).toEqual({ whole: 0, nextAt: 100 })
    expect(refill(bucket, rate, 150)).toEqual({ whole: 1, nextAt: 150 })
    expect(refill(bucket, rate, 10_000).whole).toBe(2) // never past the burst
  })
})
