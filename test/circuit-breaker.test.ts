import { describe, expect, it } from 'vitest'
import { createCircuitBreaker } from '../src/circuit-breaker.js'

// The breaker's rules one step at a time, on a clock the test moves.
describe('createCircuitBreaker', () => {
  const make = () => createCircuitBreaker({ failureThreshold: 2, cooldownMs: 100, maxCooldownMs: 350 }, { attemptMs: 50, random: () => 0 })

  it('opens at the threshold, lets one probe through after the cool-down, and doubles the cool-down on its failure up to the cap', () => {
    const b = make()
    expect(b.failure('w', 0, false)).toBeUndefined()
    expect(b.failure('w', 10, false)).toBe(110)
    expect(b.admit('w', 50)).toEqual({ ok: false, until: 110 })
    expect(b.admit('w', 110)).toEqual({ ok: true, probe: true })
    expect(b.admit('w', 111)).toEqual({ ok: false, until: 161 }) // a probe is out: wait an attempt's time
    expect(b.failure('w', 120, true)).toBe(320) // 200 ms now
    expect(b.admit('w', 320)).toEqual({ ok: true, probe: true })
    expect(b.failure('w', 330, true)).toBe(680) // 400 capped at 350
    expect(b.state('w', 400)).toMatchObject({ state: 'open', openUntil: 680 })
    expect(b.state('w', 700)).toMatchObject({ state: 'half-open' })
  })

  it('a straggler failing while the probe is out neither doubles the cool-down nor frees a second probe', () => {
    const b = make()
    b.failure('w', 0, false)
    b.failure('w', 0, false) // open until 100
    expect(b.admit('w', 100)).toEqual({ ok: true, probe: true })
    expect(b.failure('w', 105, false)).toBeUndefined() // an attempt admitted before it opened
    expect(b.admit('w', 106)).toMatchObject({ ok: false })
    expect(b.success('w')).toBe(true)
    expect(b.state('w', 107)).toEqual({ state: 'closed', failures: 0 })
  })

  it('an abandoned probe lets the next one through; reset forgets; false always admits', () => {
    const b = make()
    b.failure('w', 0, false)
    b.failure('w', 0, false)
    expect(b.admit('w', 100)).toEqual({ ok: true, probe: true })
    b.abandon('w')
    expect(b.admit('w', 101)).toEqual({ ok: true, probe: true })
    b.reset('w')
    expect(b.admit('w', 102)).toEqual({ ok: true, probe: false })
    const off = createCircuitBreaker(false)
    for (let i = 0; i < 10; i++) off.failure('w', i, false)
    expect(off.admit('w', 10)).toEqual({ ok: true, probe: false })
  })

  it('spreads hand-backs over the next tenth of the wait', () => {
    const b = createCircuitBreaker({ failureThreshold: 1, cooldownMs: 10_000 }, { attemptMs: 50, random: () => 0.999 })
    b.failure('w', 0, false)
    expect(b.admit('w', 0)).toEqual({ ok: false, until: 10_999 })
  })
})
