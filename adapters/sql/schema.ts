import type { Delivery, StoredWebhook } from 'cotwebhook'

/**
 * The one schema the SQL stores share: the same tables, columns and indexes on SQLite and
 * PostgreSQL, written in each dialect's types. Times are epoch milliseconds.
 */

/**
 * Bumped when a migration changes the tables; stores refuse to run on another version.
 * 1: webhooks, events, deliveries, idempotency keys. 2: a queue per webhook (its open count, when it
 * is next due, what is out, and the endpoint's shared state: health, circuit, rate). 3: a delivery
 * keeps the trace context of the emit that made it (`trace`).
 */
export const SCHEMA_VERSION = 3

export type Dialect = 'sqlite' | 'postgres'

/** Table names, prefixed (and schema-qualified on PostgreSQL). */
export interface Tables {
  meta: string
  webhooks: string
  events: string
  deliveries: string
  idempotency: string
  queues: string
  /** PostgreSQL: wake-ups written by enqueues inside a host transaction, folded into `queues` by claims. */
  wakeups: string
  /** Prefix for index names (unqualified). */
  index: string
}

/** Table names for a prefix and, on PostgreSQL, a schema. */
export function tables(prefix: string, schema?: string): Tables {
  if (!/^[a-z_][a-z0-9_]*$/.test(prefix)) throw new RangeError(`table prefix "${prefix}" must be lowercase letters, digits and underscores`)
  if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schema)) throw new RangeError(`schema "${schema}" must be lowercase letters, digits and underscores`)
  const q = (name: string) => (schema ? `"${schema}".${prefix}${name}` : `${prefix}${name}`)
  return {
    meta: q('meta'),
    webhooks: q('webhooks'),
    events: q('events'),
    deliveries: q('deliveries'),
    idempotency: q('idempotency'),
    queues: q('queues'),
    wakeups: q('wakeups'),
    index: prefix,
  }
}

/**
 * The DDL of the schema, one statement per entry, safe to run again. `found` is the version of an
 * existing database (undefined for a new one): columns added since are added to its tables.
 */
export function schemaStatements(dialect: Dialect, t: Tables, found?: string): string[] {
  const pg = dialect === 'postgres'
  const serial = pg ? 'BIGSERIAL PRIMARY KEY' : 'INTEGER PRIMARY KEY AUTOINCREMENT'
  const int = pg ? 'BIGINT' : 'INTEGER'
  const json = pg ? 'JSONB' : 'TEXT'
  const bool = pg ? 'BOOLEAN' : 'INTEGER'
  const active = pg ? 'is_active' : 'is_active = 1'
  return [
    `CREATE TABLE IF NOT EXISTS ${t.meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${t.webhooks} (
      seq ${serial},
      id TEXT NOT NULL UNIQUE,
      company TEXT NOT NULL,
      code TEXT NOT NULL,
      trigger TEXT NOT NULL,
      is_active ${bool} NOT NULL,
      version ${int} NOT NULL,
      doc ${json} NOT NULL,
      secrets ${json} NOT NULL,
      UNIQUE (company, code)
    )`,
    // Matching reads one company's active webhooks of one trigger.
    `CREATE INDEX IF NOT EXISTS ${t.index}webhooks_match ON ${t.webhooks} (company, trigger, seq) WHERE ${active}`,
    `CREATE INDEX IF NOT EXISTS ${t.index}webhooks_company ON ${t.webhooks} (company, seq)`,
    `CREATE TABLE IF NOT EXISTS ${t.events} (
      id TEXT PRIMARY KEY,
      company TEXT NOT NULL,
      body ${json} NOT NULL,
      created_at ${int} NOT NULL
    )`,
    `CREATE TABLE IF NOT EXISTS ${t.deliveries} (
      seq ${serial},
      id TEXT NOT NULL UNIQUE,
      company TEXT NOT NULL,
      webhook_id TEXT NOT NULL,
      event_id TEXT NOT NULL,
      state TEXT NOT NULL,
      attempts ${json} NOT NULL,
      status INTEGER,
      response TEXT NOT NULL,
      created_at ${int} NOT NULL,
      updated_at ${int} NOT NULL,
      next_attempt_at ${int},
      lease_token TEXT,
      lease_until ${int},
      trace TEXT
    )`,
    // Version 3: the emit's trace context, kept with each delivery for the attempts' spans.
    ...(found === '1' || found === '2' ? [`ALTER TABLE ${t.deliveries} ADD COLUMN ${pg ? 'IF NOT EXISTS ' : ''}trace TEXT`] : []),
    // A webhook's open deliveries: in order (its head), and by due time (unordered claims).
    `CREATE INDEX IF NOT EXISTS ${t.index}deliveries_queue ON ${t.deliveries} (webhook_id, seq) WHERE state = 'pending'`,
    `CREATE INDEX IF NOT EXISTS ${t.index}deliveries_ready ON ${t.deliveries} (webhook_id, next_attempt_at, seq) WHERE state = 'pending'`,
    // Logs: a webhook's deliveries newest first. Pruning: old final ones; events by reference.
    `CREATE INDEX IF NOT EXISTS ${t.index}deliveries_log ON ${t.deliveries} (webhook_id, seq)`,
    `CREATE INDEX IF NOT EXISTS ${t.index}deliveries_final ON ${t.deliveries} (updated_at) WHERE state <> 'pending'`,
    `CREATE INDEX IF NOT EXISTS ${t.index}deliveries_event ON ${t.deliveries} (event_id)`,
    `CREATE INDEX IF NOT EXISTS ${t.index}events_created ON ${t.events} (created_at)`,
    `CREATE TABLE IF NOT EXISTS ${t.idempotency} (
      company TEXT NOT NULL,
      key TEXT NOT NULL,
      result ${json} NOT NULL,
      event_id TEXT NOT NULL,
      created_at ${int} NOT NULL,
      PRIMARY KEY (company, key)
    )`,
    `CREATE INDEX IF NOT EXISTS ${t.index}idempotency_created ON ${t.idempotency} (created_at)`,
    ...queueStatements(dialect, t),
  ]
}

/**
 * Version 2: one row per webhook with open deliveries (or endpoint state). Claims pick rows by `hint`
 * (never later than the first moment one of its deliveries may go, `NULL` while nothing is open), so a
 * claim reads a few queue rows and one index entry each, whatever the backlog behind them.
 */
function queueStatements(dialect: Dialect, t: Tables): string[] {
  const pg = dialect === 'postgres'
  const int = pg ? 'BIGINT' : 'INTEGER'
  const real = pg ? 'DOUBLE PRECISION' : 'REAL'
  const bool = pg ? 'BOOLEAN' : 'INTEGER'
  const yes = pg ? 'TRUE' : '1'
  const statements = [
    `CREATE TABLE IF NOT EXISTS ${t.queues} (
      webhook_id TEXT PRIMARY KEY,
      company TEXT NOT NULL,
      version ${int} NOT NULL DEFAULT 0,
      ordered ${bool} NOT NULL DEFAULT ${yes},
      open ${int} NOT NULL DEFAULT 0,
      hint ${int},
      hint_seq ${int},
      out ${int} NOT NULL DEFAULT 0,
      out_until ${int},
      consecutive_failures ${int} NOT NULL DEFAULT 0,
      failing_since ${int},
      last_success_at ${int},
      last_failure_at ${int},
      failed_attempts ${int} NOT NULL DEFAULT 0,
      open_until ${int},
      cooldown_ms ${int} NOT NULL DEFAULT 0,
      probe_token TEXT,
      probe_until ${int},
      rate_per_second ${real},
      rate_burst ${int},
      tokens ${real} NOT NULL DEFAULT 0,
      tokens_at ${int}
    )`,
    `CREATE INDEX IF NOT EXISTS ${t.index}queues_due ON ${t.queues} (hint, hint_seq) WHERE hint IS NOT NULL`,
    // Company turns: claims step from one company with due work to the next through this index.
    `CREATE INDEX IF NOT EXISTS ${t.index}queues_turns ON ${t.queues} (company, hint, hint_seq) WHERE hint IS NOT NULL`,
    // Version 1 claimed by scanning this index; claims now start from the queues.
    `DROP INDEX IF EXISTS ${pg ? `${t.queues.split('.')[0]}.` : ''}${t.index}deliveries_due`,
  ]
  if (pg) {
    statements.push(`CREATE TABLE IF NOT EXISTS ${t.wakeups} (
      seq BIGSERIAL PRIMARY KEY,
      webhook_id TEXT NOT NULL,
      company TEXT NOT NULL,
      n ${int} NOT NULL,
      at ${int} NOT NULL,
      first_seq ${int} NOT NULL
    )`)
  }
  return statements
}

/**
 * Fills the queues of a version 1 database from its open deliveries (leased ones included), so an
 * upgraded database delivers everything that was pending. Safe to run again: it only adds what is
 * missing.
 */
export function backfillQueues(t: Tables): string {
  return `INSERT INTO ${t.queues} (webhook_id, company, open, hint, hint_seq, out, out_until)
    SELECT webhook_id, MIN(company), COUNT(*), MIN(next_attempt_at), MIN(seq), COUNT(lease_until), MAX(lease_until)
    FROM ${t.deliveries} WHERE state = 'pending' GROUP BY webhook_id
    ON CONFLICT (webhook_id) DO NOTHING`
}

/** The message of a store whose schema is missing or from another version. */
export function schemaError(store: string, found: string | undefined): Error {
  return new Error(
    found === undefined
      ? `${store}: the cotwebhook tables do not exist; call \`await store.migrate()\` once before use`
      : `${store}: the cotwebhook schema is at version ${found}, this version of cotwebhook needs ${SCHEMA_VERSION}; call \`await store.migrate()\``,
  )
}

/** A delivery row as both dialects select it (JSON columns already parsed or as text). */
export interface DeliveryRow {
  id: string
  company: string
  webhook_id: string
  event_id: string
  state: string
  attempts: unknown
  status: number | string | null
  response: string
  created_at: number | string
  updated_at: number | string
  next_attempt_at: number | string | null
  trace?: string | null
  event: unknown
}

/** A webhook row. */
export interface WebhookRow {
  doc: unknown
  secrets: unknown
}

const parsed = <T>(value: unknown): T => (typeof value === 'string' ? JSON.parse(value) : value) as T
// PostgreSQL returns BIGINT as text; both fit a double (epoch milliseconds).
const num = (value: number | string): number => Number(value)

/** Row -> Delivery. */
export function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    company: row.company,
    webhookId: row.webhook_id,
    eventId: row.event_id,
    event: parsed(row.event),
    state: row.state as Delivery['state'],
    attempts: parsed(row.attempts),
    status: row.status === null ? null : num(row.status),
    response: row.response,
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
    nextAttemptAt: row.next_attempt_at === null ? null : num(row.next_attempt_at),
    ...(row.trace ? { trace: row.trace } : {}),
  }
}

/** Row -> StoredWebhook. */
export function toStoredWebhook(row: WebhookRow): StoredWebhook {
  return { webhook: parsed(row.doc), secrets: parsed(row.secrets) }
}
