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
  /** How long a write waits for another connection's lock. Default 5 000 ms. */
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
 * @param {number} [options.busyTimeoutMs=5000] - lock wait
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
  const opening = open(database, options.busyTimeoutMs ?? 5_000)
  const statements = new WeakMap<SqliteDatabase, Map<string, SqliteStatement>>()

  const prepared = (db: SqliteDatabase, sql: string): SqliteStatement => {
    let cache = statements.get(db)
    if (!cache) statements.set(db, (cache = new Map()))
    let statement = cache.get(sql)
    if (!statement) cache.set(sql, (statement = db.prepare(sql)))
    return statement
  }

  const gate = schemaGate('sqliteStore', async () => {
    const db = await opening
    try {
      return (prepared(db, `SELECT value FROM ${t.meta} WHERE key = 'schema_version'`).get() as { value: string } | null)?.value
    } catch {
      return undefined // no such table: never migrated
    }
  })

  // Every call but migrate() waits for the connection and the schema check.
  const ready = async (): Promise<SqliteDatabase> => {
    await gate.ready()
    return opening
  }

  const deliverySelect = `SELECT d.id, d.company, d.webhook_id, d.event_id, d.state, d.attempts, d.status, d.response,
      d.created_at, d.updated_at, d.next_attempt_at, e.body AS event
    FROM ${t.deliveries} d JOIN ${t.events} e ON e.id = d.event_id`
  const isHead = `NOT EXISTS (SELECT 1 FROM ${t.deliveries} x
      WHERE x.webhook_id = d.webhook_id AND x.state = 'pending' AND x.seq < d.seq)`

  return {
    async migrate() {
      const db = await opening
      atomic(db, () => {
        for (const statement of schemaStatements('sqlite', t)) db.exec(statement)
        prepared(db, `INSERT INTO ${t.meta} (key, value) VALUES ('schema_version', ?)
          ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(String(SCHEMA_VERSION))
      })
      gate.passed()
    },

    async close() {
      const db = await opening
      if (ownsConnection) db.close()
    },

    async insertWebhook({ webhook, secrets }) {
      const db = await ready()
      const result = prepared(db, `INSERT INTO ${t.webhooks} (id, company, code, trigger, is_active, version, doc, secrets)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`).run(
        webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v,
        JSON.stringify(webhook), JSON.stringify(secrets),
      )
      return Number(result.changes) === 1
    },

    async getWebhook(company, id) {
      const db = await ready()
      const row = prepared(db, `SELECT doc, secrets FROM ${t.webhooks} WHERE id = ? AND company = ?`).get(id, company)
      return row ? toStoredWebhook(row as WebhookRow) : undefined
    },

    async listWebhooks(company, query) {
      const db = await ready()
      const filter = query.isActive === undefined ? '' : 'AND is_active = ?'
      const params = query.isActive === undefined ? [company] : [company, query.isActive ? 1 : 0]
      const rows = prepared(db, `SELECT doc FROM ${t.webhooks} WHERE company = ? ${filter} ORDER BY seq LIMIT ? OFFSET ?`).all(
        ...params, query.limit, query.offset,
      ) as { doc: string }[]
      const { n } = prepared(db, `SELECT COUNT(*) AS n FROM ${t.webhooks} WHERE company = ? ${filter}`).get(...params) as { n: number }
      return { items: rows.map((r) => JSON.parse(r.doc) as COTWebhook), count: n }
    },

    async activeWebhooks(company, trigger) {
      const db = await ready()
      const rows = prepared(db, `SELECT doc FROM ${t.webhooks} WHERE company = ? AND trigger = ? AND is_active = 1 ORDER BY seq`).all(
        company, trigger,
      ) as { doc: string }[]
      return rows.map((r) => JSON.parse(r.doc) as COTWebhook)
    },

    async updateWebhook({ webhook, secrets }: StoredWebhook, expectedVersion) {
      const db = await ready()
      const result = prepared(db, `UPDATE ${t.webhooks} SET trigger = ?, is_active = ?, version = ?, doc = ?, secrets = ?
        WHERE id = ? AND company = ? AND version = ? AND code = ?`).run(
        webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v, JSON.stringify(webhook), JSON.stringify(secrets),
        webhook._id, webhook.company, expectedVersion, webhook.code,
      )
      return Number(result.changes) === 1
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      const own = await ready()
      const db = input.tx === undefined ? own : asConnection(input.tx)
      const company = input.event.company
      return atomic(db, () => {
        if (input.idempotencyKey !== undefined) {
          const seen = prepared(db, `SELECT result FROM ${t.idempotency} WHERE company = ? AND key = ?`).get(company, input.idempotencyKey) as
            | { result: string }
            | null
            | undefined
          if (seen) return { ...(JSON.parse(seen.result) as EnqueueResult), duplicate: true }
        }
        if (input.deliveries.length) {
          prepared(db, `INSERT INTO ${t.events} (id, company, body, created_at) VALUES (?, ?, ?, ?)`).run(
            input.eventId, company, JSON.stringify(input.event), input.now,
          )
          const insert = prepared(db, `INSERT INTO ${t.deliveries}
            (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
            VALUES (?, ?, ?, ?, 'pending', '[]', NULL, '', ?, ?, ?)`)
          for (const d of input.deliveries) insert.run(d.id, company, d.webhookId, input.eventId, input.now, input.now, input.now)
        }
        const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
        if (input.idempotencyKey !== undefined) {
          prepared(db, `INSERT INTO ${t.idempotency} (company, key, result, created_at) VALUES (?, ?, ?, ?)`).run(
            company, input.idempotencyKey, JSON.stringify(result), input.now,
          )
        }
        return result
      })
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      const db = await ready()
      const { now, limit, leaseMs, owner, ordered } = options
      if (limit <= 0) return []
      const pick = prepared(db, `SELECT d.seq FROM ${t.deliveries} d
        WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?)
          AND (? = 0 OR ${isHead})
        ORDER BY d.next_attempt_at, d.seq LIMIT ?`)
      const params = [now, now, ordered ? 1 : 0, limit]
      // Read first, outside any transaction: an idle poll never takes the write lock, so it never
      // waits behind a host transaction that is open on another connection.
      if (!pick.all(...params).length) return []
      const base = `${owner}:${crypto.randomUUID()}`
      return atomic(db, () => {
        const lease = prepared(db, `UPDATE ${t.deliveries} SET lease_token = ?, lease_until = ? WHERE seq = ?`)
        const read = prepared(db, `${deliverySelect} WHERE d.seq = ?`)
        // Picked again under the write lock: that answer is the one that counts.
        return (pick.all(...params) as { seq: number }[]).map(({ seq }) => {
          const token = `${base}:${seq}`
          lease.run(token, now + leaseMs, seq)
          const delivery = toDelivery(read.get(seq) as DeliveryRow)
          return { delivery, lease: { deliveryId: delivery.id, token } }
        })
      })
    },

    async settle(lease: Lease, s: Settlement) {
      const db = await ready()
      const attempt = s.attempt === undefined ? null : JSON.stringify(s.attempt)
      const final = s.state !== 'pending'
      const held = !final && s.holdUntil !== undefined
      const result = prepared(db, `UPDATE ${t.deliveries} SET
          attempts = CASE WHEN ? IS NULL THEN attempts ELSE json_insert(attempts, '$[#]', json(?)) END,
          status = COALESCE(?, status), response = ?, updated_at = ?, state = ?, next_attempt_at = ?,
          lease_token = ?, lease_until = ?
        WHERE id = ? AND lease_token = ? AND lease_until >= ? AND state = 'pending'`).run(
        attempt, attempt, s.attempt?.status ?? null, s.response, s.now, s.state,
        final ? null : (s.nextAttemptAt ?? s.now),
        held ? lease.token : null, held ? s.holdUntil : null,
        lease.deliveryId, lease.token, s.now,
      )
      if (Number(result.changes) !== 1) throw new LeaseLostError(lease.deliveryId)
    },

    async release(lease: Lease, now: number) {
      const db = await ready()
      const result = prepared(db, `UPDATE ${t.deliveries} SET lease_token = NULL, lease_until = NULL
        WHERE id = ? AND lease_token = ? AND lease_until >= ? AND state = 'pending'`).run(lease.deliveryId, lease.token, now)
      if (Number(result.changes) !== 1) throw new LeaseLostError(lease.deliveryId)
    },

    async nextWakeAt(now, ordered) {
      const db = await ready()
      const row = prepared(db, `SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until >= ? THEN d.lease_until
          ELSE d.next_attempt_at END) AS wake
        FROM ${t.deliveries} d WHERE d.state = 'pending' AND (? = 0 OR ${isHead})`).get(now, ordered ? 1 : 0) as { wake: number | null }
      return row.wake ?? undefined
    },

    async openCount() {
      const db = await ready()
      return (prepared(db, `SELECT COUNT(*) AS n FROM ${t.deliveries} WHERE state = 'pending'`).get() as { n: number }).n
    },

    async getDelivery(company, id) {
      const db = await ready()
      const row = prepared(db, `${deliverySelect} WHERE d.id = ? AND d.company = ?`).get(id, company)
      return row ? toDelivery(row as DeliveryRow) : undefined
    },

    async listDeliveries(company, webhookId, page) {
      const db = await ready()
      const rows = prepared(db, `${deliverySelect} WHERE d.webhook_id = ? AND d.company = ? ORDER BY d.seq DESC LIMIT ? OFFSET ?`).all(
        webhookId, company, page.limit, page.offset,
      ) as DeliveryRow[]
      const { n } = prepared(db, `SELECT COUNT(*) AS n FROM ${t.deliveries} WHERE webhook_id = ? AND company = ?`).get(webhookId, company) as {
        n: number
      }
      return { items: rows.map(toDelivery), count: n }
    },

    async prune(before, limit): Promise<PruneResult> {
      const db = await ready()
      return atomic(db, () => ({
        deliveries: Number(prepared(db, `DELETE FROM ${t.deliveries} WHERE seq IN (SELECT seq FROM ${t.deliveries}
          WHERE state <> 'pending' AND updated_at < ? ORDER BY updated_at LIMIT ?)`).run(before, limit).changes),
        events: Number(prepared(db, `DELETE FROM ${t.events} WHERE id IN (SELECT e.id FROM ${t.events} e
          WHERE e.created_at < ? AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.event_id = e.id) LIMIT ?)`).run(before, limit).changes),
        idempotencyKeys: Number(prepared(db, `DELETE FROM ${t.idempotency} WHERE rowid IN (SELECT rowid FROM ${t.idempotency}
          WHERE created_at < ? LIMIT ?)`).run(before, limit).changes),
      }))
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

function asConnection(tx: unknown): SqliteDatabase {
  const db = tx as Partial<SqliteDatabase> | null
  if (!db || typeof db.prepare !== 'function' || typeof db.exec !== 'function') {
    throw new TypeError('sqliteStore: emit(…, { tx }) takes the SQLite Database on which your transaction is open')
  }
  return db as SqliteDatabase
}

async function open(database: SqliteDatabase | string, busyTimeoutMs: number): Promise<SqliteDatabase> {
  const db = typeof database === 'string' ? await openPath(database) : database
  db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`)
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
