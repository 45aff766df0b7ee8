import Database from 'better-sqlite3'
import pg from 'pg'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { memoryStore, objectId, type Store } from 'cotwebhook'
import { taskEvent as fixtureEvent, webhookRecord } from 'cotwebhook/testing'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'
import { startReceiver, until, type Receiver } from './helpers/receiver.js'

/**
 * A webhook with a big backlog: claims cost the same whatever its size (counted, not timed), and a
 * backlog held behind an open circuit neither freezes the process nor starves the probe.
 */

const pgUp = await postgresAvailable('backlog suites on PostgreSQL')
const pool = new pg.Pool({ connectionString: PG_URL, max: 8 })
const receivers: Receiver[] = []
afterEach(async () => {
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})
afterAll(() => pool.end())

/**
 * One new webhook with a history of `count` deliveries made and `count` open ones, enqueued and
 * settled as concurrent emits and sends would be.
 */
async function backlog(store: Store, count: number): Promise<string> {
  const record = webhookRecord(COMPANY)
  await store.insertWebhook(record)
  const webhookId = record.webhook._id
  const enqueue = async (from: number) => {
    for (let n = 0; n < count; n += 1_000) {
      await Promise.all(Array.from({ length: Math.min(1_000, count - n) }, (_, i) =>
        store.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId }], now: from + n + i })))
    }
  }
  await enqueue(0)
  for (;;) {
    // Short leases: an unordered claim's count of what is out is left to run out, not settled away.
    const claimed = await store.claim({ now: count, limit: 1_000, leaseMs: 1, owner: 'history', ordered: false })
    if (!claimed.length) break
    await Promise.all(claimed.map((c) => store.settle(c.lease, { now: count, state: 'succeeded', response: 'ok' })))
  }
  await enqueue(count)
  return webhookId
}

const SMALL = 1_000
const LARGE = 20_000

describe.skipIf(!pgUp)('claims on a big backlog (PostgreSQL)', () => {
  /** Rows of the deliveries and queues tables one claim reads, counted by PostgreSQL for its transaction. */
  async function rowsReadByClaim(size: number, ordered: boolean): Promise<{ rows: number; claimed: number }> {
    const schema = schemaName()
    const store = postgresStore(pool, { schema })
    await store.migrate()
    await backlog(store, size)
    // One claim in a transaction of its own, rolled back, on a connection of its own: pg_stat_xact_*
    // counts what this backend has not reported yet, which on a pooled one includes earlier work.
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    try {
      await client.query('BEGIN')
      const { rows: claimed } = await client.query(`SELECT * FROM "${schema}".cotwebhook_claim($1, $2, $3, $4, $5, true, NULL)`, [2 * size + 1, 10, 60_000, 'probe:x', ordered])
      const { rows } = await client.query<{ read: string }>(
        `SELECT sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) AS read FROM pg_stat_xact_user_tables WHERE schemaname = $1`,
        [schema],
      )
      await client.query('ROLLBACK')
      return { rows: Number(rows[0]!.read), claimed: claimed.length }
    } finally {
      await client.end()
      await dropSchema(pool, schema)
    }
  }

  it('plans its functions without JIT, whose compiling cost 100 ms a claim at a million open deliveries', async () => {
    const schema = schemaName()
    const store = postgresStore(pool, { schema })
    await store.migrate()
    try {
      const { rows } = await pool.query<{ proname: string; proconfig: string[] | null }>(
        `SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1 AND p.proname IN ('cotwebhook_enqueue', 'cotwebhook_enqueue_in_tx', 'cotwebhook_claim', 'cotwebhook_settle', 'cotwebhook_settle_turns') ORDER BY p.proname`,
        [schema],
      )
      expect(rows.map((r) => r.proname)).toEqual(['cotwebhook_claim', 'cotwebhook_enqueue', 'cotwebhook_enqueue_in_tx', 'cotwebhook_settle', 'cotwebhook_settle_turns'])
      for (const row of rows) expect(row.proconfig, row.proname).toContain('jit=off')
    } finally {
      await store.close()
      await dropSchema(pool, schema)
    }
  })

  it.each([true, false])('reads as many rows with 20,000 made and 20,000 open as with 1,000 of each (ordered: %s)', async (ordered) => {
    const small = await rowsReadByClaim(SMALL, ordered)
    const large = await rowsReadByClaim(LARGE, ordered)
    expect([small.claimed, large.claimed]).toEqual(ordered ? [1, 1] : [10, 10])
    // 20 times the backlog and the history: the same work (a scan would read 20 times the rows).
    expect(large.rows).toBeLessThanOrEqual(small.rows + 2)
    // Ten deliveries leased and looked up, their queue and its company turn: a few rows each.
    expect(small.rows).toBeLessThan(64)
  }, 60_000)
})

describe('claims on a big backlog (SQLite)', () => {
  /** The statements one claim runs, and how SQLite plans each of them. */
  async function claimStatements(size: number, ordered: boolean) {
    const db = new Database(':memory:')
    const store = sqliteStore(db)
    await store.migrate()
    await backlog(store, size)
    const ran: string[] = []
    const prepare = db.prepare.bind(db)
    db.prepare = ((sql: string) => {
      ran.push(sql)
      return prepare(sql)
    }) as typeof db.prepare
    // Statements are prepared once per connection: drop the cache by claiming through a fresh store object.
    const claimer = sqliteStore(db)
    await claimer.migrate()
    ran.length = 0
    const claimed = await claimer.claim({ now: 2 * size + 1, limit: 10, leaseMs: 60_000, owner: 'x', ordered })
    db.prepare = prepare
    const plans = ran.map((sql) => ({
      sql,
      plan: (prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...Array((sql.match(/\?/g) ?? []).length).fill(0)) as Array<{ detail: string }>).map((r) => r.detail),
    }))
    db.close()
    return { claimed: claimed.length, plans }
  }

  it.each([true, false])('runs the same statements with 20,000 made and 20,000 open as with 1,000 of each, through indexes of open deliveries (ordered: %s)', async (ordered) => {
    const small = await claimStatements(SMALL, ordered)
    const large = await claimStatements(LARGE, ordered)
    expect([small.claimed, large.claimed]).toEqual(ordered ? [1, 1] : [10, 10])
    expect(large.plans.map((p) => p.sql)).toEqual(small.plans.map((p) => p.sql))
    for (const { sql, plan } of large.plans) {
      // No statement walks the deliveries, nor a webhook's log (which holds every delivery ever made):
      // open ones are found through the indexes that hold only them, others by key.
      expect(plan.filter((step) => /^SCAN cotwebhook_deliveries\b|deliveries_log/.test(step)), sql).toEqual([])
    }
  }, 60_000)
})

describe('a backlog behind an open circuit (memory store, unordered)', () => {
  it('never holds the event loop for more than a few store calls, and the probe gets its answer', async () => {
    let healthy = false
    const receiver = await startReceiver(() => ({ status: healthy ? 204 : 500 }))
    receivers.push(receiver)
    const store = memoryStore()
    let clock = 1_000_000
    const hooks = engine({
      store,
      now: () => clock,
      ordering: 'none',
      concurrency: 8,
      pollIntervalMs: 5,
      retry: { schedule: [1, 1] },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 2_000, maxCooldownMs: 2_000 },
    })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
    // Turns of the event loop, and the claims made in each.
    let turn = 0
    let ticking = true
    const tick = () => {
      turn++
      if (ticking) setTimeout(tick, 0)
    }
    setTimeout(tick, 0)
    // Store calls that can hand out work (claims, and settles asking for the next), per turn.
    const perTurn = new Map<number, number>()
    const count = () => perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1)
    const claim = store.claim.bind(store)
    const settle = store.settle.bind(store)
    store.claim = async (options) => {
      count()
      return claim(options)
    }
    store.settle = async (lease, settlement) => {
      if (settlement.next) count()
      return settle(lease, settlement)
    }
    await hooks.emit(taskEvent(-1))
    await until(async () => (await hooks.health(COMPANY, webhook._id)).circuit === 'open', 10_000, 'the circuit to open')
    await hooks.flush()
    // 5,000 more behind the open circuit.
    for (let n = 0; n < 5_000; n += 1_000) {
      await Promise.all(Array.from({ length: 1_000 }, (_, i) =>
        store.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId: webhook._id }], now: clock - 5_000 + n + i })))
    }
    const sent = receiver.requests.length
    const startTurn = turn
    await until(() => turn >= startTurn + 50, 10_000, 'fifty turns of the event loop')
    expect(receiver.requests.length).toBe(sent) // held back
    // The cool-down ends, the endpoint is back: the probe goes, its success lets the rest through.
    healthy = true
    clock += 2_001
    await until(() => receiver.requests.length > sent, 10_000, 'the probe')
    await until(async () => (await store.openCount()) === 0, 60_000, 'the backlog delivered')
    ticking = false
    expect(receiver.requests.length - sent).toBeGreaterThanOrEqual(5_001)
    // However big the backlog, a turn of the event loop held no more than a settle per send slot (8)
    // and a few claims (a loop that took the backlog in one go would show thousands).
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(16)
  }, 90_000)
})
