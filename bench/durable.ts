import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { createWebhooks, objectId, type Store } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { round, size, type Result } from './lib.js'

const COMPANY = '625be93a286ef83c1c0e845f'
const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const event = (n: number) => ({ company: COMPANY, type: 'COTUser' as const, event: 'edit' as const, data: { _id: COMPANY, n, bio: 'x'.repeat(800) } })

/**
 * Events per second enqueued through each SQL store by emit() (one matching webhook; delivery left
 * to another instance), against a raw loop of the same INSERTs with the same driver: one transaction
 * per event writing the event row and its delivery row.
 */
export async function durableBench(): Promise<Result[]> {
  const results = [await sqliteBench()]
  const postgres = await postgresBench().catch((error: unknown) => {
    console.warn(`durable-postgres skipped: ${(error as Error).message}`)
    return undefined
  })
  if (postgres) results.push(postgres)
  return results
}

async function emitRate(store: Store, n: number): Promise<number> {
  const hooks = createWebhooks({ store, dispatch: false, pollIntervalMs: 0 })
  await hooks.registry.create(COMPANY, { name: 'users', code: 'users', trigger: 'create-edit-delete-user', url: 'https://example.com/hook' })
  await hooks.emit(event(-1)) // warm
  const start = performance.now()
  for (let i = 0; i < n; i++) await hooks.emit(event(i))
  const rate = n / ((performance.now() - start) / 1000)
  await hooks.close()
  return rate
}

async function sqliteBench(): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'cotwebhook-bench-'))
  const n = size(5_000, 200)
  try {
    const store = sqliteStore(join(dir, 'engine.db'))
    await store.migrate()
    const engine = await emitRate(store, n)
    await store.close()

    const rawPath = join(dir, 'raw.db')
    const schema = sqliteStore(rawPath)
    await schema.migrate()
    await schema.close()
    const db = new Database(rawPath)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    const insertEvent = db.prepare('INSERT INTO cotwebhook_events (id, company, body, created_at) VALUES (?, ?, ?, ?)')
    const insertDelivery = db.prepare(`INSERT INTO cotwebhook_deliveries
      (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
      VALUES (?, ?, ?, ?, 'pending', '[]', NULL, '', ?, ?, ?)`)
    const webhookId = objectId()
    const start = performance.now()
    for (let i = 0; i < n; i++) {
      const now = Date.now()
      const eventId = objectId()
      db.exec('BEGIN IMMEDIATE')
      insertEvent.run(eventId, COMPANY, JSON.stringify({ ...event(i), diff: {}, extraData: null, createdAt: new Date(now).toISOString() }), now)
      insertDelivery.run(objectId(), COMPANY, webhookId, eventId, now, now, now)
      db.exec('COMMIT')
    }
    const raw = n / ((performance.now() - start) / 1000)
    db.close()
    return {
      name: 'durable-sqlite', value: Math.round(engine), unit: 'events/s', baseline: Math.round(raw), ratio: round(engine / raw),
      detail: `${n.toLocaleString('en')} sequential emit() into a WAL file (better-sqlite3) vs the same two INSERTs in a transaction per event`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function postgresBench(): Promise<Result> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4, connectionTimeoutMillis: 2_000 })
  const schemas = [`cw_bench_${objectId()}`, `cw_bench_${objectId()}`]
  const n = size(2_000, 100)
  try {
    const store = postgresStore(pool, { schema: schemas[0] })
    await store.migrate()
    const engine = await emitRate(store, n)
    await postgresStore(pool, { schema: schemas[1] }).migrate()
    const t = `"${schemas[1]}".cotwebhook`
    const webhookId = objectId()
    const start = performance.now()
    for (let i = 0; i < n; i++) {
      const now = Date.now()
      const eventId = objectId()
      const client = await pool.connect()
      await client.query('BEGIN')
      await client.query(`INSERT INTO ${t}_events (id, company, body, created_at) VALUES ($1, $2, $3, $4)`, [
        eventId, COMPANY, { ...event(i), diff: {}, extraData: null, createdAt: new Date(now).toISOString() }, now,
      ])
      await client.query(
        `INSERT INTO ${t}_deliveries (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, 'pending', '[]'::jsonb, NULL, '', $5, $5, $5)`,
        [objectId(), COMPANY, webhookId, eventId, now],
      )
      await client.query('COMMIT')
      client.release()
    }
    const raw = n / ((performance.now() - start) / 1000)
    return {
      name: 'durable-postgres', value: Math.round(engine), unit: 'events/s', baseline: Math.round(raw), ratio: round(engine / raw),
      detail: `${n.toLocaleString('en')} sequential emit() (pg.Pool) vs the same two INSERTs in a transaction per event`,
    }
  } finally {
    for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {})
    await pool.end()
  }
}
