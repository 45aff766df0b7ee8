import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { runStoreConformance } from 'cotwebhook/testing'
import { postgresStore, type PostgresStore } from 'cotwebhook/postgres'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'
import { heldAnswers, startReceiver, until } from './helpers/receiver.js'

const available = await postgresAvailable('postgres store suites')
const pool = new pg.Pool({ connectionString: PG_URL, max: 12 })
const schemas = new Map<PostgresStore, string>()
afterAll(async () => {
  await pool.end()
})

const fresh = async () => {
  const schema = schemaName()
  const store = postgresStore(pool, { schema })
  await store.migrate()
  schemas.set(store, schema)
  return store
}
/** Connections (other than this one) in LISTEN on a store's channel. */
const listening = async (schema: string) =>
  (await pool.query(`SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN "cotwebhook_${schema}"%' AND pid <> pg_backend_pid()`)).rows.length
const dispose = async (store: PostgresStore) => {
  await store.close()
  await dropSchema(pool, schemas.get(store)!)
}

describe.skipIf(!available)('PostgreSQL', () => {
  runStoreConformance({
    name: 'postgres (pg.Pool, FOR UPDATE SKIP LOCKED)',
    create: fresh,
    // A restarted process: a new store object on the same schema.
    reopen: async (store) => {
      const again = postgresStore(pool, { schema: schemas.get(store as PostgresStore)! })
      await again.migrate()
      return again
    },
    cleanup: (s) => dispose(s as PostgresStore),
  })

  describe('the PostgreSQL store', () => {
    it('refuses to run before migrate(), and migrate() is safe to run concurrently', async () => {
      const schema = schemaName()
      const store = postgresStore(pool, { schema })
      await expect(store.openCount()).rejects.toThrow('postgresStore: the cotwebhook tables do not exist; call `await store.migrate()`')
      await Promise.all([store.migrate(), postgresStore(pool, { schema }).migrate(), postgresStore(pool, { schema }).migrate()])
      expect(await store.openCount()).toBe(0)
      await dropSchema(pool, schema)
    })

    it('wakes another engine through LISTEN/NOTIFY, long before its poll', async () => {
      const receiver = await startReceiver()
      const store = await fresh()
      try {
        const schema = schemas.get(store)!
        const emitter = engine({ store, dispatch: false })
        // No poll at all: only the notification can wake this worker, so its delivery proves NOTIFY
        // reached it (no clock involved).
        const worker = engine({ store: postgresStore(pool, { schema }), pollIntervalMs: 0 })
        await emitter.registry.create(COMPANY, taskWebhook(receiver.url))
        await until(async () => (await listening(schema)) >= 2, 15_000, 'both engines listening (the worker among them)')
        expect(await store.openCount()).toBe(0)
        const { deliveries } = await emitter.emit(taskEvent())
        await until(() => receiver.requests.length === 1, 15_000, 'the notified delivery')
        expect(receiver.requests[0]!.headers['webhook-id']).toBe(deliveries[0]!.id)
        await emitter.drain() // an emit-only engine's drain waits for the worker's deliveries
        expect(await store.openCount()).toBe(0)
      } finally {
        await closeAll()
        await receiver.close()
        await dispose(store)
      }
    })

    it('tells other engines of webhook writes, so their caches follow', async () => {
      const store = await fresh()
      try {
        const a = engine({ store, dispatch: false })
        const b = engine({ store: postgresStore(pool, { schema: schemas.get(store)! }), dispatch: false, cacheTtlMs: 0 })
        const { webhook } = await a.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
        expect((await b.emit(taskEvent())).deliveries).toHaveLength(1) // b caches the list
        await a.registry.update(COMPANY, webhook._id, { isActive: false })
        await until(async () => (await b.emit(taskEvent())).deliveries.length === 0, 15_000, 'b to see the deactivation')
      } finally {
        await closeAll()
        await dispose(store)
      }
    })
  })

  describe('an ordered emit behind a delivery out', () => {
    it('wakes nobody: the settle of the delivery out passes the queue on, and every one arrives in order', async () => {
      const gate = heldAnswers()
      const receiver = await startReceiver(() => gate.hold())
      const store = await fresh()
      const listener = new pg.Client({ connectionString: PG_URL })
      try {
        const schema = schemas.get(store)!
        const heard: string[] = []
        await listener.connect()
        listener.on('notification', (n) => heard.push(n.payload ?? ''))
        await listener.query(`LISTEN "cotwebhook_${schema}"`)
        let claims = 0
        const claim = store.claim.bind(store)
        store.claim = (options) => (claims++, claim(options))
        const waiting: Array<number | undefined> = []
        const enqueue = store.enqueue.bind(store)
        store.enqueue = async (input) => {
          const result = await enqueue(input)
          waiting.push(result.waiting)
          return result
        }
        // No poll: only kicks and notifications make this engine claim.
        const hooks = engine({ store, pollIntervalMs: 0 })
        await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
        const ids = [(await hooks.emit(taskEvent(0))).deliveries[0]!.id]
        await until(() => receiver.requests.length === 1, 15_000, 'the first delivery, leased at its emit')
        claims = 0
        heard.length = 0
        waiting.length = 0
        for (let n = 1; n <= 5; n++) ids.push((await hooks.emit(taskEvent(n))).deliveries[0]!.id)
        // Notifications arrive in commit order: once this one is heard, any the emits sent has been too.
        await pool.query(`SELECT pg_notify($1, 'sentinel')`, [`cotwebhook_${schema}`])
        await until(() => heard.includes('sentinel'), 15_000, 'the sentinel notification')
        expect(heard).toEqual(['sentinel'])
        expect(waiting).toEqual([1, 1, 1, 1, 1])
        expect(claims).toBe(0)
        gate.open()
        await until(() => receiver.requests.length === 6, 15_000, 'the five waiting deliveries')
        expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual(ids)
        await hooks.drain()
        expect(await store.openCount()).toBe(0)
      } finally {
        gate.open()
        await listener.end()
        await closeAll()
        await receiver.close()
        await dispose(store)
      }
    })
  })

  describe('a lost LISTEN connection', () => {
    it('is re-established, and what was missed meanwhile is not served from stale caches', async () => {
      const store = await fresh()
      const schema = schemas.get(store)!
      try {
        const a = engine({ store, dispatch: false })
        const bStore = postgresStore(pool, { schema })
        const b = engine({ store: bStore, dispatch: false })
        const { webhook } = await a.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
        await until(async () => (await listening(schema)) >= 2, 15_000, 'both engines listening')
        expect((await b.emit(taskEvent())).deliveries).toHaveLength(1) // b caches the list
        await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN "cotwebhook_${schema}"%'`)
        // Written while nobody listens: the notification is lost.
        await a.registry.update(COMPANY, webhook._id, { isActive: false })
        await until(async () => (await b.emit(taskEvent())).deliveries.length === 0, 10_000, 'b to see the deactivation after reconnecting')
        await until(async () => (await listening(schema)) >= 2, 10_000, 'both engines listening again')
      } finally {
        await closeAll()
        await dispose(store)
      }
    }, 30_000)
  })

  describe('the transactional outbox on PostgreSQL', () => {
    it('delivers only what the host transaction committed', async () => {
      const receiver = await startReceiver()
      const store = await fresh()
      const schema = schemas.get(store)!
      try {
        await pool.query(`CREATE TABLE "${schema}".tasks (id TEXT PRIMARY KEY, name TEXT)`)
        const hooks = engine({ store })
        const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
        const client = await pool.connect()
        await client.query('BEGIN')
        await client.query(`INSERT INTO "${schema}".tasks VALUES ('t1', 'rolled back')`)
        const rolledBack = await hooks.emit(taskEvent(1), { tx: client })
        await client.query('ROLLBACK')
        await client.query('BEGIN')
        await client.query(`INSERT INTO "${schema}".tasks VALUES ('t2', 'committed')`)
        const committed = await hooks.emit(taskEvent(2), { tx: client })
        expect(await store.openCount()).toBe(0)
        await client.query('COMMIT')
        client.release()
        await until(() => receiver.requests.length === 1, 15_000, 'the committed delivery')
        await hooks.drain()
        expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([committed.deliveries[0]!.id])
        expect(await store.getDelivery(COMPANY, rolledBack.deliveries[0]!.id)).toBeUndefined()
        expect((await hooks.logs(COMPANY, webhook._id)).map((l) => l._id)).toEqual([committed.deliveries[0]!.id])
      } finally {
        await closeAll()
        await receiver.close()
        await dispose(store)
      }
    })

    it('leaves the host transaction usable when the enqueue fails, and refuses a tx that is not a client', async () => {
      const store = await fresh()
      try {
        const hooks = engine({ store, dispatch: false })
        await hooks.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
        await expect(hooks.emit(taskEvent(), { tx: {} })).rejects.toThrow('postgresStore: emit(…, { tx }) takes the pg client')
        const client = await pool.connect()
        await client.query('BEGIN')
        const broken = { query: (text: string, values?: unknown[]) => (text.includes('enqueue_in_tx') ? Promise.reject(new Error('boom')) : client.query(text, values)) }
        await expect(hooks.emit(taskEvent(), { tx: broken })).rejects.toThrow('boom')
        await expect(client.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] })
        await client.query('ROLLBACK')
        client.release()
      } finally {
        await closeAll()
        await dispose(store)
      }
    })
  })
})
