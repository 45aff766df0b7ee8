import type { COTWebhook, ClaimOptions, ClaimedDelivery, EnqueueInput, EnqueueResult, Lease, PruneResult, SettleResult, Settlement, StoreChange } from 'cotwebhook'
import { batcher } from '../sql/batcher.js'
import { schemaGate, type SqlStore } from '../sql/schema-gate.js'
import { tables, toDelivery, toStoredWebhook, type DeliveryRow, type WebhookRow } from '../sql/schema.js'
import { endpointOf, type QueueRecord } from '../sql/queue-row.js'
import { statsSql } from '../sql/stats-sql.js'
import { functionNames } from './pg-sql.js'
import { SETTLE_TURNS_SINCE } from './pg-functions.js'
import { listen } from './listen.js'
import { isCurrent, migrateSchema } from './pg-migrate.js'
import { companyOfLease, deliverySelect, lastTurn, leasedAtEmit, settleItems, settleResults, toClaimed, type SettleItem } from './pg-rows.js'
import type { PgPool, PgQueryable } from './pg-types.js'
import { inTransaction } from './pg-transaction.js'

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions {
  /** The PostgreSQL schema holding the tables; created by `migrate()`. Default `public`. */
  schema?: string
  /** Prefix of the table names. Default `cotwebhook_`. */
  prefix?: string
  /** Most emits grouped into one round trip (under load; a lone emit goes at once). Default 256. */
  maxEnqueueBatch?: number
  /** Most settles grouped into one round trip. Default 256. */
  maxSettleBatch?: number
}

/**
 * The PostgreSQL store: the storage contract plus `migrate()` (safe from several processes at once,
 * and while other instances run) and `close()` (which stops listening for notifications; the pool is
 * yours and stays open: end it with `pool.end()`).
 */
export type PostgresStore = SqlStore


/**
 * A store on PostgreSQL through a `pg.Pool`. Any number of processes may share one database. Each
 * webhook has a queue row; claims take due queues with `FOR UPDATE SKIP LOCKED`, so each delivery is
 * sent by one of them and a webhook's next delivery waits for the previous one across all of them.
 * Enqueues, claims and settles are SQL functions: one round trip each, and concurrent emits and
 * settles are grouped into one call (one commit). Endpoint state (health, circuit, rate) lives in the
 * queue rows, shared by every instance and kept across restarts. Writes `NOTIFY` (once per call), so
 * other engines wake at once (`watch`).
 *
 * For `emit(event, { tx: client })`, pass the client on which your `BEGIN` is open: the deliveries
 * and their notification commit with your transaction, or not at all.
 *
 * @param {PgPool} pool - a `pg.Pool` (yours: `close()` leaves it open)
 * @param {string} [options.schema='public'] - schema of the tables
 * @param {string} [options.prefix='cotwebhook_'] - table name prefix
 * @example
 * ```ts
 * import pg from 'pg'
 * import { postgresStore } from 'cotwebhook/postgres'
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * const store = postgresStore(pool)
 * await store.migrate()
 * const hooks = createWebhooks({ store })
 * // on shutdown: await hooks.close(); await store.close(); await pool.end()
 * ```
 */
export function postgresStore(pool: PgPool, options: PostgresStoreOptions = {}): PostgresStore {
  const schema = options.schema ?? 'public'
  const prefix = options.prefix ?? 'cotwebhook_'
  const t = tables(prefix, schema)
  const fn = functionNames(t)
  // Company turns: the company after which this store's next claim starts (see the claim function).
  let turnAfter: string | null = null
  // One channel per set of tables, so stores on other schemas do not wake each other.
  const channel = `${prefix}${schema}`.slice(0, 63)
  const listeners = new Set<() => Promise<void>>()
  const readVersion = async (key = 'schema_version'): Promise<string | undefined> => {
    try {
      return (await pool.query(`SELECT value FROM ${t.meta} WHERE key = $1`, [key])).rows[0]?.value
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') return undefined // undefined_table: never migrated
      throw error
    }
  }
  const gate = schemaGate('postgresStore', readVersion)
  // Whether the database has `settle_turns`: one not yet migrated by this release (its tables current,
  // its functions older) is settled as before, not failed.
  let byTurns: Promise<boolean> | undefined
  const settlesByTurns = () =>
    (byTurns ??= readVersion('functions_version').then((v) => Number(v ?? 0) >= SETTLE_TURNS_SINCE, (error: unknown) => {
      byTurns = undefined
      throw error
    }))
  const ready = () => gate.ready()
  // Named statements: pg prepares each once per connection.
  const call = (name: string, text: string, values: unknown[]) => pool.query({ name: `${prefix}${schema}_${name}`, text, values })

  const enqueueMany = batcher<EnqueueInput, EnqueueResult>(
    async (inputs) => {
      const items = inputs.map((input) => ({
        company: input.event.company,
        eventId: input.eventId,
        event: input.event,
        now: input.now,
        deliveries: input.deliveries,
        ...(input.trace === undefined ? {} : { trace: input.trace }),
        ...(input.claim ? { claimLimit: input.claim.limit } : {}),
        ...(input.idempotencyKey === undefined
          ? {}
          : { key: input.idempotencyKey, result: { eventId: input.eventId, deliveries: input.deliveries, duplicate: false } }),
      }))
      // Every input of a batch asks for the same engine, if any (see `fits`): one lease for all.
      const asking = inputs.find((input) => input.claim)?.claim
      const claim = asking && {
        token: `${asking.owner}:${crypto.randomUUID()}`,
        leaseMs: asking.leaseMs,
        ordered: asking.ordered,
        now: Math.min(...inputs.map((input) => input.now)),
        limit: inputs.reduce((n, input) => n + (input.claim?.limit ?? 0), 0),
      }
      const { rows } = await call('enqueue', `SELECT i, duplicate, stored, id, token FROM ${fn.enqueue}($1::jsonb, $2::jsonb)`, [
        JSON.stringify(items),
        claim ? JSON.stringify(claim) : null,
      ])
      const results = inputs.map((input): EnqueueResult => ({ eventId: input.eventId, deliveries: input.deliveries, duplicate: false }))
      for (const row of rows) {
        const result = results[row.i]!
        if (row.duplicate) results[row.i] = { ...(row.stored as EnqueueResult), duplicate: true }
        else if (row.token) (result.claimed ??= []).push(leasedAtEmit(inputs[row.i]!, row.id, row.token))
        else if (row.stored?.waiting) result.waiting = row.stored.waiting as number
      }
      return results
    },
    {
      maxBatch: options.maxEnqueueBatch ?? 256,
      defer: setImmediate,
      // One idempotency key per batch (the second waits for the first's outcome in the next one), and
      // one engine asking for leases.
      fits: (input, batch) =>
        (input.idempotencyKey === undefined ||
          !batch.some((b) => b.idempotencyKey === input.idempotencyKey && b.event.company === input.event.company)) &&
        (!input.claim || batch.every((b) => !b.claim || b.claim.owner === input.claim!.owner)),
    },
  )

  const settleMany = batcher<SettleItem, SettleResult>(
    async (entries) => {
      const items = JSON.stringify(settleItems(entries))
      if (!(await settlesByTurns())) return settleResults(entries, (await call('settle', `SELECT * FROM ${fn.settle}($1::jsonb)`, [items])).rows)
      // Claims made in the settle go on with this store's company turns; they, and queues passed straight
      // on, move the turn along.
      const { rows } = await call('settle_turns', `SELECT * FROM ${fn.settleTurns}($1::jsonb, $2)`, [items, turnAfter])
      turnAfter = lastTurn(rows) ?? turnAfter
      return settleResults(entries, rows)
    },
    // A company's lone settle flushes beside a busy company's batches: an ordered webhook's next waits on it.
    { maxBatch: options.maxSettleBatch ?? 256, defer: setImmediate, keyOf: (item) => companyOfLease(item.lease) },
  )

  const transaction = <T>(work: (client: PgQueryable) => Promise<T>, tx?: unknown) => inTransaction(pool, work, tx)

  // A webhook write and its notification, in one statement.
  const writeWebhook = async (text: string, values: unknown[], company: string, id: string) => {
    const change: StoreChange = { kind: 'webhook', company, id }
    const { rows } = await pool.query(`WITH w AS (${text} RETURNING 1) SELECT pg_notify($${values.length + 1}, $${values.length + 2}) FROM w`, [
      ...values,
      channel,
      JSON.stringify(change),
    ])
    return rows.length === 1
  }

  return {
    async migrate() {
      // Nothing to do takes no lock: every instance runs migrate() on start, beside running emits.
      if (!(await isCurrent(readVersion))) await migrateSchema(transaction, t, { schema, prefix, channel })
      gate.passed()
      byTurns = Promise.resolve(true)
    },

    async close() {
      await Promise.all([...listeners].map((stop) => stop()))
    },

    async insertWebhook({ webhook, secrets }) {
      await ready()
      return writeWebhook(
        `INSERT INTO ${t.webhooks} (id, company, code, trigger, is_active, version, doc, secrets)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
        [webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive, webhook.__v, webhook, JSON.stringify(secrets)],
        webhook.company,
        webhook._id,
      )
    },

    async getWebhook(company, id) {
      await ready()
      const { rows } = await pool.query(`SELECT doc, secrets FROM ${t.webhooks} WHERE id = $1 AND company = $2`, [id, company])
      return rows[0] ? toStoredWebhook(rows[0] as WebhookRow) : undefined
    },

    async listWebhooks(company, query) {
      await ready()
      const filter = query.isActive === undefined ? '' : 'AND is_active = $2'
      const params: unknown[] = query.isActive === undefined ? [company] : [company, query.isActive]
      const n = params.length
      const [page, total] = await Promise.all([
        pool.query(`SELECT doc FROM ${t.webhooks} WHERE company = $1 ${filter} ORDER BY seq LIMIT $${n + 1} OFFSET $${n + 2}`, [
          ...params,
          query.limit,
          query.offset,
        ]),
        pool.query(`SELECT COUNT(*) AS n FROM ${t.webhooks} WHERE company = $1 ${filter}`, params),
      ])
      return { items: page.rows.map((r) => r.doc as COTWebhook), count: Number(total.rows[0].n) }
    },

    async activeWebhooks(company, trigger) {
      await ready()
      const { rows } = await pool.query(
        `SELECT doc FROM ${t.webhooks} WHERE company = $1 AND trigger = $2 AND is_active ORDER BY seq`,
        [company, trigger],
      )
      return rows.map((r) => r.doc as COTWebhook)
    },

    async updateWebhook({ webhook, secrets }, expectedVersion) {
      await ready()
      return writeWebhook(
        `UPDATE ${t.webhooks} SET trigger = $1, is_active = $2, version = $3, doc = $4, secrets = $5
         WHERE id = $6 AND company = $7 AND version = $8 AND code = $9`,
        [webhook.trigger, webhook.isActive, webhook.__v, webhook, JSON.stringify(secrets), webhook._id, webhook.company, expectedVersion, webhook.code],
        webhook.company,
        webhook._id,
      )
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      await ready()
      if (input.tx === undefined) return enqueueMany(input)
      const company = input.event.company
      return transaction(async (client) => {
        const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
        const { rows } = await client.query(`SELECT duplicate, stored FROM ${fn.enqueueInTx}($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [
          company, input.eventId, input.event, input.deliveries.map((d) => d.id), input.deliveries.map((d) => d.webhookId), input.now,
          input.idempotencyKey ?? null, input.idempotencyKey === undefined ? null : JSON.stringify(result), input.trace ?? null,
        ])
        return rows[0]?.duplicate ? { ...(rows[0].stored as EnqueueResult), duplicate: true } : result
      }, input.tx)
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      await ready()
      const { now, limit, leaseMs, owner, ordered } = options
      if (limit <= 0) return []
      const { rows } = await call('claim', `SELECT delivery, event, probe, rate_per_second, rate_burst, turn FROM ${fn.claim}($1, $2, $3, $4, $5, false, $6)`, [
        now, limit, leaseMs, `${owner}:${crypto.randomUUID()}`, ordered, turnAfter,
      ])
      turnAfter = lastTurn(rows) ?? turnAfter // the next claim starts after the last company served in turn
      return rows.map((row) => toClaimed(row.delivery, row.event, row.probe, row.rate_per_second, row.rate_burst))
    },

    async settle(lease: Lease, settlement: Settlement) {
      await ready()
      return settleMany({ lease, settlement })
    },

    async release(lease: Lease, now: number) {
      await ready()
      await settleMany({ lease, settlement: { now, state: 'pending', response: '' }, release: true })
    },

    async nextWakeAt(now) {
      await ready()
      const { rows } = await call(
        'next_wake',
        `SELECT LEAST((SELECT MIN(hint) FROM ${t.queues} WHERE hint IS NOT NULL), (SELECT $1::bigint WHERE EXISTS (SELECT 1 FROM ${t.wakeups}))) AS wake`,
        [now],
      )
      return rows[0].wake === null ? undefined : Number(rows[0].wake)
    },

    async openCount() {
      await ready()
      // Counted from the index of open deliveries (drain() asks once per poll, not per delivery).
      const { rows } = await call('open_count', `SELECT count(*) AS n FROM ${t.deliveries} WHERE state = 'pending'`, [])
      return Number(rows[0].n)
    },

    async endpoint(webhookId) {
      await ready()
      // The queue row, and its open deliveries counted from their index.
      const { rows } = await pool.query(
        `SELECT (SELECT row_to_json(q) FROM ${t.queues} q WHERE q.webhook_id = $1) AS queue,
           (SELECT count(*) FROM ${t.deliveries} d WHERE d.webhook_id = $1 AND d.state = 'pending') AS open`,
        [webhookId],
      )
      return { ...endpointOf((rows[0].queue ?? undefined) as QueueRecord | undefined), open: Number(rows[0].open) }
    },

    async stats(company) {
      await ready()
      const { rows } = await pool.query(statsSql('postgres', t, company !== undefined), company === undefined ? [] : [company])
      return rows.map((row: QueueRecord & { webhook_id: string; company: string; pending: string; oldest: string | null }) => ({
        webhookId: row.webhook_id,
        company: row.company,
        ...endpointOf(row),
        open: Number(row.pending),
        oldestOpenAt: row.oldest === null ? null : Number(row.oldest),
      }))
    },

    async resetEndpoint(webhookId) {
      await ready()
      // A hint of 0 is never late: the next claim looks at the queue and sets it right.
      await pool.query(
        `UPDATE ${t.queues} SET version = version + 1, consecutive_failures = 0, failing_since = NULL, failed_attempts = 0, open_until = NULL,
           cooldown_ms = 0, probe_token = NULL, probe_until = NULL, hint = CASE WHEN hint IS NULL THEN NULL ELSE 0 END WHERE webhook_id = $1`,
        [webhookId],
      )
    },

    async setRate(webhookId, rate) {
      await ready()
      await pool.query(
        `INSERT INTO ${t.queues} AS q (webhook_id, company, rate_per_second, rate_burst)
         SELECT $1, COALESCE((SELECT company FROM ${t.webhooks} WHERE id = $1), ''), $2, $3
         ON CONFLICT (webhook_id) DO UPDATE SET version = q.version + 1, rate_per_second = excluded.rate_per_second, rate_burst = excluded.rate_burst,
           tokens = LEAST(q.tokens, COALESCE(excluded.rate_burst, q.tokens)), hint = CASE WHEN q.hint IS NULL THEN NULL ELSE 0 END`,
        [webhookId, rate?.perSecond ?? null, rate?.burst ?? null],
      )
    },

    async getDelivery(company, id) {
      await ready()
      const { rows } = await pool.query(`${deliverySelect(t)} WHERE d.id = $1 AND d.company = $2`, [id, company])
      return rows[0] ? toDelivery(rows[0] as DeliveryRow) : undefined
    },

    async listDeliveries(company, webhookId, page) {
      await ready()
      const [items, total] = await Promise.all([
        pool.query(`${deliverySelect(t)} WHERE d.webhook_id = $1 AND d.company = $2 ORDER BY d.seq DESC LIMIT $3 OFFSET $4`, [
          webhookId,
          company,
          page.limit,
          page.offset,
        ]),
        pool.query(`SELECT COUNT(*) AS n FROM ${t.deliveries} WHERE webhook_id = $1 AND company = $2`, [webhookId, company]),
      ])
      return { items: items.rows.map((r) => toDelivery(r as DeliveryRow)), count: Number(total.rows[0].n) }
    },

    async prune(before, limit): Promise<PruneResult> {
      await ready()
      // Three short statements, each its own transaction, so claims never wait behind a long delete.
      const deliveries = await pool.query(
        `DELETE FROM ${t.deliveries} WHERE seq IN (SELECT seq FROM ${t.deliveries}
           WHERE state <> 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT $2)`,
        [before, limit],
      )
      const events = await pool.query(
        `DELETE FROM ${t.events} WHERE id IN (SELECT e.id FROM ${t.events} e WHERE e.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.event_id = e.id) LIMIT $2)`,
        [before, limit],
      )
      const keys = await pool.query(
        `DELETE FROM ${t.idempotency} WHERE (company, key) IN (SELECT i.company, i.key FROM ${t.idempotency} i
           WHERE i.created_at < $1
             AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.event_id = i.event_id AND d.state = 'pending') LIMIT $2)`,
        [before, limit],
      )
      return { deliveries: deliveries.rowCount ?? 0, events: events.rowCount ?? 0, idempotencyKeys: keys.rowCount ?? 0 }
    },

    async watch(listener) {
      const stop = await listen(pool, channel, listener)
      const unlisten = async () => {
        listeners.delete(unlisten)
        await stop()
      }
      listeners.add(unlisten)
      return unlisten
    },
  }
}
