import { LeaseLostError } from 'cotwebhook'
import type {
  COTWebhook,
  ClaimOptions,
  ClaimedDelivery,
  EnqueueInput,
  EnqueueResult,
  Lease,
  PruneResult,
  Settlement,
  StoredWebhook,
} from 'cotwebhook'
import { schemaGate, type SqlStore } from '../sql/schema-gate.js'
import { settleParams, sqliteSql } from '../sql/sqlite-sql.js'
import {
  SCHEMA_VERSION,
  schemaStatements,
  tables,
  toDelivery,
  toStoredWebhook,
  type DeliveryRow,
  type WebhookRow,
} from '../sql/schema.js'

/** A prepared statement, as better-sqlite3 and `bun:sqlite` both shape it. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number | bigint }
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
}

/** A SQLite connection: a better-sqlite3 `Database` or a `bun:sqlite` `Database`. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): unknown
  readonly inTransaction: boolean
  close(): unknown
}

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** Prefix of the table names. Default `cotwebhook_`. */
  prefix?: string
  /**
   * How long a write keeps trying while another connection holds the write lock (a host transaction).
   * It waits asynchronously, so the process goes on meanwhile. Default 5 000 ms.
   */
  busyTimeoutMs?: number
}

/** The SQLite store: the storage contract plus `migrate()` and `close()` (which closes a connection it opened from a path). */
export type SqliteStore = SqlStore

/**
 * A store on SQLite, through better-sqlite3 on Node or `bun:sqlite` on Bun (same SQL). Takes an
 * open Database, or a file path (or `:memory:`) to open one with the runtime's driver. Puts the
 * database in WAL mode; the schema is created by `migrate()` and checked on first use.
 *
 * For `emit(event, { tx: db })`, pass the connection on which your transaction is open. Give the store
 * its own connection to the same file (a path) so its claims never run inside your transaction.
 *
 * @param {SqliteDatabase|string} database - a Database, or a path to open
 * @param {string} [options.prefix='cotwebhook_'] - table name prefix
 * @param {number} [options.busyTimeoutMs=5000] - how long a write retries while the file is locked
 * @example
 * ```ts
 * import { sqliteStore } from 'cotwebhook/sqlite'
 * const store = sqliteStore('./webhooks.db')
 * await store.migrate()
 * const hooks = createWebhooks({ store })
 * ```
 */
export function sqliteStore(database: SqliteDatabase | string, options: SqliteStoreOptions = {}): SqliteStore {
  const t = tables(options.prefix ?? 'cotwebhook_')
  const ownsConnection = typeof database === 'string'
  const opening = open(database)
  const busyTimeoutMs = options.busyTimeoutMs ?? 5_000
  // SQLite's own busy handler would block the whole process while it waits; this waits asynchronously.
  const write = async <T>(work: (db: SqliteDatabase) => T): Promise<T> => {
    const db = await ready()
    const deadline = Date.now() + busyTimeoutMs
    for (;;) {
      try {
        return work(db)
      } catch (error) {
        if (!isBusy(error) || Date.now() >= deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  }
  const statements = new WeakMap<SqliteDatabase, Map<string, SqliteStatement>>()

  const prepared = (db: SqliteDatabase, sql: string): SqliteStatement => {
    let cache = statements.get(db)
    if (!cache) statements.set(db, (cache = new Map()))
    let statement = cache.get(sql)
    if (!statement) cache.set(sql, (statement = db.prepare(sql)))
    return statement
  }

  const q = sqliteSql(t)
  const gate = schemaGate('sqliteStore', async () => {
    const db = await opening
    try {
      return (prepared(db, q.readVersion).get() as { value: string } | null)?.value
    } catch {
      return undefined // no such table: never migrated
    }
  })

  // Every call but migrate() waits for the connection and the schema check.
  const ready = async (): Promise<SqliteDatabase> => {
    await gate.ready()
    return opening
  }
  const changes = (result: { changes: number | bigint }) => Number(result.changes)

  return {
    async migrate() {
      const db = await opening
      atomic(db, () => {
        for (const statement of schemaStatements('sqlite', t)) db.exec(statement)
        prepared(db, q.setVersion).run(String(SCHEMA_VERSION))
      })
      gate.passed()
    },

    async close() {
      const db = await opening
      if (ownsConnection) db.close()
    },

    async insertWebhook({ webhook, secrets }) {
      const result = await write((db) => prepared(db, q.insertWebhook).run(
        webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v,
        JSON.stringify(webhook), JSON.stringify(secrets),
      ))
      return changes(result) === 1
    },

    async getWebhook(company, id) {
      const db = await ready()
      const row = prepared(db, q.getWebhook).get(id, company)
      return row ? toStoredWebhook(row as WebhookRow) : undefined
    },

    async listWebhooks(company, query) {
      const db = await ready()
      const filtered = query.isActive !== undefined
      const params = filtered ? [company, query.isActive ? 1 : 0] : [company]
      const rows = prepared(db, q.listWebhooks(filtered)).all(...params, query.limit, query.offset) as { doc: string }[]
      const { n } = prepared(db, q.countWebhooks(filtered)).get(...params) as { n: number }
      return { items: rows.map((r) => JSON.parse(r.doc) as COTWebhook), count: n }
    },

    async activeWebhooks(company, trigger) {
      const db = await ready()
      const rows = prepared(db, q.activeWebhooks).all(company, trigger) as { doc: string }[]
      return rows.map((r) => JSON.parse(r.doc) as COTWebhook)
    },

    async updateWebhook({ webhook, secrets }: StoredWebhook, expectedVersion) {
      const result = await write((db) => prepared(db, q.updateWebhook).run(
        webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v, JSON.stringify(webhook), JSON.stringify(secrets),
        webhook._id, webhook.company, expectedVersion, webhook.code,
      ))
      return changes(result) === 1
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const own = await ready()
      if (input.tx !== undefined && input.tx === own) {
        throw new TypeError(
          "sqliteStore: emit(…, { tx }) got the store's own connection; open your transaction on another connection to the same file (give the store a path)",
        )
      }
      const company = input.event.company
      // Inside the host's transaction the lock is the host's: no waiting. Otherwise wait it out asynchronously.
      const run = <T>(work: (db: SqliteDatabase) => T) => (input.tx === undefined ? write(work) : Promise.resolve(work(asConnection(input.tx))))
      return run((db) => atomic(db, () => {
        if (input.idempotencyKey !== undefined) {
          const seen = prepared(db, q.readIdempotency).get(company, input.idempotencyKey) as { result: string } | null | undefined
          if (seen) return { ...(JSON.parse(seen.result) as EnqueueResult), duplicate: true }
        }
        if (input.deliveries.length) {
          prepared(db, q.insertEvent).run(input.eventId, company, JSON.stringify(input.event), input.now)
          const insert = prepared(db, q.insertDelivery)
          for (const d of input.deliveries) insert.run(d.id, company, d.webhookId, input.eventId, input.now, input.now, input.now)
        }
        const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
        if (input.idempotencyKey !== undefined) {
          prepared(db, q.insertIdempotency).run(company, input.idempotencyKey, JSON.stringify(result), input.eventId, input.now)
        }
        return result
      }))
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const db = await ready()
      const { now, limit, leaseMs, owner, ordered } = options
      if (limit <= 0) return []
      // A host transaction is open on the store's own connection: a claim now would be part of it.
      if (db.inTransaction) return []
      const params = [now, now, ordered ? 1 : 0, now, limit]
      // Read first, outside any transaction: an idle poll never takes the write lock, so it never
      // waits behind a host transaction that is open on another connection.
      if (!prepared(db, q.due).all(...params).length) return []
      const base = `${owner}:${crypto.randomUUID()}`
      // The file is locked by someone else's transaction: claim on a later round instead of waiting.
      return tryWrite(() => atomic(db, () =>
        // Picked again under the write lock: that answer is the one that counts.
        (prepared(db, q.due).all(...params) as { seq: number }[]).map(({ seq }) => {
          const token = `${base}:${seq}`
          prepared(db, q.lease).run(token, now + leaseMs, seq)
          const delivery = toDelivery(prepared(db, q.deliveryBySeq).get(seq) as DeliveryRow)
          return { delivery, lease: { deliveryId: delivery.id, token } }
        }),
      ), [])
    },

    async settle(lease: Lease, s: Settlement) {
      const result = await write((db) => prepared(db, q.settle).run(...settleParams(lease, { ...s, attemptStatus: s.attempt?.status })))
      if (changes(result) !== 1) throw new LeaseLostError(lease.deliveryId)
    },

    async release(lease: Lease, now: number) {
      if (changes(await write((db) => prepared(db, q.release).run(lease.deliveryId, lease.token, now))) !== 1) {
        throw new LeaseLostError(lease.deliveryId)
      }
    },

    async nextWakeAt(now, ordered) {
      const db = await ready()
      const row = prepared(db, q.nextWake).get(now, ordered ? 1 : 0) as { wake: number | null }
      return row.wake ?? undefined
    },

    async openCount() {
      const db = await ready()
      return (prepared(db, q.openCount).get() as { n: number }).n
    },

    async getDelivery(company, id) {
      const db = await ready()
      const row = prepared(db, q.getDelivery).get(id, company)
      return row ? toDelivery(row as DeliveryRow) : undefined
    },

    async listDeliveries(company, webhookId, page) {
      const db = await ready()
      const rows = prepared(db, q.listDeliveries).all(webhookId, company, page.limit, page.offset) as DeliveryRow[]
      const { n } = prepared(db, q.countDeliveries).get(webhookId, company) as { n: number }
      return { items: rows.map(toDelivery), count: n }
    },

    async prune(before, limit): Promise<PruneResult> {
      return write((db) => atomic(db, () => ({
        deliveries: changes(prepared(db, q.pruneDeliveries).run(before, limit)),
        events: changes(prepared(db, q.pruneEvents).run(before, limit)),
        idempotencyKeys: changes(prepared(db, q.pruneIdempotency).run(before, limit)),
      })))
    },
  }
}

// ---- internals

/**
 * Runs `work` atomically: in its own IMMEDIATE transaction, or, inside a transaction already open on
 * the connection (the host's), as a savepoint that commits with it.
 */
function atomic<T>(db: SqliteDatabase, work: () => T): T {
  if (db.inTransaction) {
    db.exec('SAVEPOINT cotwebhook')
    try {
      const result = work()
      db.exec('RELEASE cotwebhook')
      return result
    } catch (error) {
      db.exec('ROLLBACK TO cotwebhook')
      db.exec('RELEASE cotwebhook')
      throw error
    }
  }
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = work()
    db.exec('COMMIT')
    return result
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  }
}

function isBusy(error: unknown): boolean {
  const code = String((error as { code?: unknown }).code ?? '')
  return code.startsWith('SQLITE_BUSY') || /database is locked/i.test(String((error as Error).message))
}

/** Runs a write; if the file is locked, answers `fallback` instead of waiting. */
function tryWrite<T>(work: () => T, fallback: T): T {
  try {
    return work()
  } catch (error) {
    if (isBusy(error)) return fallback
    throw error
  }
}

function asConnection(tx: unknown): SqliteDatabase {
  const db = tx as Partial<SqliteDatabase> | null
  if (!db || typeof db.prepare !== 'function' || typeof db.exec !== 'function') {
    throw new TypeError('sqliteStore: emit(…, { tx }) takes the SQLite Database on which your transaction is open')
  }
  return db as SqliteDatabase
}

async function open(database: SqliteDatabase | string): Promise<SqliteDatabase> {
  const db = typeof database === 'string' ? await openPath(database) : database
  // Never block the process inside SQLite waiting for a lock: the store waits asynchronously instead.
  db.exec('PRAGMA busy_timeout = 0')
  // WAL lets readers and one writer proceed together; NORMAL sync is durable across a process crash.
  db.exec('PRAGMA journal_mode = WAL')
  db.exec('PRAGMA synchronous = NORMAL')
  return db
}

async function openPath(path: string): Promise<SqliteDatabase> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined') {
    // A variable keeps bundlers and type checkers from resolving Bun's module on Node.
    const bunSqlite = 'bun:sqlite'
    const { Database } = (await import(bunSqlite)) as { Database: new (path: string) => SqliteDatabase }
    return new Database(path)
  }
  const { default: Database } = (await import('better-sqlite3')) as unknown as { default: new (path: string) => SqliteDatabase }
  return new Database(path)
}
