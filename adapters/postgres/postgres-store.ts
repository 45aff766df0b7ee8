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
  StoreChange,
} from 'cotwebhook'
import { schemaGate, type SqlStore } from '../sql/schema-gate.js'
import { listen } from './listen.js'
import type { PgPool, PgQueryable } from './pg-types.js'
import {
  SCHEMA_VERSION,
  schemaStatements,
  tables,
  toDelivery,
  toStoredWebhook,
  type DeliveryRow,
  type WebhookRow,
} from '../sql/schema.js'

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions {
  /** The PostgreSQL schema holding the tables; created by `migrate()`. Default `public`. */
  schema?: string
  /** Prefix of the table names. Default `cotwebhook_`. */
  prefix?: string
}

/**
 * The PostgreSQL store: the storage contract plus `migrate()` (safe from several processes at once)
 * and `close()` (which stops listening for notifications; the pool is yours and stays open).
 */
export type PostgresStore = SqlStore

/**
 * A store on PostgreSQL through a `pg.Pool`. Any number of processes may share one database: claims
 * take due deliveries with `FOR UPDATE SKIP LOCKED` under a lease, so each delivery is sent by one
 * of them and a webhook's next delivery waits for the previous one across all of them. Enqueues and
 * webhook writes `NOTIFY`, so other engines wake at once (`watch`).
 *
 * For `emit(event, { tx: client })`, pass the client on which your `BEGIN` is open: the deliveries
 * and their notification commit with your transaction, or not at all.
 *
 * @param {PgPool} pool - a `pg.Pool`
 * @param {string} [options.schema='public'] - schema of the tables
 * @param {string} [options.prefix='cotwebhook_'] - table name prefix
 * @example
 * ```ts
 * import pg from 'pg'
 * import { postgresStore } from 'cotwebhook/postgres'
 * const store = postgresStore(new pg.Pool({ connectionString: process.env.DATABASE_URL }))
 * await store.migrate()
 * const hooks = createWebhooks({ store })
 * ```
 */
export function postgresStore(pool: PgPool, options: PostgresStoreOptions = {}): PostgresStore {
  const schema = options.schema ?? 'public'
  const prefix = options.prefix ?? 'cotwebhook_'
  const t = tables(prefix, schema)
  // One channel per set of tables, so stores on other schemas do not wake each other.
  const channel = `${prefix}${schema}`.slice(0, 63)
  // The advisory-lock key space of this set of tables (any int4; a collision only makes a claim skip a round).
  const lockSpace = hash32(channel)
  const listeners = new Set<() => Promise<void>>()
  const gate = schemaGate('postgresStore', async () => {
    try {
      return (await pool.query(`SELECT value FROM ${t.meta} WHERE key = 'schema_version'`)).rows[0]?.value
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') return undefined // undefined_table: never migrated
      throw error
    }
  })
  const ready = () => gate.ready()

  const notify = (client: PgQueryable, change: StoreChange) =>
    client.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(change)])

  const deliveryColumns = `d.seq, d.id, d.company, d.webhook_id, d.event_id, d.state, d.attempts, d.status, d.response,
    d.created_at, d.updated_at, d.next_attempt_at`
  const deliverySelect = `SELECT ${deliveryColumns}, e.body AS event FROM ${t.deliveries} d JOIN ${t.events} e ON e.id = d.event_id`
  const isHead = `NOT EXISTS (SELECT 1 FROM ${t.deliveries} x
    WHERE x.webhook_id = d.webhook_id AND x.state = 'pending' AND x.seq < d.seq)`
  // ($1 = now) None of the webhook's other deliveries is out: an older one committed late (a host
  // transaction) must not go out beside a younger one already sent.
  const noneOut = `NOT EXISTS (SELECT 1 FROM ${t.deliveries} y
    WHERE y.webhook_id = d.webhook_id AND y.state = 'pending' AND y.seq <> d.seq AND y.lease_until >= $1)`

  const transaction = async <T>(work: (client: PgQueryable) => Promise<T>, tx?: unknown): Promise<T> => {
    if (tx !== undefined) {
      // Inside the host's transaction: a savepoint, so a failure here leaves the host's work usable.
      const client = asClient(tx)
      await client.query('SAVEPOINT cotwebhook')
      try {
        const result = await work(client)
        await client.query('RELEASE SAVEPOINT cotwebhook')
        return result
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT cotwebhook').catch(() => {})
        throw error
      }
    }
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const result = await work(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }

  return {
    async migrate() {
      await transaction(async (client) => {
        // Several processes may start at once; one migrates, the others wait and find it done.
        await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`cotwebhook migrate ${schema}.${prefix}`])
        await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`)
        for (const statement of schemaStatements('postgres', t)) await client.query(statement)
        await client.query(
          `INSERT INTO ${t.meta} (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          [String(SCHEMA_VERSION)],
        )
      })
      gate.passed()
    },

    async close() {
      await Promise.all([...listeners].map((stop) => stop()))
    },

    async insertWebhook({ webhook, secrets }) {
      await ready()
      const result = await pool.query(
        `INSERT INTO ${t.webhooks} (id, company, code, trigger, is_active, version, doc, secrets)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
        [webhook._id, webhook.company, webhook.code, webhook.trigger, webhook.isActive, webhook.__v, webhook, JSON.stringify(secrets)],
      )
      if (result.rowCount !== 1) return false
      await notify(pool, { kind: 'webhook', company: webhook.company, id: webhook._id })
      return true
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
      const result = await pool.query(
        `UPDATE ${t.webhooks} SET trigger = $1, is_active = $2, version = $3, doc = $4, secrets = $5
         WHERE id = $6 AND company = $7 AND version = $8 AND code = $9`,
        [webhook.trigger, webhook.isActive, webhook.__v, webhook, JSON.stringify(secrets), webhook._id, webhook.company, expectedVersion, webhook.code],
      )
      if (result.rowCount !== 1) return false
      await notify(pool, { kind: 'webhook', company: webhook.company, id: webhook._id })
      return true
    },

    async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
      await ready()
      const company = input.event.company
      const result: EnqueueResult = { eventId: input.eventId, deliveries: input.deliveries, duplicate: false }
      return transaction(async (client) => {
        if (input.idempotencyKey !== undefined) {
          // Claim the key first: a concurrent enqueue with the same key waits here for this one's outcome.
          const claimed = await client.query(
            `INSERT INTO ${t.idempotency} (company, key, result, event_id, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
            [company, input.idempotencyKey, JSON.stringify(result), input.eventId, input.now],
          )
          if (claimed.rowCount !== 1) {
            const { rows } = await client.query(`SELECT result FROM ${t.idempotency} WHERE company = $1 AND key = $2`, [
              company,
              input.idempotencyKey,
            ])
            return { ...(rows[0].result as EnqueueResult), duplicate: true }
          }
        }
        if (input.deliveries.length) {
          await client.query(`INSERT INTO ${t.events} (id, company, body, created_at) VALUES ($1, $2, $3, $4)`, [
            input.eventId,
            company,
            input.event,
            input.now,
          ])
          await client.query(
            `INSERT INTO ${t.deliveries}
               (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
             SELECT id, $3, webhook_id, $4, 'pending', '[]'::jsonb, NULL, '', $5, $5, $5
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(id, webhook_id, i) ORDER BY i`,
            [input.deliveries.map((d) => d.id), input.deliveries.map((d) => d.webhookId), company, input.eventId, input.now],
          )
          // Delivered to listeners when this transaction commits (the host's, with a tx), never before.
          await notify(client, { kind: 'deliveries' })
        }
        return result
      }, input.tx)
    },

    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      await ready()
      const { now, limit, leaseMs, owner, ordered } = options
      if (limit <= 0) return []
      const base = `${owner}:${crypto.randomUUID()}`
      // One statement: pick due heads, skip rows another claimer has locked, lease them, return them.
      const { rows } = await pool.query(
        `WITH picked AS (
           SELECT d.seq FROM ${t.deliveries} d
           WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1)
             -- Ordered: the head, none of its webhook out, and this webhook claimed by no one else right now
             -- (a transaction-scoped advisory lock, so two concurrent claims cannot both pass the checks).
             AND (NOT $2::boolean OR (${isHead} AND ${noneOut} AND pg_try_advisory_xact_lock($6::int, hashtext(d.webhook_id))))
           ORDER BY d.next_attempt_at, d.seq
           LIMIT $3
           FOR UPDATE SKIP LOCKED
         )
         UPDATE ${t.deliveries} d SET lease_token = $4 || ':' || d.seq, lease_until = $1::bigint + $5::bigint
         FROM picked WHERE d.seq = picked.seq
         RETURNING ${deliveryColumns}, d.lease_token,
           (SELECT e.body FROM ${t.events} e WHERE e.id = d.event_id) AS event`,
        [now, ordered, limit, base, leaseMs, lockSpace],
      )
      return rows
        .sort((a, b) => Number(a.next_attempt_at) - Number(b.next_attempt_at) || Number(a.seq) - Number(b.seq))
        .map((row) => ({ delivery: toDelivery(row as DeliveryRow), lease: { deliveryId: row.id as string, token: row.lease_token as string } }))
    },

    async settle(lease: Lease, s: Settlement) {
      await ready()
      const final = s.state !== 'pending'
      const held = !final && s.holdUntil !== undefined
      const result = await pool.query(
        `UPDATE ${t.deliveries} SET
           attempts = CASE WHEN $1::jsonb IS NULL THEN attempts ELSE attempts || jsonb_build_array($1::jsonb) END,
           status = COALESCE($2, status), response = $3, updated_at = $4, state = $5, next_attempt_at = $6,
           lease_token = $7, lease_until = $8
         WHERE id = $9 AND lease_token = $10 AND lease_until >= $4 AND state = 'pending'`,
        [
          s.attempt === undefined ? null : JSON.stringify(s.attempt),
          s.attempt?.status ?? null,
          s.response,
          s.now,
          s.state,
          final ? null : (s.nextAttemptAt ?? s.now),
          held ? lease.token : null,
          held ? s.holdUntil : null,
          lease.deliveryId,
          lease.token,
        ],
      )
      if (result.rowCount !== 1) throw new LeaseLostError(lease.deliveryId)
      // Work for others: a webhook's next delivery (after a final one), or a retry handed back.
      if (!held) await notify(pool, { kind: 'deliveries' })
    },

    async release(lease: Lease, now: number) {
      await ready()
      const result = await pool.query(
        `UPDATE ${t.deliveries} SET lease_token = NULL, lease_until = NULL
         WHERE id = $1 AND lease_token = $2 AND lease_until >= $3 AND state = 'pending'`,
        [lease.deliveryId, lease.token, now],
      )
      if (result.rowCount !== 1) throw new LeaseLostError(lease.deliveryId)
      await notify(pool, { kind: 'deliveries' })
    },

    async nextWakeAt(now, ordered) {
      await ready()
      const { rows } = await pool.query(
        `SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until >= $1 THEN d.lease_until ELSE d.next_attempt_at END) AS wake
         FROM ${t.deliveries} d WHERE d.state = 'pending' AND (NOT $2::boolean OR ${isHead})`,
        [now, ordered],
      )
      return rows[0].wake === null ? undefined : Number(rows[0].wake)
    },

    async openCount() {
      await ready()
      const { rows } = await pool.query(`SELECT COUNT(*) AS n FROM ${t.deliveries} WHERE state = 'pending'`)
      return Number(rows[0].n)
    },

    async getDelivery(company, id) {
      await ready()
      const { rows } = await pool.query(`${deliverySelect} WHERE d.id = $1 AND d.company = $2`, [id, company])
      return rows[0] ? toDelivery(rows[0] as DeliveryRow) : undefined
    },

    async listDeliveries(company, webhookId, page) {
      await ready()
      const [items, total] = await Promise.all([
        pool.query(`${deliverySelect} WHERE d.webhook_id = $1 AND d.company = $2 ORDER BY d.seq DESC LIMIT $3 OFFSET $4`, [
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

function hash32(text: string): number {
  let h = 0
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0
  return h
}

function asClient(tx: unknown): PgQueryable {
  if (!tx || typeof (tx as PgQueryable).query !== 'function') {
    throw new TypeError('postgresStore: emit(…, { tx }) takes the pg client on which your BEGIN is open')
  }
  return tx as PgQueryable
}
