import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { memoryStore, objectId, type Store, type Webhooks, type WebhooksOptions } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'
import { startReceiver, until, type Receiver } from './helpers/receiver.js'

/**
 * Endpoint state (health, circuit) lives in the store: every engine on it counts the same failures,
 * sees the same open circuit, and a restarted process picks up where the last one left off.
 */

const pgUp = await postgresAvailable('shared endpoint state on PostgreSQL')
const pool = new pg.Pool({ connectionString: PG_URL, max: 12 })
const dir = mkdtempSync(join(tmpdir(), 'cotwebhook-shared-'))
const receivers: Receiver[] = []
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
  for (const cleanup of cleanups.splice(0)) await cleanup()
})
afterAll(async () => {
  await pool.end()
  rmSync(dir, { recursive: true, force: true })
})

type Kind = 'memory' | 'sqlite' | 'postgres'
/** A place for the data and a way to open it, as many times as processes would. */
function database(kind: Kind): () => Promise<Store> {
  if (kind === 'memory') {
    const store = memoryStore()
    return async () => store
  }
  if (kind === 'sqlite') {
    const path = join(dir, `${objectId()}.db`)
    return async () => {
      const store = sqliteStore(path)
      await store.migrate()
      cleanups.push(() => store.close())
      return store
    }
  }
  const schema = schemaName()
  cleanups.push(() => dropSchema(pool, schema))
  return async () => {
    const store = postgresStore(pool, { schema })
    await store.migrate()
    cleanups.push(() => store.close())
    return store
  }
}

const failing = async () => {
  const receiver = await startReceiver(() => ({ status: 500, body: 'down' }))
  receivers.push(receiver)
  return receiver
}

// One attempt per delivery, no circuit: each delivery is exhausted by its single failure.
const oneShot: WebhooksOptions = { retry: { schedule: [] }, circuitBreaker: false, ordering: 'none', pollIntervalMs: 50 }

const kinds = (['memory', 'sqlite', 'postgres'] as const).filter((kind) => kind !== 'postgres' || pgUp)

describe.each(kinds)('endpoint state shared through the %s store', (kind) => {
  it('counts exhausted deliveries across two engines and turns the webhook off once, at the threshold', async () => {
    const receiver = await failing()
    const open = database(kind)
    const disabled: string[] = []
    const options: WebhooksOptions = { ...oneShot, health: { disableAfterFailures: 4 }, on: { webhookDisabled: (e) => void disabled.push(e.reason) } }
    const a = engine({ ...options, store: await open() })
    const b = engine({ ...options, store: await open() })
    const { webhook } = await a.registry.create(COMPANY, taskWebhook(receiver.url))
    // Each engine delivers what it emits (it leases them in the emit): two failures each.
    for (const [i, hooks] of [a, a, b, b].entries()) {
      await hooks.emit(taskEvent(i))
      await until(() => receiver.requests.length === i + 1, 10_000, `delivery ${i + 1}`)
      await until(async () => (await hooks.health(COMPANY, webhook._id)).consecutiveFailures === i + 1, 10_000, `failure ${i + 1} counted`)
    }
    expect(await b.health(COMPANY, webhook._id)).toMatchObject({ consecutiveFailures: 4 })
    await until(async () => !(await b.registry.get(COMPANY, webhook._id)).isActive, 10_000, 'the webhook turned off')
    expect(disabled).toEqual(['failures'])
    // Neither engine sends to it any more.
    await a.emit(taskEvent(9))
    await b.emit(taskEvent(10))
    expect(receiver.requests).toHaveLength(4)
  })

  it('holds back every engine while one engine’s failures have opened the circuit', async () => {
    const receiver = await failing()
    const open = database(kind)
    const opened: number[] = []
    const options: WebhooksOptions = {
      retry: { schedule: [60_000] },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 600_000, maxCooldownMs: 600_000 },
      ordering: 'none',
      pollIntervalMs: 20,
      on: { circuit: (e) => void (e.state === 'open' && opened.push(e.until ?? 0)) },
    }
    const a = engine({ ...options, store: await open() })
    const { webhook } = await a.registry.create(COMPANY, taskWebhook(receiver.url))
    await a.emit(taskEvent(1))
    await a.emit(taskEvent(2))
    await until(() => opened.length === 1, 10_000, 'the circuit to open')
    expect(receiver.requests).toHaveLength(2)
    const b = engine({ ...options, store: await open() })
    const claims = countClaims(b)
    await b.emit(taskEvent(3))
    // b looks at the store many times (its emit, its polls) and sends nothing: the circuit is the store's.
    await until(() => claims() >= 10, 10_000, 'b to look at the store')
    expect(receiver.requests).toHaveLength(2)
    expect(await b.health(COMPANY, webhook._id)).toMatchObject({ circuit: 'open' })
  })
})

describe.each(kinds)('a dead endpoint and three engines on one %s store', (kind) => {
  // A failed probe is retried on its own schedule; the queue's other deliveries, due already, give the
  // next cool-down its probe. Retries 1 ms apart and 10 minutes apart: the probes come at the same pace.
  it.each([1, 600_000])('get one probe through per cool-down between them, however often each of them looks (retries %i ms apart)', async (delay) => {
    const receiver = await failing()
    const open = database(kind)
    let clock = Date.now()
    const options: WebhooksOptions = {
      now: () => clock,
      concurrency: 2,
      retry: { schedule: Array(20).fill(delay) },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 1_000, maxCooldownMs: 1_000 },
      ordering: 'none',
      pollIntervalMs: 10,
    }
    const engines = [engine({ ...options, store: await open() }), engine({ ...options, store: await open() }), engine({ ...options, store: await open() })]
    const looks = countClaims(...engines)
    const { webhook } = await engines[0]!.registry.create(COMPANY, taskWebhook(receiver.url))
    for (let i = 0; i < 30; i++) await engines[i % 3]!.emit(taskEvent(i))
    await until(async () => (await engines[0]!.health(COMPANY, webhook._id)).circuit === 'open', 10_000, 'the circuit to open')
    // What the engines had claimed before it opened is back in the store (or spent): they are idle.
    await Promise.all(engines.map((hooks) => hooks.flush()))
    let sent = receiver.requests.length
    for (let period = 1; period <= 4; period++) {
      clock += 1_001
      await until(() => receiver.requests.length > sent, 10_000, `the probe of cool-down ${period}`)
      // Every engine looks many times more while the circuit is open again: nothing else goes.
      const seen = looks()
      await until(() => looks() >= seen + 30, 10_000, 'the engines to look at the store')
      expect(receiver.requests.length).toBe(sent + 1)
      sent = receiver.requests.length
    }
  })
})

describe.each(kinds.filter((kind) => kind !== 'memory'))('a dead endpoint with a backlog (%s)', (kind) => {
  it('costs no store writes per pending delivery while its circuit is open', async () => {
    const receiver = await failing()
    let writes: () => Promise<number>
    let store: Store
    if (kind === 'sqlite') {
      // The store on a connection of ours, so its changes can be counted.
      const db = new Database(join(dir, `${objectId()}.db`))
      const sqlite = sqliteStore(db)
      await sqlite.migrate()
      cleanups.push(async () => void db.close())
      store = sqlite
      writes = async () => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n
    } else {
      const schema = schemaName()
      cleanups.push(() => dropSchema(pool, schema))
      const postgres = postgresStore(pool, { schema })
      await postgres.migrate()
      store = postgres
      // Every write makes a new row version: count the rows whose version changed.
      let before = new Map<string, string>()
      writes = async () => {
        const { rows } = await pool.query<{ key: string; version: string }>(
          `SELECT 'd' || seq AS key, ctid::text || xmin::text AS version FROM "${schema}".cotwebhook_deliveries
           UNION ALL SELECT 'q' || webhook_id, ctid::text || xmin::text FROM "${schema}".cotwebhook_queues`,
        )
        const now = new Map(rows.map((r) => [r.key, r.version]))
        let changed = 0
        for (const [key, version] of now) if (before.get(key) !== version) changed++
        before = now
        return changed
      }
    }
    const emitter = engine({ store, dispatch: false })
    const { webhook } = await emitter.registry.create(COMPANY, taskWebhook(receiver.url))
    for (let i = 0; i < 500; i++) await emitter.emit(taskEvent(i))
    const hooks = engine({
      store,
      concurrency: 4,
      retry: { schedule: [60_000], maxInProcessDelayMs: 0 },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 600_000, maxCooldownMs: 600_000 },
      ordering: 'none',
      pollIntervalMs: 10,
    })
    const looks = countClaims(hooks)
    await until(async () => (await hooks.health(COMPANY, webhook._id)).circuit === 'open', 10_000, 'the circuit to open')
    // What the engine had claimed before it opened is back in the store: it is idle.
    await hooks.flush()
    const base = await writes()
    const seen = looks()
    await until(() => looks() >= seen + 50, 10_000, 'fifty looks at the store')
    // 500 pending, 50 claims: not one write (before, each look handed every pending delivery back).
    const during = (await writes()) - (kind === 'sqlite' ? base : 0)
    expect(during).toBe(0)
    expect(await store.openCount()).toBe(500)
  })
})

describe.each(kinds.filter((kind) => kind !== 'memory'))('endpoint state across restarts (%s)', (kind) => {
  it('keeps counting exhausted deliveries over restarts, and turns the webhook off at the threshold', async () => {
    const receiver = await failing()
    const open = database(kind)
    const disabled: string[] = []
    const options: WebhooksOptions = { ...oneShot, health: { disableAfterFailures: 3 }, on: { webhookDisabled: (e) => void disabled.push(e.reason) } }
    let webhookId = ''
    // Three processes one after the other, one exhausted delivery each.
    for (let run = 1; run <= 3; run++) {
      const hooks = engine({ ...options, store: await open() })
      if (run === 1) webhookId = (await hooks.registry.create(COMPANY, taskWebhook(receiver.url))).webhook._id
      await hooks.emit(taskEvent(run))
      await until(async () => (await hooks.health(COMPANY, webhookId)).consecutiveFailures === run, 10_000, `failure ${run} counted`)
      if (run < 3) {
        expect(disabled).toEqual([])
        await closeAll()
      }
    }
    const last = engine({ ...options, store: await open() })
    await until(async () => !(await last.registry.get(COMPANY, webhookId)).isActive, 10_000, 'the webhook turned off')
    expect(disabled).toEqual(['failures'])
    expect(receiver.requests).toHaveLength(3)
  })
})

/** Counts the claims engines make on their stores from now on (a store they share counted once). */
function countClaims(...engines: Webhooks[]): () => number {
  let claims = 0
  for (const store of new Set(engines.map((hooks) => hooks.store as Store))) {
    const claim = store.claim.bind(store)
    store.claim = async (options) => {
      claims++
      return claim(options)
    }
  }
  return () => claims
}
