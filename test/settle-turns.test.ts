import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { objectId, type Store } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { taskEvent, webhookRecord } from 'cotwebhook/testing'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'

/**
 * Company turns in the claims a settle makes for its `next`, on the stores that keep turns as a place
 * in the order of companies and answer `next` (SQLite and PostgreSQL; D1 answers none): they go on from
 * the store's last turn, so a quiet company's settle hands on its own webhook's next once the rotation
 * has come round to it. Told by which delivery each answer carries, on a clock the test sets.
 */

const pgUp = await postgresAvailable('settle turns')
const pool = new pg.Pool({ connectionString: PG_URL, max: 4 })
afterAll(async () => {
  await pool.end()
})

const BUSY = '625be93a286ef83c1c0e8452'
const QUIET = '625be93a286ef83c1c0e8453'

type Opened = { store: Store; close: () => Promise<void> }

const stores: Array<{ name: string; up: boolean; open: () => Promise<Opened> }> = [
  {
    name: 'SQLite',
    up: true,
    open: async () => {
      const store = sqliteStore(':memory:')
      await store.migrate()
      return { store, close: () => store.close() }
    },
  },
  {
    name: 'PostgreSQL',
    up: pgUp,
    open: async () => {
      const schema = schemaName()
      const store = postgresStore(pool, { schema })
      await store.migrate()
      return { store, close: async () => (await store.close(), await dropSchema(pool, schema)) }
    },
  },
]

/** A webhook of `company` made in the store, and one delivery to it enqueued at `now` (its id). */
function writer(store: Store) {
  return {
    hook: async (company: string) => {
      const record = webhookRecord(company)
      await store.insertWebhook(record)
      return record.webhook._id
    },
    enqueue: async (webhookId: string, company: string, now: number) =>
      (await store.enqueue({ eventId: objectId(), event: taskEvent(company), deliveries: [{ id: objectId(), webhookId }], now })).deliveries[0]!.id,
  }
}

/**
 * A quiet company's webhook with two deliveries, the first claimed; then two busy-company webhooks with
 * one each, falling due while the quiet head is out, and a claim that serves the busy company (b1).
 */
async function quietThenBusy(store: Store, ordered: boolean) {
  const { hook, enqueue } = writer(store)
  const claim = (now: number) => store.claim({ now, limit: 1, leaseMs: 1_000, owner: 'me', ordered })
  const quiet = await hook(QUIET)
  const [q1, q2] = [await enqueue(quiet, QUIET, 1), await enqueue(quiet, QUIET, 2)]
  const [firstQuiet] = await claim(10)
  expect(firstQuiet?.delivery.id).toBe(q1)
  const [b1, b2] = [await enqueue(await hook(BUSY), BUSY, 11), await enqueue(await hook(BUSY), BUSY, 12)]
  const [firstBusy] = await claim(13)
  expect(firstBusy?.delivery.id).toBe(b1)
  return { claim, q2, b2, firstQuiet: firstQuiet!, firstBusy: firstBusy! }
}

const next = { owner: 'me', leaseMs: 1_000, ordered: true }
const success = (now: number) => ({ now, state: 'succeeded' as const, response: 'ok', next })

for (const { name, up, open } of stores) {
  describe.skipIf(!up)(`company turns in a settle’s claim (${name})`, () => {
    const withStore = async (work: (store: Store) => Promise<void>) => {
      const { store, close } = await open()
      try {
        await work(store)
      } finally {
        await close()
      }
    }

    it('hands a company its own next once the rotation comes round to it (ordered)', async () => {
      await withStore(async (store) => {
        const { claim, q2, b2, firstQuiet, firstBusy } = await quietThenBusy(store, true)


        // The busy company has had a turn since the quiet one's: the quiet settle gets its webhook's next
        // (a settle counted as the quiet company's turn would hand it b2, and q2 would wait for the next
        // claim or settle of anyone).
        const quietSettled = await store.settle(firstQuiet.lease, success(14))
        expect(quietSettled?.next?.delivery.id).toBe(q2)
        // The busy settle passes on only its own webhook's next (it has none, and no other company has
        // due work); a claim finds the busy company's other webhook.
        expect((await store.settle(firstBusy.lease, success(15)))?.next).toBeUndefined()
        const [secondBusy] = await claim(16)
        expect(secondBusy?.delivery.id).toBe(b2)
        for (const [i, held] of [quietSettled!.next!, secondBusy!].entries()) expect((await store.settle(held.lease, success(17 + i)))?.next).toBeUndefined()
        expect(await store.openCount()).toBe(0)
      })
    })

    it('hands a company its own next once the rotation comes round to it (unordered)', async () => {
      await withStore(async (store) => {
        const { q2, b2, firstQuiet, firstBusy } = await quietThenBusy(store, false)
        const any = { owner: 'me', leaseMs: 1_000, ordered: false }
        // Started after the settling company, this claim would serve the busy one (b2), as PostgreSQL's
        // did; SQLite answers unordered settles with one plain claim for the batch, which kept the turns.
        const quietSettled = await store.settle(firstQuiet.lease, { now: 14, state: 'succeeded', response: 'ok', next: any })
        expect(quietSettled?.next?.delivery.id).toBe(q2)
        const busySettled = await store.settle(firstBusy.lease, { now: 15, state: 'succeeded', response: 'ok', next: any })
        expect(busySettled?.next?.delivery.id).toBe(b2)
        for (const held of [quietSettled!.next!, busySettled!.next!]) await store.settle(held.lease, { now: 16, state: 'succeeded', response: 'ok' })
        expect(await store.openCount()).toBe(0)
      })
    })

    it('counts a queue passed straight on as its company’s turn', async () => {
      await withStore(async (store) => {
        const { hook, enqueue } = writer(store)
        const [busy1, quiet, busy2] = [await hook(BUSY), await hook(QUIET), await hook(BUSY)]
        const [b1, b2] = [await enqueue(busy1, BUSY, 1), await enqueue(busy1, BUSY, 2)]
        const [q1, q2] = [await enqueue(quiet, QUIET, 3), await enqueue(quiet, QUIET, 4)]
        const b3 = await enqueue(busy2, BUSY, 5)
        // One claim serves both companies in turn (the busy one's earliest queue, then the quiet one).
        const claimed = await store.claim({ now: 10, limit: 2, leaseMs: 1_000, owner: 'me', ordered: true })
        expect(claimed.map((c) => c.delivery.id).sort()).toEqual([b1, q1].sort())
        const [busyHead, quietHead] = [claimed.find((c) => c.delivery.id === b1)!, claimed.find((c) => c.delivery.id === q1)!]
        // No other company has due work (the quiet head is out): the busy queue passes straight on, and
        // that serves the busy company.
        expect((await store.settle(busyHead.lease, success(11)))?.next?.delivery.id).toBe(b2)
        // So the quiet company's turn has come round: its settle gets its own next, not b3 (a store that
        // only counted claims would still stand after the quiet company and hand b3 on).
        expect((await store.settle(quietHead.lease, success(12)))?.next?.delivery.id).toBe(q2)
        const [last] = await store.claim({ now: 13, limit: 1, leaseMs: 1_000, owner: 'me', ordered: true })
        expect(last?.delivery.id).toBe(b3)
      })
    })
  })
}
