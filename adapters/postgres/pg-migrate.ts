import { SCHEMA_VERSION, backfillQueues, schemaStatements, type Tables } from '../sql/schema.js'
import { FUNCTIONS_VERSION, functionStatements } from './pg-functions.js'
import type { PgQueryable } from './pg-types.js'

// How long migrate() waits for the tables' locks before it lets running instances go first and tries again.
const MIGRATE_LOCK_TIMEOUT = '200ms'
const MIGRATE_TRIES = 100

/**
 * Whether a database needs nothing from `migrate()`: its tables at this release's schema version and
 * its functions at this release's version or a later one's. `read` gives a meta value by key.
 *
 * @example
 * ```ts
 * if (await isCurrent((key) => readMeta(key))) return
 * ```
 */
export async function isCurrent(read: (key: string) => Promise<string | undefined>): Promise<boolean> {
  return (await read('schema_version')) === String(SCHEMA_VERSION) && Number((await read('functions_version')) ?? 0) >= FUNCTIONS_VERSION
}

/**
 * Creates the schema, or upgrades one made by an earlier release, in one transaction: under an
 * advisory lock (several processes may start at once: one migrates, the others find it done), and,
 * for an upgrade beside running instances, with the tables locked after a short wait at most (past
 * it the attempt stands aside and tries again, so it never deadlocks with them).
 *
 * @example
 * ```ts
 * await migrateSchema(transaction, tables('cotwebhook_'), { schema: 'public', prefix: 'cotwebhook_', channel })
 * ```
 */
export async function migrateSchema(
  transaction: (work: (client: PgQueryable) => Promise<void>) => Promise<void>,
  t: Tables,
  names: { schema: string; prefix: string; channel: string },
): Promise<void> {
  const { schema, prefix, channel } = names
  const writeFunctions = async (client: PgQueryable) => {
    for (const statement of functionStatements(t, channel)) await client.query(statement)
    await client.query(
      `INSERT INTO ${t.meta} (key, value) VALUES ('functions_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [String(FUNCTIONS_VERSION)],
    )
  }
  for (let tries = 1; ; tries++) {
    try {
      await transaction(async (client) => {
        // Several processes may start at once: one migrates, the others wait and find it done.
        await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`cotwebhook migrate ${schema}.${prefix}`])
        const found = await client.query(`SELECT to_regclass($1) AS meta`, [t.meta])
        let from: string | undefined
        if (found.rows[0].meta) {
          const { rows } = await client.query(`SELECT key, value FROM ${t.meta} WHERE key IN ('schema_version', 'functions_version')`)
          const meta = new Map<string, string>(rows.map((row: { key: string; value: string }) => [row.key, row.value]))
          from = meta.get('schema_version')
          if (from === String(SCHEMA_VERSION)) {
            // Tables current: only functions may be older (never written back by an older release). Their
            // trigger locks the deliveries table: with the same short wait as an upgrade's locks.
            if (Number(meta.get('functions_version') ?? 0) < FUNCTIONS_VERSION) {
              await client.query(`SET LOCAL lock_timeout = '${MIGRATE_LOCK_TIMEOUT}'`)
              await writeFunctions(client)
            }
            return
          }
          // An upgrade with instances running: take the tables before changing them (a short wait,
          // never a deadlock: past the timeout this attempt stands aside and tries again).
          await client.query(`SET LOCAL lock_timeout = '${MIGRATE_LOCK_TIMEOUT}'`)
          await client.query(`LOCK TABLE ${t.idempotency}, ${t.events}, ${t.deliveries}, ${t.webhooks}, ${t.meta} IN ACCESS EXCLUSIVE MODE`)
        } else {
          await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`)
        }
        for (const statement of schemaStatements('postgres', t, from)) await client.query(statement)
        await client.query(backfillQueues(t))
        await writeFunctions(client)
        await client.query(
          `INSERT INTO ${t.meta} (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          [String(SCHEMA_VERSION)],
        )
      })
      break
    } catch (error) {
      // 55P03 lock_not_available: running instances hold the tables; let them finish, then retry.
      if ((error as { code?: string }).code !== '55P03' || tries >= MIGRATE_TRIES) throw error
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80))
    }
  }
}
