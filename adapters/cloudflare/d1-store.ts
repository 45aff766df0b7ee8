import type { COTWebhook, EnqueueResult, PruneResult } from 'cotwebhook'
import { schemaGate, type SqlStore } from '../sql/schema-gate.js'
import { SCHEMA_VERSION, backfillQueues, schemaStatements, tables, toDelivery, toStoredWebhook, type DeliveryRow, type WebhookRow } from '../sql/schema.js'
import { countBy, sqliteQueues } from '../sql/sqlite-queues.js'
import { sqliteSql } from '../sql/sqlite-sql.js'
import type { D1Like } from './d1-types.js'

const D1_MAX_PARAMS = 100

/** Options of {@link d1Store}. */
export interface D1StoreOptions {
  /** Prefix of the table names. Default `cotwebhook_`. */
  prefix?: string
  /** Create the tables on first use when they are missing (what `workerWebhooks` does). Default `false`. */
  autoMigrate?: boolean
}

/**
 * A store on Cloudflare D1: the SQLite adapter's schema and statements, through the D1 binding.
 * D1 runs one statement at a time per database, and every write here is one statement or one
 * `batch` (which D1 runs as a transaction), so claims and settles are atomic without locks.
 * D1 has no interactive transactions: `emit(…, { tx })` is refused.
 *
 * @param {D1Like} db - the D1 binding (`env.DB`)
 * @param {string} [options.prefix='cotwebhook_'] - table name prefix
 * @example
 * ```ts
 * import { d1Store } from 'cotwebhook/cloudflare'
 * const store = d1Store(env.DB)
 * await store.migrate()
 * ```
 */
export function d1Store(db: D1Like, options: D1StoreOptions = {}): SqlStore {
  const t = tables(options.prefix ?? 'cotwebhook_')
  const q = sqliteSql(t)
  const readVersion = async () => {
    try {
      return (await db.prepare(q.readVersion).first<{ value: string }>())?.value
    } catch {
      return undefined // no such table: never migrated
    }
  }
  // One batch (D1 runs it as a transaction): a new database gets every table; an older one gains what
  // came since (version 1: its queues, filled from its open deliveries; 1 and 2: the trace column).
  const migrate = async () => {
    const found = await readVersion()
    if (found === String(SCHEMA_VERSION)) return
    await db.batch([...schemaStatements('sqlite', t, found).map((sql) => db.prepare(sql)), db.prepare(backfillQueues(t)), db.prepare(q.setVersion).bind(String(SCHEMA_VERSION))])
  }
  const gate = schemaGate('d1Store', readVersion, options.autoMigrate ? migrate : undefined)
  const ready = () => gate.ready()
  const run = async (sql: string, ...params: unknown[]) => (await db.prepare(sql).bind(...params).run()).meta.changes ?? 0
  const first = <T>(sql: string, ...params: unknown[]) => db.prepare(sql).bind(...params).first<T>()
  const all = async <T>(sql: string, ...params: unknown[]) => (await db.prepare(sql).bind(...params).all<T>()).results
  // No interactive transactions on D1: the queue logic checks every lease and every queue write.
  const queues = sqliteQueues(
    {
      all: (sql, params) => all(sql, ...params),
      get: async (sql, params) => (await first(sql, ...params)) ?? undefined,
      run: (sql, params) => run(sql, ...params),
      transactional: false,
    },
    t,
    D1_MAX_PARAMS,
  )

  return {
    async migrate() {
      await migrate()
      gate.passed()
    },

    async close() {
      // The binding belongs to the Worker: nothing to close.
    },

    async insertWebhook({ webhook, secrets }) {
      await ready()
      const changed = await run(
        q.insertWebhook, webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v,
        JSON.stringify(webhook), JSON.stringify(secrets),
      )
      return changed === 1
    },

    async getWebhook(company, id) {
      await ready()
      const row = await first<WebhookRow>(q.getWebhook, id, company)
      return row ? toStoredWebhook(row) : undefined
    },

    async listWebhooks(company, query) {
      await ready()
      const filtered = query.isActive !== undefined
      const params = filtered ? [company, query.isActive ? 1 : 0] : [company]
      const [rows, count] = await Promise.all([
        all<{ doc: string }>(q.listWebhooks(filtered), ...params, query.limit, query.offset),
        first<{ n: number }>(q.countWebhooks(filtered), ...params),
      ])
      return { items: rows.map((r) => JSON.parse(r.doc) as COTWebhook), count: count?.n ?? 0 }
    },

    async activeWebhooks(company, trigger) {
      await ready()
      return (await all<{ doc: string }>(q.activeWebhooks, company, trigger)).map((r) => JSON.parse(r.doc) as COTWebhook)
    },

    async updateWebhook({ webhook, secrets }, expectedVersion) {
      await ready()
      const changed = await run(
        q.updateWebhook, webhook.trigger, webhook.isActive ? 1 : 0, webhook.__v, JSON.stringify(webhook), JSON.stringify(secrets),
        webhook._id, webhook.company, expectedVersion, webhook.code,
      )
      return changed === 1
    },

    async enqueue(input) {
      await ready()
      if (input.tx !== undefined) throw new TypeError('d1Store: D1 has no interactive transactions, so emit(…, { tx }) cannot join one')
      const company = input.event.company
      const seen = () => first<{ result: string }>(q.readIdempotency, company, input.idempotencyKey)
      if (input.idempotencyKey !== undefined) {
        const row = await seen()
        if (row) return { ...(JSON.parse(row.result) as EnqueueResult), duplicate: true }
      }
      const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
      const statements = []
      // The key first: a concurrent enqueue with the same key makes this whole batch fail, atomically.
      if (input.idempotencyKey !== undefined) {
        statements.push(db.prepare(q.insertIdempotency).bind(company, input.idempotencyKey, JSON.stringify(result), input.eventId, input.now))
      }
      if (input.deliveries.length) {
        statements.push(db.prepare(q.insertEvent).bind(input.eventId, company, JSON.stringify(input.event), input.now))
        for (const d of input.deliveries) {
          statements.push(db.prepare(q.insertDelivery).bind(d.id, company, d.webhookId, input.eventId, input.now, input.now, input.now, input.trace ?? null))
        }
        // The queues learn of their new deliveries in the same batch (a transaction on D1).
        for (const [webhookId, n] of countBy(input.deliveries)) {
          statements.push(db.prepare(queues.arrive).bind(webhookId, company, n, input.now, input.eventId, webhookId))
        }
      }
      if (!statements.length) return result
      try {
        await db.batch(statements)
      } catch (error) {
        const row = input.idempotencyKey === undefined ? undefined : await seen()
        if (row) return { ...(JSON.parse(row.result) as EnqueueResult), duplicate: true }
        throw error
      }
      return result
    },

    async claim(options) {
      await ready()
      return queues.claim(options)
    },

    async settle(lease, s) {
      await ready()
      return queues.settle(lease, s)
    },

    async release(lease, now) {
      await ready()
      await queues.release(lease, now)
    },

    async nextWakeAt() {
      await ready()
      return queues.nextWakeAt()
    },

    async openCount() {
      await ready()
      return queues.openCount()
    },

    async endpoint(webhookId) {
      await ready()
      return queues.endpoint(webhookId)
    },

    async stats(company) {
      await ready()
      return queues.stats(company)
    },

    async resetEndpoint(webhookId) {
      await ready()
      await queues.resetEndpoint(webhookId)
    },

    async setRate(webhookId, rate) {
      await ready()
      const owner = await first<{ company: string }>(`SELECT company FROM ${t.webhooks} WHERE id = ?`, webhookId)
      await queues.setRate(webhookId, owner?.company ?? '', rate)
    },

    async getDelivery(company, id) {
      await ready()
      const row = await first<DeliveryRow>(q.getDelivery, id, company)
      return row ? toDelivery(row) : undefined
    },

    async listDeliveries(company, webhookId, page) {
      await ready()
      const [rows, count] = await Promise.all([
        all<DeliveryRow>(q.listDeliveries, webhookId, company, page.limit, page.offset),
        first<{ n: number }>(q.countDeliveries, webhookId, company),
      ])
      return { items: rows.map(toDelivery), count: count?.n ?? 0 }
    },

    async prune(before, limit): Promise<PruneResult> {
      await ready()
      const [deliveries, events, keys] = await db.batch([
        db.prepare(q.pruneDeliveries).bind(before, limit),
        db.prepare(q.pruneEvents).bind(before, limit),
        db.prepare(q.pruneIdempotency).bind(before, limit),
      ])
      return { deliveries: deliveries?.meta?.changes ?? 0, events: events?.meta?.changes ?? 0, idempotencyKeys: keys?.meta?.changes ?? 0 }
    },
  }
}
