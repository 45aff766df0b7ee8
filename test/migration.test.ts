import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { objectId, type Store } from 'cotwebhook'
import { taskEvent as fixtureEvent, webhookRecord } from 'cotwebhook/testing'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { v1Statements, v1Writes, type V1Delivery, type V1Rows } from './fixtures/schema-v1.js'
import { COMPANY, closeAll, engine, nOf, taskEvent } from './helpers/fixtures.js'
import { PG_URL, dropSchema, postgresAvailable, schemaName } from './helpers/postgres.js'
import { realSleep, startReceiver, until, type Receiver } from './helpers/receiver.js'

const pgUp = await postgresAvailable('migration suites on PostgreSQL')
const pool = new pg.Pool({ connectionString: PG_URL, max: 16 })
const dir = mkdtempSync(join(tmpdir(), 'cotwebhook-migrate-'))
const receivers: Receiver[] = []
afterEach(async () => {
  await closeAll()
  await Promise.all(receivers.splice(0).map((r) => r.close()))
})
afterAll(async () => {
  await pool.end()
  rmSync(dir, { recursive: true, force: true })
})

type Kind = 'sqlite' | 'postgres'
const PREFIX = 'cotwebhook_'

/** A database as release 0.1 left it; `write` adds rows the way that release wrote them. */
async function versionOneDatabase(kind: Kind): Promise<{ open: () => Store & { migrate(): Promise<void>; close(): Promise<void> }; write: (rows: V1Rows) => Promise<void>; drop: () => Promise<void> }> {
  if (kind === 'postgres') {
    const schema = schemaName()
    for (const statement of v1Statements('postgres', PREFIX, schema)) await pool.query(statement)
    return {
      open: () => postgresStore(pool, { schema }),
      write: async (rows) => {
        for (const w of v1Writes('postgres', PREFIX, schema, rows)) await pool.query(w.sql, w.values)
      },
      drop: () => dropSchema(pool, schema),
    }
  }
  const path = join(dir, `${objectId()}.db`)
  const db = new Database(path)
  for (const statement of v1Statements('sqlite', PREFIX)) db.exec(statement)
  db.close()
  return {
    open: () => sqliteStore(path),
    write: async (rows) => {
      const conn = new Database(path)
      for (const w of v1Writes('sqlite', PREFIX, undefined, rows)) conn.prepare(w.sql).run(...w.values)
      conn.close()
    },
    drop: async () => {},
  }
}

/**
 * Two webhooks as version 1 left them mid-flight: for each, one delivery already made and five open;
 * the first open one of `leased` taken by an instance of the old release until `leaseUntil`.
 */
function inFlight(receiver: Receiver, now: number, leaseUntil: number) {
  const hooks = [0, 1].map((i) => webhookRecord(COMPANY, { url: `${receiver.url}/w${i}`, code: `w${i}`, name: `w${i}` }))
  const events: Array<{ id: string; company: string; body: unknown; createdAt: number }> = []
  const deliveries: Array<V1Delivery & { company: string }> = []
  for (const [w, { webhook }] of hooks.entries()) {
    for (let n = 0; n < 6; n++) {
      const eventId = objectId()
      events.push({ id: eventId, company: COMPANY, body: { ...taskEvent(n), createdAt: new Date(now).toISOString(), diff: {}, extraData: null }, createdAt: now - 1_000 + n })
      deliveries.push({
        id: objectId(),
        company: COMPANY,
        webhookId: webhook._id,
        eventId,
        state: n === 0 ? 'succeeded' : 'pending',
        createdAt: now - 1_000 + n,
        nextAttemptAt: n === 0 ? null : now - 1_000 + n,
        ...(w === 0 && n === 1 ? { lease: { token: 'old-release:instance', until: leaseUntil } } : {}),
      })
    }
  }
  return { hooks, rows: { webhooks: hooks, events, deliveries } }
}

describe.each(['sqlite', 'postgres'] as const)('upgrading a version 1 database (%s)', (kind) => {
  it.skipIf(kind === 'postgres' && !pgUp)('delivers every pending delivery, leased ones after their lease, each webhook in order', async () => {
    const receiver = await startReceiver(() => ({ status: 204 }))
    receivers.push(receiver)
    const db = await versionOneDatabase(kind)
    const now = Date.now()
    const leaseUntil = now + 400
    const { hooks, rows } = inFlight(receiver, now, leaseUntil)
    await db.write(rows)

    const store = db.open()
    await expect(store.openCount()).rejects.toThrow('at version 1, this version of cotwebhook needs 3')
    await store.migrate()
    expect(await store.openCount()).toBe(10)
    // The webhooks were kept as they were, and the endpoint state starts clean.
    expect((await store.getWebhook(COMPANY, hooks[0]!.webhook._id))?.webhook.code).toBe('w0')
    expect(await store.endpoint(hooks[0]!.webhook._id)).toMatchObject({ open: 5, consecutiveFailures: 0, openUntil: null })

    engine({ store, pollIntervalMs: 100 })
    await until(() => receiver.requests.length >= 10, 15_000, 'all ten open deliveries')
    for (const w of ['w0', 'w1']) {
      expect(receiver.requests.filter((r) => r.path === `/${w}`).map((r) => nOf(r.body))).toEqual([1, 2, 3, 4, 5])
    }
    // The delivery the old release held went only once its lease had run out.
    const held = receiver.requests.find((r) => r.path === '/w0')!
    expect(held.at).toBeGreaterThanOrEqual(leaseUntil)
    await until(async () => (await store.openCount()) === 0, 5_000, 'every delivery final')
    expect(receiver.requests).toHaveLength(10)
    await closeAll()
    await store.close()
    await db.drop()
  })
})


describe.skipIf(!pgUp)('migrate() beside running instances (PostgreSQL)', () => {
  it('replaces functions older than this release on a schema whose tables are current', async () => {
    const schema = schemaName()
    const store = postgresStore(pool, { schema })
    await store.migrate()
    const meta = `"${schema}".${PREFIX}meta`
    const version = async () => (await pool.query(`SELECT value FROM ${meta} WHERE key = 'functions_version'`)).rows[0]?.value as string | undefined
    const current = await version()
    expect(Number(current)).toBeGreaterThanOrEqual(2)
    // As an earlier release left it: the tables at this schema version, no functions version, and an
    // enqueue function of its own (here: one that is gone).
    await pool.query(`DELETE FROM ${meta} WHERE key = 'functions_version'`)
    await pool.query(`DROP FUNCTION "${schema}".${PREFIX}enqueue(jsonb, jsonb)`)
    const hooks = engine({ store: postgresStore(pool, { schema }), dispatch: false })
    await hooks.registry.create(COMPANY, { name: 'w', code: 'w', trigger: 'create-edit-delete-task', url: 'http://127.0.0.1:9/' })
    await expect(hooks.emit(taskEvent(0))).rejects.toThrow(/enqueue/)
    await postgresStore(pool, { schema }).migrate()
    expect(await version()).toBe(current)
    const { deliveries } = await hooks.emit(taskEvent(1))
    expect(deliveries).toHaveLength(1)
    // Functions of a later release are left alone by this one (a rolling deploy that goes back).
    await pool.query(`UPDATE ${meta} SET value = '99' WHERE key = 'functions_version'`)
    await pool.query(`DROP FUNCTION "${schema}".${PREFIX}enqueue(jsonb, jsonb)`)
    await postgresStore(pool, { schema }).migrate()
    expect(await version()).toBe('99')
    await expect(hooks.emit(taskEvent(2))).rejects.toThrow(/enqueue/)
    await closeAll()
    await dropSchema(pool, schema)
  })

  it('keeps the settle of functions version 3 answering engines of that release, and settles through it until migrated', async () => {
    const schema = schemaName()
    await postgresStore(pool, { schema }).migrate()
    const meta = `"${schema}".${PREFIX}meta`
    const settle = `"${schema}".${PREFIX}settle`
    // An engine of the release before: its settle, a named statement prepared on its connection.
    const old = await pool.connect()
    try {
      const oldSettle = () => old.query({ name: 'old_release_settle', text: `SELECT * FROM ${settle}($1::jsonb)`, values: ['[]'] })
      await expect(oldSettle()).resolves.toMatchObject({ rowCount: 0 })
      // The database as that release left it (no settle_turns), then brought to this one beside it.
      await pool.query(`DROP FUNCTION "${schema}".${PREFIX}settle_turns(jsonb, text)`)
      await pool.query(`UPDATE ${meta} SET value = '3' WHERE key = 'functions_version'`)
      // A store of this release that nobody migrated yet settles through the old function.
      const early = postgresStore(pool, { schema })
      const record = webhookRecord(COMPANY)
      await early.insertWebhook(record)
      const now = Date.now()
      await early.enqueue({ eventId: objectId(), event: fixtureEvent(COMPANY), deliveries: [{ id: objectId(), webhookId: record.webhook._id }], now })
      const [claimed] = await early.claim({ now, limit: 1, leaseMs: 60_000, owner: 'early', ordered: true })
      await expect(early.settle(claimed!.lease, { now, state: 'succeeded', response: 'ok' })).resolves.toBeDefined()
      expect(await early.openCount()).toBe(0)
      await postgresStore(pool, { schema }).migrate()
      // The old engine's prepared statement still answers: the function it calls kept its columns.
      await expect(oldSettle()).resolves.toMatchObject({ rowCount: 0 })
      const overloads = await pool.query(`SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname LIKE $2 ORDER BY p.proname`, [schema, `${PREFIX}settle%`])
      expect(overloads.rows.map((r) => `${r.proname}(${r.args})`)).toEqual([`${PREFIX}settle(p_items jsonb)`, `${PREFIX}settle_turns(p_items jsonb, p_after text)`])
      await early.close()
    } finally {
      old.release()
      await dropSchema(pool, schema)
    }
  })

  it('stands aside while a host transaction holds the deliveries table, so emits go on, and replaces the functions once it ends', async () => {
    const schema = schemaName()
    await postgresStore(pool, { schema }).migrate()
    const meta = `"${schema}".${PREFIX}meta`
    const deliveries = `"${schema}".${PREFIX}deliveries`
    const version = async () => (await pool.query(`SELECT value FROM ${meta} WHERE key = 'functions_version'`)).rows[0]?.value as string | undefined
    const current = await version()
    await pool.query(`DELETE FROM ${meta} WHERE key = 'functions_version'`)
    const hooks = engine({ store: postgresStore(pool, { schema }), dispatch: false })
    await hooks.registry.create(COMPANY, { name: 'w', code: 'w', trigger: 'create-edit-delete-task', url: 'http://127.0.0.1:9/' })
    // A host's write transaction, open on the deliveries table: replacing the trigger has to wait for it.
    const host = await pool.connect()
    let migration: Promise<void> | undefined
    try {
      await host.query('BEGIN')
      await host.query(`LOCK TABLE ${deliveries} IN ROW EXCLUSIVE MODE`)
      let migrated = false
      migration = postgresStore(pool, { schema }).migrate().then(() => void (migrated = true))
      const waitingForTable = async () =>
        Number((await pool.query(`SELECT count(*) AS n FROM pg_locks WHERE relation = $1::regclass AND NOT granted`, [deliveries])).rows[0].n) > 0
      await until(waitingForTable, 15_000, 'migrate() waiting for the deliveries table')
      // A lock request that waited for good would queue every emit behind it until the host commits
      // (which comes only after the emit): with the short lock timeout, migrate() stands aside and retries.
      const guard = new AbortController()
      const stuck = realSleep(15_000, undefined, { signal: guard.signal }).then(() => Promise.reject(new Error('the emit waited behind migrate() for 15 s')))
      stuck.catch(() => {})
      const { deliveries: made } = await Promise.race([hooks.emit(taskEvent(0)), stuck]).finally(() => guard.abort())
      expect(made).toHaveLength(1)
      expect(migrated).toBe(false)
      expect(await version()).toBeUndefined()
    } finally {
      await host.query('COMMIT')
      host.release()
    }
    await migration
    expect(await version()).toBe(current)
    expect((await hooks.emit(taskEvent(1))).deliveries).toHaveLength(1)
    await closeAll()
    await dropSchema(pool, schema)
  })

  it('never fails an emit: 20 migrations of an up-to-date schema while 10 emitters run', async () => {
    const schema = schemaName()
    const store = postgresStore(pool, { schema })
    await store.migrate()
    const hooks = engine({ store, dispatch: false })
    const receiver = await startReceiver()
    receivers.push(receiver)
    await hooks.registry.create(COMPANY, { name: 'w', code: 'w', trigger: 'create-edit-delete-task', url: receiver.url })
    let stop = false
    let emitted = 0
    const failures: unknown[] = []
    const emitter = async () => {
      while (!stop) {
        await hooks.emit(taskEvent(emitted++)).catch((error: unknown) => failures.push(error))
      }
    }
    const emitters = Array.from({ length: 10 }, emitter)
    // Each instance of a rolling deploy runs migrate() on start.
    const migrations = await Promise.allSettled(Array.from({ length: 20 }, () => postgresStore(pool, { schema }).migrate()))
    stop = true
    await Promise.all(emitters)
    expect(migrations.filter((m) => m.status === 'rejected')).toEqual([])
    expect(failures).toEqual([])
    expect(await store.openCount()).toBe(emitted)
    await closeAll()
    await dropSchema(pool, schema)
  })

  it('upgrades while the old release keeps writing, and delivers what it wrote before and after', async () => {
    const receiver = await startReceiver(() => ({ status: 204 }))
    receivers.push(receiver)
    const db = await versionOneDatabase('postgres')
    const now = Date.now()
    const { hooks, rows } = inFlight(receiver, now, now)
    await db.write(rows)
    // The old release goes on emitting (its own inserts, in its own transactions) while several new
    // instances start and migrate at once.
    let stop = false
    let written = 0
    const webhookId = hooks[1]!.webhook._id
    const oldRelease = (async () => {
      while (!stop) {
        const eventId = objectId()
        const n = 6 + written++
        await db.write({
          events: [{ id: eventId, company: COMPANY, body: { ...taskEvent(n), createdAt: new Date().toISOString(), diff: {}, extraData: null }, createdAt: Date.now() }],
          deliveries: [{ id: objectId(), company: COMPANY, webhookId, eventId, state: 'pending', createdAt: Date.now(), nextAttemptAt: Date.now() }],
        })
      }
    })()
    const stores = Array.from({ length: 5 }, () => db.open())
    const migrations = await Promise.allSettled(stores.map((s) => s.migrate()))
    expect(migrations.filter((m) => m.status === 'rejected')).toEqual([])
    engine({ store: stores[0]!, pollIntervalMs: 100 })
    await until(() => receiver.requests.filter((r) => r.path === '/w1').length >= 8, 15_000, 'writes of the old release after the upgrade')
    stop = true
    await oldRelease
    const total = 10 + written
    await until(() => receiver.requests.length >= total, 15_000, `all ${total} deliveries`)
    // Every webhook in order, the old release's late writes included.
    expect(receiver.requests.filter((r) => r.path === '/w1').map((r) => nOf(r.body))).toEqual(Array.from({ length: 5 + written }, (_, i) => i + 1))
    expect(receiver.requests.filter((r) => r.path === '/w0').map((r) => nOf(r.body))).toEqual([1, 2, 3, 4, 5])
    await closeAll()
    await db.drop()
  })
})
