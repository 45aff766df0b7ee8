import type { PgPool, PgQueryable } from './pg-types.js'

/**
 * Runs `work` in a transaction: on a client of its own from the pool, or, with `tx` (the host's client,
 * its BEGIN open), inside a savepoint, so a failure here rolls back only this work and leaves the
 * host's transaction usable.
 *
 * @example
 * ```ts
 * await inTransaction(pool, (client) => client.query('SELECT 1'))
 * ```
 */
export async function inTransaction<T>(pool: PgPool, work: (client: PgQueryable) => Promise<T>, tx?: unknown): Promise<T> {
  if (tx !== undefined) {
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

function asClient(tx: unknown): PgQueryable {
  if (!tx || typeof (tx as PgQueryable).query !== 'function') {
    throw new TypeError('postgresStore: emit(…, { tx }) takes the pg client on which your BEGIN is open')
  }
  return tx as PgQueryable
}
