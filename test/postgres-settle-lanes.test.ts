import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { objectId, type ClaimedDelivery, type Store } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { taskEvent, webhookRecord } from 'cotwebhook/testing'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'
import { until } from './helpers/receiver.js'

/**
 * The PostgreSQL store's settles: batched into one round trip each, and a company's lone settle goes
 * beside a busy company's batch rather than behind it. Told by which settle statements are under way
 * at once (the pool holds those of the busy company until the test lets them go), never by time.
 */

const available = await postgresAvailable('postgres settle lanes')
const pool = new pg.Pool({ connectionString: PG_URL, max: 6 })
afterAll(async () => {
  await pool.end()
})

const BUSY = '625be93a286ef83c1c0e8452'
const QUIET = '625be93a286ef83c1c0e8453'

/**
 * The pool as the store sees it: every settle statement's delivery ids are recorded as it is sent, and
 * one naming a delivery in `held` waits (parked) until the test lets it go.
 */
function gatedPool(held: Set<string>) {
  const sent: string[][] = []
  const parked: Array<{ ids: string[]; go: () => void }> = []
  const query = async (config: string | { name: string; text: string; values?: unknown[] }, values?: unknown[]) => {
    if (typeof config === 'object' && config.name.endsWith('_settle')) {
      const ids = (JSON.parse(String(config.values![0])) as Array<{ id: string }>).map((item) => item.id)
      sent.push(ids)
      if (ids.some((id) => held.has(id))) await new Promise<void>((go) => parked.push({ ids, go }))
    }
    return typeof config === 'string' ? pool.query(config, values) : pool.query(config)
  }
  return { pool: { query, connect: () => pool.connect() } as never, sent, parked }
}

async function leased(store: Store, company: string, count: number): Promise<ClaimedDelivery[]> {
  const record = webhookRecord(company)
  await store.insertWebhook(record)
  const claimed: ClaimedDelivery[] = []
  for (let n = 0; n < count; n++) {
    const result = await store.enqueue({
      eventId: objectId(),
      event: taskEvent(company),
      deliveries: [{ id: objectId(), webhookId: record.webhook._id }],
      now: Date.now(),
      claim: { owner: 'test', leaseMs: 60_000, limit: 1, ordered: false },
    })
    claimed.push(...(result.claimed ?? []))
  }
  expect(claimed).toHaveLength(count)
  return claimed
}

const success = (now: number) => ({ now, state: 'succeeded' as const, response: 'ok', attempt: { at: new Date(now).toISOString(), status: 200, durationMs: 1 } })

describe.skipIf(!available)('PostgreSQL settles by company', () => {
  it('sends a quiet company’s settle while a busy company’s batch is under way', async () => {
    const schema = schemaName()
    const held = new Set<string>()
    const gated = gatedPool(held)
    const store = postgresStore(gated.pool, { schema })
    await store.migrate()
    try {
      const busy = await leased(store, BUSY, 4)
      const [quiet] = await leased(store, QUIET, 1)
      for (const c of busy) held.add(c.delivery.id)
      // The busy company's first settle goes in the second lane (nothing of it was here); the three
      // after it batch in the main lane. Both statements wait at the pool.
      const busySettles = busy.map((c) => store.settle(c.lease, success(Date.now())))
      await until(() => gated.parked.length === 2, 15_000, 'the busy company’s two settle statements')
      expect(gated.parked.map((p) => p.ids.length).sort()).toEqual([1, 3])
      // The second lane's statement is answered; the main lane's batch of three stays out.
      gated.parked.find((p) => p.ids.length === 1)!.go()
      await busySettles[0]
      const quietSettle = store.settle(quiet!.lease, success(Date.now()))
      // In one lane the quiet settle would wait for the batch of three; here it goes on its own.
      await until(() => gated.sent.some((ids) => ids.includes(quiet!.delivery.id)), 5_000, 'the quiet company’s settle statement')
      expect(gated.sent.at(-1)).toEqual([quiet!.delivery.id])
      await expect(quietSettle).resolves.toBeDefined()
      expect(gated.parked.filter((p) => p.ids.length === 3)).toHaveLength(1)
      gated.parked.find((p) => p.ids.length === 3)!.go()
      await Promise.all(busySettles)
      // Every settle landed: nothing is open.
      expect(await store.openCount()).toBe(0)
    } finally {
      await store.close()
      await dropSchema(pool, schema)
    }
  })
})
