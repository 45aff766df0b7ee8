import pg from 'pg'

/** Where the PostgreSQL suites connect; trust auth on this machine and CI's. */
export const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** CI sets this, so a missing server fails the run instead of skipping. */
export const PG_REQUIRED = process.env.COTWEBHOOK_REQUIRE_POSTGRES === '1'

/**
 * Whether PostgreSQL answers. Without it the suites skip, saying how to run them, unless required.
 */
export async function postgresAvailable(suite: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2_000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch (error) {
    if (PG_REQUIRED) throw new Error(`${suite}: PostgreSQL is required (COTWEBHOOK_REQUIRE_POSTGRES=1) but ${PG_URL} did not answer`, { cause: error })
    console.warn(`${suite}: skipped, no PostgreSQL at ${PG_URL}; start one (or set COTWEBHOOK_PG_URL) to run it`)
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/** A fresh schema name for one test. */
export function schemaName(): string {
  return `cw_test_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`
}

export async function dropSchema(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

/**
 * Runs `work` with the URL of a database of its own (created now, dropped after), for a program that
 * takes `DATABASE_URL` as a user's would: the docs' runnable blocks, the packed tarball's guide.
 */
export async function withDatabase<T>(work: (url: string) => Promise<T>): Promise<T> {
  const database = `cw_db_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  const admin = new pg.Pool({ connectionString: PG_URL, max: 1 })
  try {
    await admin.query(`CREATE DATABASE ${database}`)
    const url = new URL(PG_URL)
    url.pathname = `/${database}`
    return await work(url.toString())
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {})
    await admin.end()
  }
}
