// Runs inside workerd: the storage contract's suite against a real D1 binding.
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { objectId } from 'cotwebhook'
import { runStoreConformance, taskEvent, webhookRecord } from 'cotwebhook/testing'
import { d1Store, type D1Like } from 'cotwebhook/cloudflare'

let tables = 0
const prefixes = new WeakMap<object, string>()
runStoreConformance({
  name: 'd1 (inside workerd)',
  create: async () => {
    // Tables of their own per test: D1 storage lives as long as the test file.
    const prefix = `t${++tables}_`
    const store = d1Store((env as { DB: D1Like }).DB, { prefix })
    prefixes.set(store, prefix)
    await store.migrate()
    return store
  },
  reopen: (store) => d1Store((env as { DB: D1Like }).DB, { prefix: prefixes.get(store)! }),
  skip: {
    'passes an ordered webhook’s queue to its next delivery in the settle that ends the head':
      'D1 has no interactive transactions, so a settle cannot also take the next delivery; the next claim does',
  },
})

describe('d1Store at scale', () => {
  it('claims more deliveries than D1 binds parameters (100) in one go, each with its event', async () => {
    const store = d1Store((env as { DB: D1Like }).DB, { prefix: 'scale_' })
    await store.migrate()
    const company = objectId()
    for (let i = 0; i < 150; i++) {
      const record = webhookRecord(company)
      await store.insertWebhook(record)
      await store.enqueue({ eventId: objectId(), event: taskEvent(company, { n: i }), deliveries: [{ id: objectId(), webhookId: record.webhook._id }], now: i })
    }
    const claimed = await store.claim({ now: 1_000, limit: 150, leaseMs: 1_000, owner: 'scale', ordered: false })
    expect(claimed).toHaveLength(150)
    expect(claimed.map((c) => (c.delivery.event.data as { n: number }).n)).toEqual(Array.from({ length: 150 }, (_, i) => i))
    // A guard against a hang, not a measure: 300 D1 round trips in a row through miniflare took longer
    // than the default 20 s on a machine busy with two copies of the suite.
  }, 120_000)
})
