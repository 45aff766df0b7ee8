/**
 * The fleet job through cotwebhook, in a process of its own (see `bench/fleet/job.ts`): register the
 * webhooks on a fresh store, then emit the events from concurrent emitters while the engine delivers,
 * until the receiver has every delivery. Prints one JSON line: the time from the first emit to the
 * last arrival, and the SQL statements run (PostgreSQL).
 *
 * Environment: STORE=postgres|sqlite|memory, ORDERED=1|0, and the job's settings (job.ts; RATE runs
 * the latency variant, bench/fleet/paced.ts).
 */
import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { memoryStore, objectId, type Store } from 'cotwebhook'
import { createNodeWebhooks } from 'cotwebhook/node'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { COMPANY, jobSettings, taskEvent, waitForArrivals } from './job.js'
import { emitPaced, latencyOf } from './paced.js'

const job = jobSettings()
const kind = process.env.STORE ?? 'postgres'
const ordered = process.env.ORDERED === '1'

let statements = 0
const tally = new Map<string, number>()
let pool: pg.Pool | undefined
let dir: string | undefined
let store: Store & { migrate?: () => Promise<void>; close?: () => Promise<void> }
const schema = `cw_fleet_${objectId()}`
if (kind === 'postgres') {
  pool = new pg.Pool({ connectionString: job.pgUrl, max: 8 })
  // Every statement the store sends, counted at the driver.
  const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>
  ;(pool as unknown as { query: typeof query }).query = (...args: unknown[]) => {
    statements++
    if (process.env.TALLY) {
      const first = args[0] as string | { name: string }
      const key = typeof first === 'string' ? first.slice(0, 40) : first.name
      tally.set(key, (tally.get(key) ?? 0) + 1)
    }
    return query(...args)
  }
  store = postgresStore(pool, { schema })
} else if (kind === 'sqlite') {
  dir = mkdtempSync(join(tmpdir(), 'cotwebhook-fleet-'))
  store = sqliteStore(new Database(join(dir, 'fleet.db')))
} else store = memoryStore()
await store.migrate?.()
if (process.env.TALLY) {
  const enqueue = store.enqueue.bind(store)
  store.enqueue = async (input) => {
    const result = await enqueue(input)
    tally.set(`enqueue asked ${input.claim ? 'yes' : 'no'}`, (tally.get(`enqueue asked ${input.claim ? 'yes' : 'no'}`) ?? 0) + 1)
    tally.set('leased at emit', (tally.get('leased at emit') ?? 0) + (result.claimed?.length ?? 0))
    return result
  }
}

const hooks = createNodeWebhooks({
  store,
  concurrency: job.concurrency,
  ordering: ordered ? 'webhook' : 'none',
  allowPrivateNetworks: true,
  pollIntervalMs: 1_000,
  ...(process.env.DISPATCH === '0' ? { dispatch: false } : {}),
})
const groups: string[] = []
for (let i = 0; i < job.webhooks; i++) {
  const taskGroup = objectId()
  groups.push(taskGroup)
  await hooks.registry.create(COMPANY, { name: `w${i}`, code: `w${i}`, trigger: 'create-edit-delete-task', url: `${job.receiver}/w${i}`, context: { taskGroup } })
}

const total = job.total
// Resolves to the delivery's webhook-id (each event matches one webhook), for the latency variant.
const emit = async (n: number) => (await hooks.emit(taskEvent(n, groups[n % job.webhooks]!))).deliveries[0]!.id
const before = statements
const started = performance.now()
let next = 0
const emitter = async () => {
  while (next < total) await emit(next++)
}
const stamps = job.rate ? await emitPaced(job, emit) : void (await Promise.all(Array.from({ length: job.emitters }, emitter)))
const emittedMs = performance.now() - started
if (process.env.DISPATCH !== '0') await waitForArrivals(job.receiver, total)
const elapsedMs = performance.now() - started
const used = statements - before
const latency = stamps && (await latencyOf(job.receiver, stamps))

await hooks.close()
await store.close?.()
if (pool) {
  if (!process.env.KEEP_SCHEMA) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await pool.end()
}
if (dir && !process.env.KEEP_SCHEMA) rmSync(dir, { recursive: true, force: true })
if (dir && process.env.KEEP_SCHEMA) console.error(dir)
if (process.env.TALLY) console.error(Object.fromEntries(tally))
process.stdout.write(`${JSON.stringify({ system: `cotwebhook-${kind}`, ordered, deliveries: total, elapsedMs, emittedMs, statements: kind === 'postgres' ? used : undefined, latency })}\n`)
