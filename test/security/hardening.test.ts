import { createHmac } from 'node:crypto'
import { Webhook } from 'standardwebhooks'
import { afterEach, describe, expect, it } from 'vitest'
import { EventTooLargeError, memoryStore, type OperatorHooks, type Store } from 'cotwebhook'
import { COMPANY, OTHER_COMPANY, closeAll, engine, nOf, taskEvent, taskWebhook } from '../helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from '../helpers/receiver.js'

const receivers: Receiver[] = []
async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const r = await startReceiver(...args)
  receivers.push(r)
  return r
}
afterEach(async () => {
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})

/** Operator hooks that record what they were told, by name. */
function recorder() {
  const seen: Array<{ name: string; event: Record<string, unknown> }> = []
  const on: OperatorHooks = {}
  for (const name of ['attemptFailed', 'deliveryExhausted', 'deliveryRecovered', 'webhookDisabled', 'circuit'] as const) {
    on[name] = (event: unknown) => void seen.push({ name, event: event as Record<string, unknown> })
  }
  return { on, seen, named: (name: string) => seen.filter((s) => s.name === name).map((s) => s.event) }
}

describe('circuit breaker', () => {
  it('opens after failures in a row, holds attempts back while open, and a half-open probe closes it', async () => {
    let healthy = false
    // The engine's clock is the test's: the cool-down ends when the test says, not when the machine gets to it.
    let offset = 0
    const r = await receiver(() => ({ status: healthy ? 200 : 500 }))
    const hooks = recorder()
    const inner = memoryStore()
    let claims = 0
    const store: Store = { ...inner, claim: (options) => (claims++, inner.claim(options)) }
    const engineHooks = engine({
      store,
      now: () => Date.now() + offset,
      ordering: 'none',
      pollIntervalMs: 10,
      retry: { schedule: [5, 5, 5, 5, 5, 5, 5, 5] },
      circuitBreaker: { failureThreshold: 3, cooldownMs: 600_000, maxCooldownMs: 600_000 },
      on: hooks.on,
    })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    for (let n = 0; n < 6; n++) await engineHooks.emit(taskEvent(n))
    await until(() => hooks.named('circuit').length > 0, 15_000, 'the circuit to open')
    expect(hooks.named('circuit')[0]).toMatchObject({ webhookId: webhook._id, state: 'open' })
    const health = await engineHooks.health(COMPANY, webhook._id)
    expect(health).toMatchObject({ circuit: 'open', isActive: true })
    expect(health.failedAttempts).toBeGreaterThanOrEqual(3)
    // Attempts admitted before it opened may still land; once every delivery is held back (due after the
    // cool-down), nothing more is sent while it is open, however many rounds the loop makes (counted,
    // not timed: the clock stays inside the cool-down).
    const openUntil = hooks.named('circuit')[0]!.until as number
    const heldBack = async () =>
      (await engineHooks.logs(COMPANY, webhook._id, { limit: 10 })).every((l) => l.state === 'pending' && Date.parse(l.nextAttemptAt!) >= openUntil)
    await until(heldBack, 15_000, 'every delivery held back until the cool-down ends')
    const settled = r.requests.length
    expect(settled).toBeLessThanOrEqual(6 + 3) // every first attempt, and retries admitted before the third failure
    const seen = claims
    await until(() => claims >= seen + 5, 15_000, 'five more rounds of the loop')
    expect(r.requests.length).toBe(settled)
    // The cool-down ends: a probe goes, succeeds and closes the circuit; the clock then runs 20× fast
    // so deliveries held back while the probe was out come due without real waiting.
    healthy = true
    offset += 601_001
    const fast = setInterval(() => (offset += 100), 5)
    try {
      await engineHooks.drain()
    } finally {
      clearInterval(fast)
    }
    const logs = await engineHooks.logs(COMPANY, webhook._id, { limit: 10 })
    expect(logs.map((l) => l.state)).toEqual(Array(6).fill('succeeded'))
    expect(hooks.named('circuit').at(-1)).toMatchObject({ webhookId: webhook._id, state: 'closed' })
    expect((await engineHooks.health(COMPANY, webhook._id)).circuit).toBe('closed')
  })

  it('an edit keeps the counts; a new URL or turning it on again starts afresh', async () => {
    const r = await receiver(() => ({ status: 500 }))
    const engineHooks = engine({ retry: { schedule: [] }, circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 } })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    for (let n = 0; n < 2; n++) {
      await engineHooks.emit(taskEvent(n))
      await engineHooks.drain()
    }
    const open = await engineHooks.health(COMPANY, webhook._id)
    expect(open).toMatchObject({ circuit: 'open', consecutiveFailures: 2 })
    await engineHooks.registry.update(COMPANY, webhook._id, { description: 'nothing to see' })
    await engineHooks.registry.rotateSecret(COMPANY, webhook._id)
    expect(await engineHooks.health(COMPANY, webhook._id)).toMatchObject({ circuit: 'open', consecutiveFailures: 2 })
    await engineHooks.registry.update(COMPANY, webhook._id, { url: `${r.url}/moved` })
    expect(await engineHooks.health(COMPANY, webhook._id)).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 })
  })

  it('a failed probe opens the circuit again and the delivery keeps its attempts', async () => {
    const r = await receiver(() => ({ status: 503 }))
    const hooks = recorder()
    const engineHooks = engine({
      retry: { schedule: [1, 1, 1, 1] },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 50, maxCooldownMs: 200 },
      on: hooks.on,
    })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    await engineHooks.emit(taskEvent(0))
    await engineHooks.drain()
    const [log] = await engineHooks.logs(COMPANY, webhook._id)
    // Five attempts in all (the schedule), spread over opened and re-opened circuits: none lost, none extra.
    expect(log).toMatchObject({ state: 'failed', retry: 4 })
    expect(r.requests).toHaveLength(5)
    const opens = hooks.named('circuit').filter((e) => e.state === 'open')
    expect(opens.length).toBeGreaterThanOrEqual(2)
  })

  it('holds back deliveries claimed before the circuit opened, instead of sending them to a dead endpoint', async () => {
    const gate = heldAnswers({ status: 500 })
    const r = await receiver(() => gate.hold())
    const hooks = recorder()
    const engineHooks = engine({
      ordering: 'none',
      retry: { schedule: [1] },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 600_000, maxCooldownMs: 600_000 },
      // One request at a time to the host: the other deliveries are claimed and wait in line for it.
      rateLimit: { hostConcurrency: 1 },
      on: hooks.on,
    })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    for (let n = 0; n < 4; n++) await engineHooks.emit(taskEvent(n))
    await until(() => gate.held === 1, 10_000, 'the first request')
    // Its 500 opens the circuit; the next in line may have gone as the host slot freed, before the
    // failure was recorded. Once it is, nothing more goes.
    gate.release()
    await until(() => hooks.named('circuit').length === 1, 10_000, 'the circuit to open')
    gate.open()
    await engineHooks.flush()
    expect(r.requests.length).toBeLessThanOrEqual(2)
    const logs = await engineHooks.logs(COMPANY, webhook._id)
    const openUntil = (await engineHooks.health(COMPANY, webhook._id)).circuitOpenUntil!
    expect(logs.map((l) => l.state)).toEqual(['pending', 'pending', 'pending', 'pending'])
    // The others are back in the store, due when the cool-down ends, none of their attempts used.
    const unsent = logs.filter((l) => l.attempts.length === 0)
    expect(unsent).toHaveLength(4 - r.requests.length)
    expect(unsent.every((l) => Date.parse(String(l.nextAttemptAt)) >= openUntil)).toBe(true)
  })

  it('circuitBreaker: false sends every attempt back to back', async () => {
    const r = await receiver(() => ({ status: 500 }))
    const hooks = recorder()
    const engineHooks = engine({ retry: { schedule: [1, 1, 1, 1, 1] }, circuitBreaker: false, on: hooks.on })
    await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    await engineHooks.emit(taskEvent(0))
    await engineHooks.drain()
    expect(r.requests).toHaveLength(6)
    expect(hooks.named('circuit')).toEqual([])
  })

  it('refuses bad settings by name', () => {
    expect(() => engine({ circuitBreaker: { failureThreshold: 0 } })).toThrow('circuitBreaker.failureThreshold must be a positive integer, not 0')
    expect(() => engine({ circuitBreaker: { cooldownMs: 100, maxCooldownMs: 10 } })).toThrow('circuitBreaker.maxCooldownMs must be an integer ≥ cooldownMs, not 10')
  })
})

describe('rate limits', () => {
  it('perSecond spaces one webhook\'s attempts and leaves another webhook alone', async () => {
    const slow = await receiver()
    const fast = await receiver()
    // A clock that moves only between turns of the event loop: an attempt's recorded time is the time
    // the limiter granted it, so the spacing is the limiter's decision, not the machine's speed.
    let clock = 1_800_000_000_000
    const ticker = setInterval(() => (clock += 10), 1)
    try {
      const hooks = engine({ now: () => clock, pollIntervalMs: 5, ordering: 'none', rateLimit: { perSecond: (w) => (w.url.startsWith(slow.url) ? 20 : undefined), burst: 1 } })
      const { webhook: limited } = await hooks.registry.create(COMPANY, taskWebhook(slow.url))
      const { webhook: free } = await hooks.registry.create(COMPANY, taskWebhook(fast.url))
      for (let n = 0; n < 8; n++) await hooks.emit(taskEvent(n))
      await hooks.drain()
      expect(slow.requests).toHaveLength(8)
      expect(fast.requests).toHaveLength(8)
      const startsOf = async (id: string) => {
        const logs = await hooks.logs(COMPANY, id, { limit: 10 })
        // Deferring used no attempt: every log shows exactly one.
        for (const log of logs) expect(log.attempts).toHaveLength(1)
        return logs.map((l) => Date.parse(l.attempts[0]!.at)).sort((a, b) => a - b)
      }
      const limitedStarts = await startsOf(limited._id)
      // 20 per second with a bucket of 1: every attempt at least 50 ms after the one before.
      for (let i = 1; i < limitedStarts.length; i++) expect(limitedStarts[i]! - limitedStarts[i - 1]!, `gap ${i}`).toBeGreaterThanOrEqual(50)
      // The other webhook was not held to that pace (it would need at least 7 × 50 ms).
      const freeStarts = await startsOf(free._id)
      expect(freeStarts.at(-1)! - freeStarts[0]!).toBeLessThan(7 * 50)
    } finally {
      clearInterval(ticker)
    }
  })

  it('hostConcurrency caps requests in flight to one host across its webhooks', async () => {
    // Answers are held and let go two at a time: the receiver sees the cap, not a race against 40 ms delays.
    const gate = heldAnswers()
    const r = await receiver(() => gate.hold())
    const hooks = engine({ ordering: 'none', concurrency: 16, rateLimit: { hostConcurrency: 2 } })
    for (let i = 0; i < 3; i++) await hooks.registry.create(COMPANY, taskWebhook(`${r.url}/w${i}`))
    for (let n = 0; n < 6; n++) await hooks.emit(taskEvent(n))
    const drained = hooks.drain()
    for (let answered = 0; answered < 18; ) {
      const expected = Math.min(2, 18 - answered)
      await until(() => gate.held === expected, 15_000, `${expected} requests held after ${answered} answered`)
      answered += expected
      gate.release(expected)
    }
    await drained
    expect(r.requests).toHaveLength(18)
    expect(r.maxInFlight).toBe(2)
  })

  it('refuses bad settings by name', () => {
    expect(() => engine({ rateLimit: { perSecond: 0 } })).toThrow('rateLimit.perSecond must be a positive number, not 0')
    expect(() => engine({ rateLimit: { hostConcurrency: 1.5 } })).toThrow('rateLimit.hostConcurrency must be a positive integer, not 1.5')
  })
})

describe('endpoint health', () => {
  it('turns a webhook off after N exhausted deliveries in a row and tells the operator', async () => {
    const r = await receiver(() => ({ status: 500, body: 'down' }))
    const hooks = recorder()
    const engineHooks = engine({ retry: { schedule: [] }, circuitBreaker: false, health: { disableAfterFailures: 3 }, on: hooks.on })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    for (let n = 0; n < 5; n++) await engineHooks.emit(taskEvent(n))
    await engineHooks.drain()
    expect(r.requests.map((q) => nOf(q.body))).toEqual([0, 1, 2])
    expect((await engineHooks.registry.get(COMPANY, webhook._id)).isActive).toBe(false)
    expect(hooks.named('webhookDisabled')).toEqual([
      { company: COMPANY, webhookId: webhook._id, reason: 'failures', consecutiveFailures: 3, failingSince: expect.any(Number) },
    ])
    const logs = await engineHooks.logs(COMPANY, webhook._id, { limit: 10 })
    expect(logs.slice(0, 2).map((l) => l.response)).toEqual(['not sent: the webhook is inactive', 'not sent: the webhook is inactive'])
    expect(hooks.named('deliveryExhausted')).toHaveLength(5)
  })

  it('a success resets the run; failing for longer than disableAfterMs turns it off', async () => {
    let clock = 1_800_000_000_000
    let status = 500
    const r = await receiver(() => ({ status }))
    const hooks = recorder()
    const engineHooks = engine({
      now: () => clock,
      retry: { schedule: [] },
      circuitBreaker: false,
      health: { disableAfterFailures: 0, disableAfterMs: 3_600_000 },
      on: hooks.on,
    })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    const send = async () => {
      await engineHooks.emit(taskEvent(r.requests.length))
      await engineHooks.drain()
    }
    await send() // fails at t0
    clock += 3_000_000
    status = 200
    await send() // succeeds: the run ends
    expect(await engineHooks.health(COMPANY, webhook._id)).toMatchObject({ consecutiveFailures: 0, failingSince: null, lastSuccessAt: clock })
    status = 500
    await send()
    clock += 3_599_000
    await send()
    expect((await engineHooks.registry.get(COMPANY, webhook._id)).isActive).toBe(true)
    clock += 2_000
    await send() // an hour and a second after the run began
    expect((await engineHooks.registry.get(COMPANY, webhook._id)).isActive).toBe(false)
    expect(hooks.named('webhookDisabled')).toMatchObject([{ reason: 'failing-too-long', consecutiveFailures: 3 }])
  })

  it('410 turns the webhook off at once, with reason gone', async () => {
    const r = await receiver(() => ({ status: 410 }))
    const hooks = recorder()
    const engineHooks = engine({ on: hooks.on })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    await engineHooks.emit(taskEvent(0))
    await engineHooks.drain()
    expect(hooks.named('webhookDisabled')).toMatchObject([{ webhookId: webhook._id, reason: 'gone' }])
    expect((await engineHooks.health(COMPANY, webhook._id)).isActive).toBe(false)
  })
  for (const [why, status, options] of [
    ['a 410', 410, {}],
    ['the failure threshold', 500, { health: { disableAfterFailures: 1 } }],
  ] as const) {
    it(`turned off by ${why}, its next delivery finds it off even when turning it off is slow`, async () => {
      const r = await receiver(() => ({ status }))
      const inner = memoryStore()
      let deactivating = false
      let finish!: () => void
      const slowWrite = new Promise<void>((resolve) => (finish = resolve))
      let claims = 0
      const store: Store = {
        ...inner,
        claim: (claimOptions) => (claims++, inner.claim(claimOptions)),
        updateWebhook: async (record, version) => {
          if (!record.webhook.isActive) {
            deactivating = true
            await slowWrite
          }
          return inner.updateWebhook(record, version)
        },
      }
      const hooks = engine({ store, pollIntervalMs: 5, retry: { schedule: [] }, circuitBreaker: false, ...options })
      const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(r.url))
      await hooks.emit(taskEvent(0))
      const second = await hooks.emit(taskEvent(1))
      await until(() => deactivating, 15_000, 'the webhook being turned off')
      // The loop keeps looking meanwhile (counted rounds): the second delivery must not be claimable yet.
      const seen = claims
      await until(() => claims >= seen + 3, 15_000, 'three more rounds of the loop')
      finish()
      await hooks.drain()
      expect(r.requests.map((q) => nOf(q.body))).toEqual([0])
      expect((await hooks.store.getDelivery(COMPANY, second.deliveries[0]!.id))?.response).toBe('not sent: the webhook is inactive')
      expect((await hooks.registry.get(COMPANY, webhook._id)).isActive).toBe(false)
    })
  }
})

describe('operator hooks', () => {
  it('are told of failed attempts, recoveries and exhaustion, and never see a secret', async () => {
    const r = await receiver((_req, i) => ({ status: i === 0 ? 503 : i < 4 ? 200 : 500 }))
    const hooks = recorder()
    const engineHooks = engine({ retry: { schedule: [5] }, on: hooks.on })
    const { webhook, secret } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    const first = await engineHooks.emit(taskEvent(0)) // 503 then 200: recovered
    await engineHooks.drain()
    await engineHooks.emit(taskEvent(1)) // 200
    await engineHooks.drain()
    r.respond(() => ({ status: 500 }))
    const last = await engineHooks.emit(taskEvent(2)) // 500, 500: exhausted
    await engineHooks.drain()
    const ref = (emitted: typeof first) => ({ company: COMPANY, webhookId: webhook._id, deliveryId: emitted.deliveries[0]!.id, eventId: emitted.eventId })
    expect(hooks.named('attemptFailed')).toEqual([
      { ...ref(first), attempt: expect.objectContaining({ status: 503 }), attemptNumber: 1, willRetry: true },
      { ...ref(last), attempt: expect.objectContaining({ status: 500 }), attemptNumber: 1, willRetry: true },
      { ...ref(last), attempt: expect.objectContaining({ status: 500 }), attemptNumber: 2, willRetry: false },
    ])
    expect(hooks.named('deliveryRecovered')).toEqual([{ ...ref(first), attempts: 2 }])
    expect(hooks.named('deliveryExhausted')).toEqual([{ ...ref(last), attempts: 2, response: '' }])
    expect(JSON.stringify(hooks.seen)).not.toContain(secret)
    expect(JSON.stringify(hooks.seen)).not.toContain('whsec_')
  })

  it('a hook that throws or rejects goes to onError and delivery goes on', async () => {
    const r = await receiver((_req, i) => ({ status: i === 0 ? 500 : 200 }))
    const errors: unknown[] = []
    const engineHooks = engine({
      retry: { schedule: [1] },
      onError: (e) => errors.push(e),
      on: {
        attemptFailed: () => {
          throw new Error('metrics down')
        },
        deliveryRecovered: async () => Promise.reject(new Error('still down')),
      },
    })
    const { webhook } = await engineHooks.registry.create(COMPANY, taskWebhook(r.url))
    await engineHooks.emit(taskEvent(0))
    await engineHooks.drain()
    await until(() => errors.length === 2, 15_000, 'both hook errors')
    expect(errors.map((e) => (e as Error).message)).toEqual([
      'cotwebhook: the attemptFailed hook failed: metrics down',
      'cotwebhook: the deliveryRecovered hook failed: still down',
    ])
    expect((await engineHooks.logs(COMPANY, webhook._id))[0]!.state).toBe('succeeded')
  })
})

describe('limits', () => {
  it('emit() refuses an event over maxEventBytes by name and stores nothing', async () => {
    const r = await receiver()
    const hooks = engine({ maxEventBytes: 2_048 })
    await hooks.registry.create(COMPANY, taskWebhook(r.url))
    const big = taskEvent(0)
    ;(big.data as Record<string, unknown>).blob = 'é'.repeat(1_000) // 2,000 bytes in UTF-8, 1,000 characters
    const error = await hooks.emit(big).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(EventTooLargeError)
    expect(error).toMatchObject({ status: 413, code: 'payload_too_large', limitBytes: 2_048 })
    expect((error as Error).message).toMatch(/^event: is \d+ bytes as JSON, over the limit of 2048 bytes \(maxEventBytes\)/)
    expect(await hooks.store.openCount()).toBe(0)
    ;(big.data as Record<string, unknown>).blob = 'e'.repeat(1_000)
    expect((await hooks.emit(big)).deliveries).toHaveLength(1)
    await hooks.drain()
    expect(r.requests).toHaveLength(1)
  })

  it('keeps at most maxResponseBytes of a response body in the log (20 KB by default)', async () => {
    const r = await receiver(() => ({ status: 500, body: 'y'.repeat(100_000) }))
    const hooks = engine({ retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(r.url))
    await hooks.emit(taskEvent(0))
    await hooks.drain()
    expect((await hooks.logs(COMPANY, webhook._id))[0]!.response).toHaveLength(20_480)
  })
})

describe('secret rotation', () => {
  it('signs with both secrets during the overlap and with the new one alone after it', async () => {
    let clock = Date.now()
    const r = await receiver()
    const hooks = engine({ now: () => clock })
    const { webhook, secret: old } = await hooks.registry.create(COMPANY, taskWebhook(r.url))
    const rotated = await hooks.registry.rotateSecret(COMPANY, webhook._id)
    expect(rotated.secret).toMatch(/^whsec_/)
    expect(rotated.secret).not.toBe(old)
    expect(rotated.previousExpiresAt).toBe(clock + 86_400_000)
    expect(await hooks.registry.secret(COMPANY, webhook._id)).toBe(rotated.secret)
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(1)
    await hooks.emit(taskEvent(0))
    await hooks.drain()
    const during = r.requests[0]!
    expect(during.headers['webhook-signature']!.split(' ')).toHaveLength(2)
    expect(new Webhook(old).verify(during.body, during.headers)).toMatchObject({ type: 'COTTask' })
    expect(new Webhook(rotated.secret).verify(during.body, during.headers)).toMatchObject({ type: 'COTTask' })

    clock += 86_400_001
    await hooks.emit(taskEvent(1))
    await hooks.drain()
    const after = r.requests[1]!
    const signatures = after.headers['webhook-signature']!.split(' ')
    expect(signatures).toHaveLength(1)
    // standardwebhooks would refuse the timestamp (a day ahead of the real clock): check the HMAC by hand.
    const expected = (secret: string) =>
      'v1,' + createHmac('sha256', Buffer.from(secret.slice(6), 'base64'))
        .update(`${after.headers['webhook-id']}.${after.headers['webhook-timestamp']}.${after.body}`)
        .digest('base64')
    expect(signatures[0]).toBe(expected(rotated.secret))
    expect(signatures[0]).not.toBe(expected(old))
  })

  it('takes a chosen secret and overlap, refuses bad ones by name, and caps the retiring secrets', async () => {
    const hooks = engine()
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/hook'))
    const chosen = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
    expect(await hooks.registry.rotateSecret(COMPANY, webhook._id, { secret: chosen, overlapMs: 0 })).toMatchObject({ secret: chosen })
    await expect(hooks.registry.rotateSecret(COMPANY, webhook._id, { secret: 'whsec_short' })).rejects.toThrow('secret: must carry 24 to 64 bytes')
    await expect(hooks.registry.rotateSecret(COMPANY, webhook._id, { secret: 'nope' })).rejects.toThrow('secret: must be whsec_ or whsk_ followed by base64')
    await expect(hooks.registry.rotateSecret(COMPANY, webhook._id, { overlapMs: -1 })).rejects.toThrow('overlapMs: must be at least 0')
    await expect(hooks.registry.rotateSecret(OTHER_COMPANY, webhook._id)).rejects.toThrow(`webhook ${webhook._id} not found`)
    // Three rotations within a day leave three secrets in their overlap; a fourth would cut one short.
    const made = [chosen]
    for (let i = 0; i < 3; i++) made.push((await hooks.registry.rotateSecret(COMPANY, webhook._id)).secret)
    await expect(hooks.registry.rotateSecret(COMPANY, webhook._id)).rejects.toThrow(/^secret: 3 earlier secrets are still within their overlap/)
    const stored = await hooks.store.getWebhook(COMPANY, webhook._id)
    expect(stored!.secrets.map((s) => (typeof s === 'string' ? s : s.secret))).toEqual([...made].reverse())
    // With overlapMs: 0 the current one retires at once, so the set does not grow.
    const quick = await hooks.registry.rotateSecret(COMPANY, webhook._id, { overlapMs: 0 })
    expect((await hooks.store.getWebhook(COMPANY, webhook._id))!.secrets.map((s) => (typeof s === 'string' ? s : s.secret))).toEqual([quick.secret, ...made.slice(0, 3).reverse()])
  })

  it('two rotations at once both take effect: neither secret is lost', async () => {
    const hooks = engine()
    const { webhook, secret: first } = await hooks.registry.create(COMPANY, taskWebhook('https://example.com/hook'))
    const [a, b] = await Promise.all([hooks.registry.rotateSecret(COMPANY, webhook._id), hooks.registry.rotateSecret(COMPANY, webhook._id)])
    const stored = (await hooks.store.getWebhook(COMPANY, webhook._id))!.secrets.map((s) => (typeof s === 'string' ? s : s.secret))
    expect(stored).toHaveLength(3)
    expect(new Set(stored)).toEqual(new Set([a.secret, b.secret, first]))
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(2)
  })
})

describe('replay', () => {
  it('resend sends a delivery\'s event again as a new delivery; another company\'s log is 404', async () => {
    const r = await receiver((_req, i) => ({ status: i === 0 ? 500 : 200 }))
    const hooks = engine({ retry: { schedule: [] } })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(r.url))
    const { deliveries } = await hooks.emit(taskEvent(7))
    await hooks.drain()
    const resent = await hooks.resend(COMPANY, deliveries[0]!.id)
    expect(resent.deliveries).toEqual([{ id: expect.any(String), webhookId: webhook._id, eventId: expect.any(String), replayOf: deliveries[0]!.id }])
    await hooks.drain()
    expect(r.requests.map((q) => nOf(q.body))).toEqual([7, 7])
    expect(r.requests[1]!.headers['webhook-id']).toBe(resent.deliveries[0]!.id)
    const logs = await hooks.logs(COMPANY, webhook._id)
    expect(logs.map((l) => l.state)).toEqual(['succeeded', 'failed'])
    await expect(hooks.resend(OTHER_COMPANY, deliveries[0]!.id)).rejects.toThrow(`log ${deliveries[0]!.id} not found`)
    await expect(hooks.resend(COMPANY, 'nope')).rejects.toThrow('logId: must be an ObjectId')
  })

  it('recover sends every failed delivery since a time again, oldest first, in pages', async () => {
    let clock = 1_800_000_000_000
    const r = await receiver(() => ({ status: 500 }))
    const hooks = engine({ now: () => clock, retry: { schedule: [] }, circuitBreaker: false })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(r.url))
    for (let n = 0; n < 5; n++) {
      clock += 1_000
      await hooks.emit(taskEvent(n))
      await hooks.drain()
    }
    r.respond(() => ({ status: 200 }))
    const since = new Date(1_800_000_000_000 + 2_000).toISOString() // deliveries 1..4
    const originals = (await hooks.logs(COMPANY, webhook._id, { limit: 10 })).reverse().map((l) => l._id)
    clock += 1 // the window ends before the call (a delivery made in its very millisecond cannot have failed yet)
    const page = await hooks.recover(COMPANY, webhook._id, { since, limit: 3 })
    expect(page.deliveries.map((d) => d.replayOf)).toEqual(originals.slice(1, 4))
    expect(page.nextSince).toBe(new Date(1_800_000_000_000 + 5_000).toISOString())
    expect(page.until).toBe(new Date(clock).toISOString())
    // The receiver fails again: this call's own replays fail too, and must not be recovered by the next.
    r.respond(() => ({ status: 500 }))
    await hooks.drain()
    r.respond(() => ({ status: 200 }))
    clock += 1_000
    const rest = await hooks.recover(COMPANY, webhook._id, { since: page.nextSince!, until: page.until })
    expect(rest.deliveries.map((d) => d.replayOf)).toEqual(originals.slice(4, 5))
    expect(rest.nextSince).toBeUndefined()
    await hooks.drain()
    expect(r.requests.slice(5).map((q) => nOf(q.body))).toEqual([1, 2, 3, 4])
    await expect(hooks.recover(COMPANY, webhook._id, { since: '2000-01-01T00:00:00+05' })).rejects.toThrow('since: must be an ISO 8601 timestamp with a full offset')
    await expect(hooks.recover(COMPANY, webhook._id, { since: 'yesterday' })).rejects.toThrow('invalid recover options: since: must be an ISO 8601 timestamp')
    await expect(hooks.recover(COMPANY, webhook._id, { since: true as never })).rejects.toThrow('since: must be an ISO 8601 timestamp, epoch milliseconds or a Date')
    await expect(hooks.recover(COMPANY, webhook._id, { since: 0, limit: 1001 })).rejects.toThrow('limit: must be at most 1000')
  })

  it('sendTest sends a marked event of the webhook\'s trigger; an inactive webhook is 409', async () => {
    const r = await receiver()
    const hooks = engine()
    const { webhook, secret } = await hooks.registry.create(COMPANY, taskWebhook(r.url, { context: { taskGroup: '6261612a8f1e99002e5c8cce' } }))
    await hooks.sendTest(COMPANY, webhook._id)
    await hooks.drain()
    const event = new Webhook(secret).verify(r.requests[0]!.body, r.requests[0]!.headers) as Record<string, unknown>
    expect(event).toMatchObject({ company: COMPANY, type: 'COTTask', event: 'create', extraData: { test: true }, data: { taskGroup: '6261612a8f1e99002e5c8cce' } })
    await hooks.registry.update(COMPANY, webhook._id, { isActive: false })
    await expect(hooks.sendTest(COMPANY, webhook._id)).rejects.toThrow(`isActive: webhook ${webhook._id} is inactive`)
  })
})
