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
    if (typeof config === 'object' && /_settle(_turns)?$/.test(config.name)) {
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

const policy = { failureThreshold: 5, cooldownMs: 1_000, maxCooldownMs: 10_000, disableAfterFailures: 0, disableAfterMs: 0 }

const success = (now: number) => ({ now, state: 'succeeded' as const, response: 'ok', attempt: { at: new Date(now).toISOString(), status: 200, durationMs: 1 } })

describe.skipIf(!available)('PostgreSQL settles at once', () => {
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

  it('a settle that asks for its next delivery never waits for a queue row it did not lock in order', async () => {
    // Two settle statements can now run at once. One that holds the queue row of webhook W2 and then,
    // for its `next`, merged a host transaction's wake-up into W1's queue row, waited for W1 while
    // another holding W1 waited for W2: a deadlock. The claim inside a settle leaves wake-ups alone.
    const schema = schemaName()
    const store = postgresStore(pool, { schema })
    await store.migrate()
    const other = await pool.connect()
    try {
      const records = [webhookRecord(BUSY), webhookRecord(BUSY)].sort((a, b) => (a.webhook._id < b.webhook._id ? -1 : 1))
      for (const record of records) await store.insertWebhook(record)
      const [w1, w2] = records.map((r) => r.webhook._id)
      const now = Date.now()
      // W1 gets a queue row; W2 a delivery leased at emit.
      await store.enqueue({ eventId: objectId(), event: taskEvent(BUSY), deliveries: [{ id: objectId(), webhookId: w1! }], now })
      const [leasedW2] = (
        await store.enqueue({ eventId: objectId(), event: taskEvent(BUSY), deliveries: [{ id: objectId(), webhookId: w2! }], now, claim: { owner: 'test', leaseMs: 60_000, limit: 1, ordered: false } })
      ).claimed!
      // A wake-up for W1, as a host transaction's emit leaves, and W1's queue row held elsewhere (as by
      // another settle in its webhook-id order).
      await pool.query(`INSERT INTO "${schema}".cotwebhook_wakeups (webhook_id, company, n, at, first_seq) VALUES ($1, $2, 0, $3, 0)`, [w1, BUSY, now])
      await other.query('BEGIN')
      await other.query(`SELECT 1 FROM "${schema}".cotwebhook_queues WHERE webhook_id = $1 FOR UPDATE`, [w1])
      const settled = store.settle(leasedW2!.lease, {
        now, state: 'pending', response: 'boom', nextAttemptAt: now + 100_000, attempt: { at: new Date(now).toISOString(), status: 500, durationMs: 1 },
        endpoint: { outcome: 'failure', exhausted: false, policy }, next: { owner: 'test', leaseMs: 60_000, ordered: false },
      })
      // Answered while W1 is still held: it never waited for it (waiting, it would hang here).
      let answered = false
      void settled.then(() => (answered = true), () => (answered = true))
      await until(() => answered, 10_000, 'the settle to be answered while W1 is held')
      await expect(settled).resolves.toBeDefined()
      await other.query(`SELECT 1 FROM "${schema}".cotwebhook_queues WHERE webhook_id = $1 FOR UPDATE`, [w2])
      await other.query('COMMIT')
      // The wake-up was left for a plain claim, which merges it.
      expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".cotwebhook_wakeups`)).rows[0].n).toBe(1)
      await store.claim({ now: Date.now(), limit: 4, leaseMs: 60_000, owner: 'test', ordered: false })
      expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".cotwebhook_wakeups`)).rows[0].n).toBe(0)
    } finally {
      await other.query('ROLLBACK').catch(() => {})
      other.release()
      await store.close()
      await dropSchema(pool, schema)
    }
  })
})
