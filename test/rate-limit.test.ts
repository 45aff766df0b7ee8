import { describe, expect, it } from 'vitest'
import { createRateLimiter } from '../src/rate-limit.js'
import type { COTWebhook } from '../src/model.js'

const webhook = (id: string, url = 'https://hooks.example.com/a') => ({ _id: id, url }) as COTWebhook

describe('createRateLimiter', () => {
  it('hands a freed host slot to the first in line, and gives up on a waiter at its deadline or on abort', async () => {
    const limiter = createRateLimiter({ hostConcurrency: 1 })
    const first = limiter.trySlot('https://hooks.example.com/a')!
    expect(first).toBeTypeOf('function')
    expect(limiter.trySlot('https://hooks.example.com/b')).toBeUndefined() // same host, other path
    expect(limiter.trySlot('https://other.example.com/')).toBeTypeOf('function')
    const never = new AbortController().signal
    const order: string[] = []
    const a = limiter.waitSlot('https://hooks.example.com/', 1_000, never).then((release) => (order.push('a'), release))
    const b = limiter.waitSlot('https://hooks.example.com/', 1_000, never).then((release) => (order.push('b'), release))
    expect(await limiter.waitSlot('https://hooks.example.com/', 20, never)).toBeUndefined() // its deadline passed
    const aborted = new AbortController()
    const c = limiter.waitSlot('https://hooks.example.com/', 1_000, aborted.signal)
    aborted.abort()
    expect(await c).toBeUndefined()
    first()
    first() // a second release does nothing
    ;(await a)!()
    ;(await b)!()
    expect(order).toEqual(['a', 'b'])
    expect(limiter.trySlot('https://hooks.example.com/')).toBeTypeOf('function')
  })

  it('gives each webhook the per-second rate of the options, with its burst', () => {
    const limiter = createRateLimiter({ perSecond: (w) => (w._id === 'slow' ? 10 : undefined), burst: 2 })
    expect(limiter.rateOf(webhook('slow'))).toEqual({ perSecond: 10, burst: 2 })
    expect(limiter.rateOf(webhook('fast'))).toBeNull()
    expect(createRateLimiter({ perSecond: 2.5 }).rateOf(webhook('any'))).toEqual({ perSecond: 2.5, burst: 2 })
    expect(createRateLimiter().rateOf(webhook('any'))).toBeNull()
  })

})
