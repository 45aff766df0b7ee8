import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runStoreConformance } from 'cotwebhook/testing'
import type { Store } from 'cotwebhook'
import { sqliteStore, type SqliteStore } from 'cotwebhook/sqlite'
import { COMPANY, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until } from './helpers/receiver.js'

const dir = mkdtempSync(join(tmpdir(), 'cotwebhook-sqlite-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const file = () => join(dir, `store-${++files}.db`)

const migrated = async (store: SqliteStore) => {
  await store.migrate()
  return store
}

runStoreConformance({ name: 'sqlite :memory: (better-sqlite3)', create: () => migrated(sqliteStore(':memory:')), cleanup: (s) => (s as SqliteStore).close() })
// Reopened as a restarted process would: a second connection to the same file (closed with the first).
const paths = new Map<Store, string>()
const reopened = new Map<Store, SqliteStore>()
runStoreConformance({
  name: 'sqlite file in WAL mode (better-sqlite3)',
  create: async () => {
    const path = file()
    const store = await migrated(sqliteStore(path))
    paths.set(store, path)
    return store
  },
  reopen: async (store) => {
    const again = await migrated(sqliteStore(paths.get(store)!))
    reopened.set(store, again)
    return again
  },
  cleanup: async (s) => {
    await reopened.get(s)?.close()
    await (s as SqliteStore).close()
  },
})

describe('the SQLite store', () => {
  it('refuses to run before migrate() with a message that says so, and migrate() is repeatable', async () => {
    const store = sqliteStore(':memory:')
    await expect(store.openCount()).rejects.toThrow('sqliteStore: the cotwebhook tables do not exist; call `await store.migrate()` once before use')
    await store.migrate()
    await store.migrate()
    expect(await store.openCount()).toBe(0)
    await store.close()
  })

  it('refuses a schema of another version', async () => {
    const db = new Database(':memory:')
    const store = sqliteStore(db)
    await store.migrate()
    db.prepare("UPDATE cotwebhook_meta SET value = '99' WHERE key = 'schema_version'").run()
    const fresh = sqliteStore(db)
    await expect(fresh.openCount()).rejects.toThrow('schema is at version 99, this version of cotwebhook needs 3')
    db.close()
  })

  it('puts a file database in WAL mode and keeps a Database it was given open', async () => {
    const path = file()
    const db = new Database(path)
    const store = await migrated(sqliteStore(db))
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    await store.close()
    expect(db.open).toBe(true)
    db.close()
  })

  it('survives a restart: a new store on the same file sees the webhooks and pending deliveries', async () => {
    const path = file()
    const first = await migrated(sqliteStore(path))
    const hooks = engine({ store: first, dispatch: false })
    const { webhook } = await hooks.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
    await hooks.emit(taskEvent())
    await hooks.close()
    await first.close()
    const second = sqliteStore(path)
    expect(await second.openCount()).toBe(1)
    expect((await second.getWebhook(COMPANY, webhook._id))?.webhook.code).toBe(webhook.code)
    await second.close()
  })
})

describe('the transactional outbox on SQLite', () => {
  it('delivers only what the host transaction committed', async () => {
    const receiver = await startReceiver()
    try {
      const path = file()
      const store = await migrated(sqliteStore(path)) // the store's own connection
      const host = new Database(path) // the host's connection, where its transaction runs
      host.exec('CREATE TABLE tasks (id TEXT PRIMARY KEY, name TEXT)')
      const hooks = engine({ store, pollIntervalMs: 50 })
      const { webhook } = await hooks.registry.create(COMPANY, taskWebhook(receiver.url))

      host.exec('BEGIN')
      host.prepare('INSERT INTO tasks VALUES (?, ?)').run('t1', 'rolled back')
      const rolledBack = await hooks.emit(taskEvent(1), { tx: host })
      host.exec('ROLLBACK')

      host.exec('BEGIN')
      host.prepare('INSERT INTO tasks VALUES (?, ?)').run('t2', 'committed')
      const committed = await hooks.emit(taskEvent(2), { tx: host })
      expect(await store.openCount()).toBe(0) // not visible before the host commits
      host.exec('COMMIT')

      await until(async () => receiver.requests.length === 1, 15_000, 'the committed delivery')
      await hooks.drain()
      expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([committed.deliveries[0]!.id])
      expect(await store.getDelivery(COMPANY, rolledBack.deliveries[0]!.id)).toBeUndefined()
      expect((await hooks.logs(COMPANY, webhook._id)).map((l) => l._id)).toEqual([committed.deliveries[0]!.id])
      host.close()
      await closeAll()
      await store.close()
    } finally {
      await receiver.close()
    }
  })

  it('never stalls the process while a host transaction holds the write lock, and delivers once it commits', async () => {
    // The answer is held until the host has the lock, so the attempt's settle is sure to need it.
    const gate = heldAnswers()
    const receiver = await startReceiver(() => gate.hold())
    try {
      const path = file()
      const inner = await migrated(sqliteStore(path))
      // Counts the engine's settles, so the test knows when one is waiting for the lock.
      let settles = 0
      const store: Store = { ...inner, settle: (lease, settlement) => (settles++, inner.settle(lease, settlement)) }
      const hooks = engine({ store, pollIntervalMs: 20 })
      await hooks.registry.create(COMPANY, taskWebhook(receiver.url))
      const host = new Database(path)
      host.exec('CREATE TABLE notes (n INTEGER)')
      const { deliveries } = await hooks.emit(taskEvent(1)) // committed: its attempt's settle will need the write lock
      await until(() => gate.held === 1, 15_000, 'the attempt sent')
      host.exec('BEGIN IMMEDIATE')
      host.prepare('INSERT INTO notes VALUES (1)').run()
      gate.open()
      await until(() => settles >= 1, 15_000, 'the attempt made and its settle waiting for the lock')
      // The process goes on while that settle waits: turns of the event loop keep coming. (SQLite's own
      // busy handler would block inside the settle for its whole timeout, then fail it: the delivery would
      // stay leased and drain() below would not end within the test's time.)
      for (let turn = 0; turn < 20; turn++) await new Promise((r) => setTimeout(r, 1))
      expect(receiver.requests).toHaveLength(1)
      expect((await inner.getDelivery(COMPANY, deliveries[0]!.id))?.attempts).toEqual([]) // not recorded yet: the lock is the host's
      host.exec('COMMIT')
      await hooks.drain()
      expect(receiver.requests).toHaveLength(1)
      expect((await inner.getDelivery(COMPANY, deliveries[0]!.id))?.state).toBe('succeeded')
      expect(await store.openCount()).toBe(0)
      host.close()
      await closeAll()
      await inner.close()
    } finally {
      gate.open()
      await receiver.close()
    }
  })


  it('refuses the store’s own connection as tx, since its claims would join the host transaction', async () => {
    const db = new Database(':memory:')
    const store = await migrated(sqliteStore(db))
    const hooks = engine({ store, dispatch: false })
    await hooks.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
    db.exec('BEGIN')
    await expect(hooks.emit(taskEvent(), { tx: db })).rejects.toThrow("sqliteStore: emit(…, { tx }) got the store's own connection")
    db.exec('ROLLBACK')
    await closeAll()
    db.close()
  })

  it('refuses a tx that is not a SQLite connection, and the memory store refuses any tx', async () => {
    const store = await migrated(sqliteStore(':memory:'))
    const hooks = engine({ store })
    await hooks.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
    await expect(hooks.emit(taskEvent(), { tx: { query() {} } })).rejects.toThrow('sqliteStore: emit(…, { tx }) takes the SQLite Database')
    const memory = engine()
    await memory.registry.create(COMPANY, taskWebhook('http://127.0.0.1:9/x'))
    await expect(memory.emit(taskEvent(), { tx: {} })).rejects.toThrow('the memory store has no transactions')
    await closeAll()
    await store.close()
  })
})
