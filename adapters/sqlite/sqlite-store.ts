import type {
  COTWebhook,
  ClaimOptions,
  ClaimedDelivery,
  EnqueueInput,
  EnqueueResult,
  Lease,
  PruneResult,
  SettleResult,
  Settlement,
  StoredWebhook,
} from 'cotwebhook'
import { batcher } from '../sql/batcher.js'
import { schemaGate, type SqlStore } from '../sql/schema-gate.js'
import { countBy, sqliteQueues, type SqlExecutor } from '../sql/sqlite-queues.js'
import { sqliteSql } from '../sql/sqlite-sql.js'
import { asConnection, atomic, isBusy, open, type SqliteDatabase, type SqliteStatement } from './sqlite-driver.js'
import {
  SCHEMA_VERSION,
  backfillQueues,
  schemaStatements,
  tables,
  toDelivery,
  toStoredWebhook,
  type DeliveryRow,
  type WebhookRow,
} from '../sql/schema.js'

export type { SqliteDatabase, SqliteStatement } from './sqlite-driver.js'

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** Prefix of the table names. Default `cotwebhook_`. */
  prefix?: string
  /**
   * How long a write keeps trying while another connection holds the write lock (a host transaction).
   * It waits asynchronously, so the process goes on meanwhile. Default 5 000 ms.
   */
  busyTimeoutMs?: number
  /** Most emits written in one transaction (the emits of one turn of the event loop share a commit). Default 256. */
  maxEnqueueBatch?: number
  /** Most settles written in one transaction. Default 256. */
  maxSettleBatch?: number
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
  const readVersion = (db: SqliteDatabase) => {
    try {
      return (prepared(db, q.readVersion).get() as { value: string } | null)?.value
    } catch {
      return undefined // no such table: never migrated
    }
  }
  const gate = schemaGate('sqliteStore', async () => readVersion(await opening))

  // Every call but migrate() waits for the connection and the schema check.
  const ready = async (): Promise<SqliteDatabase> => {
    await gate.ready()
    return opening
  }
  const changes = (result: { changes: number | bigint }) => Number(result.changes)

  // The queue logic runs its statements through this, inside one transaction per operation.
  const executor = (db: SqliteDatabase): SqlExecutor => ({
    all: async (sql, params) => prepared(db, sql).all(...params) as never[],
    get: async (sql, params) => (prepared(db, sql).get(...params) ?? undefined) as never,
    run: async (sql, params) => changes(prepared(db, sql).run(...params)),
    transactional: true,
  })
  let queues: ReturnType<typeof sqliteQueues> | undefined
  const queuesOf = (db: SqliteDatabase) => (queues ??= sqliteQueues(executor(db), t, 500))
  // One operation at a time on the store's connection: the queue logic awaits between statements,
  // and another operation's BEGIN must not land inside this one's transaction.
  let turn: Promise<unknown> = Promise.resolve()
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = turn.then(work, work)
    turn = run.catch(() => {})
    return run
  }
  // Runs queue work in an IMMEDIATE transaction, waiting (asynchronously) while another connection
  // holds the write lock; with `skipIfBusy`, answers `fallback` at once instead.
  const transact = <T>(work: (queues: ReturnType<typeof sqliteQueues>) => Promise<T>, skipIfBusy?: { fallback: T }): Promise<T> =>
    exclusive(async () => {
      const db = await ready()
      const deadline = Date.now() + busyTimeoutMs
      for (;;) {
        try {
          db.exec('BEGIN IMMEDIATE')
          break
        } catch (error) {
          if (!isBusy(error)) throw error
          if (skipIfBusy) return skipIfBusy.fallback
          if (Date.now() >= deadline) throw error
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
      try {
        const result = await work(queuesOf(db))
        db.exec('COMMIT')
        return result
      } catch (error) {
        if (db.inTransaction) db.exec('ROLLBACK')
        throw error
      }
    })

  // Concurrent settles share one transaction (one commit, one write of the pages they touch), each in
  // a savepoint of its own: an item that fails (a lost lease) is undone alone and answered its error.
  // The settles of one turn of the event loop go together; those asking for any due delivery
  // (unordered) are answered by one claim for all of them at the end.
  const settleMany = batcher<{ lease: Lease; settlement: Settlement }, SettleResult>(
    (items) =>
      transact(async (queues) => {
        const db = await ready()
        const results: Array<SettleResult | Error> = []
        const wanting: SettleResult[] = []
        let want: NonNullable<Settlement['next']> | undefined
        let now = 0
        for (const { lease, settlement } of items) {
          const { next, ...rest } = settlement
          const grouped = next && !next.ordered && !(settlement.state === 'pending' && settlement.holdUntil !== undefined)
          db.exec('SAVEPOINT cotwebhook_settle')
          try {
            const result = await queues.settle(lease, grouped ? rest : settlement)
            db.exec('RELEASE cotwebhook_settle')
            results.push(result)
            if (grouped) {
              wanting.push(result)
              want = next
              now = Math.max(now, settlement.now)
            }
          } catch (error) {
            db.exec('ROLLBACK TO cotwebhook_settle')
            db.exec('RELEASE cotwebhook_settle')
            results.push(error instanceof Error ? error : new Error(String(error)))
          }
        }
        if (want && wanting.length) {
          const claimed = await queues.claim({ now, limit: wanting.length, leaseMs: want.leaseMs, owner: want.owner, ordered: false })
          claimed.forEach((c, i) => (wanting[i]!.next = c))
        }
        return results
      }),
    { maxBatch: options.maxSettleBatch ?? 256, defer: setImmediate },
  )

  // Concurrent emits (outside a host transaction) share one transaction the same way.
  const enqueueMany = batcher<EnqueueInput, EnqueueResult>(
    async (inputs) => {
      const own = await ready()
      return exclusive(() =>
        write((db) => {
          db.exec('BEGIN IMMEDIATE')
          try {
            const results = inputs.map((input) => {
              try {
                return atomic(db, () => enqueueOne(db, own, input))
              } catch (error) {
                return error instanceof Error ? error : new Error(String(error))
              }
            })
            db.exec('COMMIT')
            return results
          } catch (error) {
            if (db.inTransaction) db.exec('ROLLBACK')
            throw error
          }
        }),
      )
    },
    { maxBatch: options.maxEnqueueBatch ?? 256, defer: setImmediate },
  )

  const enqueueOne = (db: SqliteDatabase, own: SqliteDatabase, input: EnqueueInput): EnqueueResult => {
    const company = input.event.company
    if (input.idempotencyKey !== undefined) {
      const seen = prepared(db, q.readIdempotency).get(company, input.idempotencyKey) as { result: string } | null | undefined
      if (seen) return { ...(JSON.parse(seen.result) as EnqueueResult), duplicate: true }
    }
    if (input.deliveries.length) {
      prepared(db, q.insertEvent).run(input.eventId, company, JSON.stringify(input.event), input.now)
      const insert = prepared(db, q.insertDelivery)
      for (const d of input.deliveries) insert.run(d.id, company, d.webhookId, input.eventId, input.now, input.now, input.now, input.trace ?? null)
      // Each webhook's queue learns of its new deliveries in the same transaction.
      const arrive = queuesOf(own).arrive
      for (const [webhookId, n] of countBy(input.deliveries)) prepared(db, arrive).run(webhookId, company, n, input.now, input.eventId, webhookId)
    }
    const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
    if (input.idempotencyKey !== undefined) {
      prepared(db, q.insertIdempotency).run(company, input.idempotencyKey, JSON.stringify(result), input.eventId, input.now)
    }
    return result
  }

  return {
    async migrate() {
      const db = await opening
      const version = readVersion(db)
      if (version !== String(SCHEMA_VERSION)) {
        // Creates what is missing (all of it on a new file); a version 1 file gains its queues, filled
        // from its open deliveries, in the same transaction.
        atomic(db, () => {
          for (const statement of schemaStatements('sqlite', t, version)) db.exec(statement)
          db.exec(backfillQueues(t))
          prepared(db, q.setVersion).run(String(SCHEMA_VERSION))
        })
      }
      gate.passed()
    },

    async close() {
      const db = await opening
      if (ownsConnection) db.close()
    },

    async insertWebhook({ webhook, secrets }) {
      const result = await exclusive(() => write((db) => prepared(db, q.insertWebhook).run(
        webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v,
        JSON.stringify(webhook), JSON.stringify(secrets),
      )))
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
      const result = await exclusive(() => write((db) => prepared(db, q.updateWebhook).run(
        webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v, JSON.stringify(webhook), JSON.stringify(secrets),
        webhook._id, webhook.company, expectedVersion, webhook.code,
      )))
      return changes(result) === 1
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const own = await ready()
      if (input.tx !== undefined && input.tx === own) {
        throw new TypeError(
          "sqliteStore: emit(…, { tx }) got the store's own connection; open your transaction on another connection to the same file (give the store a path)",
        )
      }
      // Inside the host's transaction the lock is the host's: no waiting, no batching.
      if (input.tx !== undefined) {
        const db = asConnection(input.tx)
        return atomic(db, () => enqueueOne(db, own, input))
      }
      return enqueueMany(input)
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const db = await ready()
      if (options.limit <= 0) return []
      // A host transaction is open on the store's own connection: a claim now would be part of it.
      if (db.inTransaction) return []
      // Read first, outside any transaction: an idle poll never takes the write lock, so it never
      // waits behind a host transaction that is open on another connection.
      if ((await queuesOf(db).nextWakeAt()) === undefined) return []
      // The file is locked by someone else's transaction: claim on a later round instead of waiting.
      return transact((queues) => queues.claim(options), { fallback: [] })
    },

    settle(lease: Lease, settlement: Settlement): Promise<SettleResult> {
      return settleMany({ lease, settlement })
    },

    async release(lease: Lease, now: number) {
      await transact((queues) => queues.release(lease, now))
    },

    async nextWakeAt() {
      return queuesOf(await ready()).nextWakeAt()
    },

    async openCount() {
      return queuesOf(await ready()).openCount()
    },

    async endpoint(webhookId) {
      return queuesOf(await ready()).endpoint(webhookId)
    },

    async stats(company) {
      return queuesOf(await ready()).stats(company)
    },

    async resetEndpoint(webhookId) {
      await transact((queues) => queues.resetEndpoint(webhookId))
    },

    async setRate(webhookId, rate) {
      const db = await ready()
      const company = (prepared(db, 'SELECT company FROM ' + t.webhooks + ' WHERE id = ?').get(webhookId) as { company: string } | undefined)?.company ?? ''
      await transact((queues) => queues.setRate(webhookId, company, rate))
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
      return exclusive(() => write((db) => atomic(db, () => ({
        deliveries: changes(prepared(db, q.pruneDeliveries).run(before, limit)),
        events: changes(prepared(db, q.pruneEvents).run(before, limit)),
        idempotencyKeys: changes(prepared(db, q.pruneIdempotency).run(before, limit)),
      }))))
    },
  }
}
