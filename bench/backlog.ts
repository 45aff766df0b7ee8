/**
 * A webhook with a big backlog on PostgreSQL: the ordered drain rate with 100,000 deliveries open
 * against 1,000, and one claim's time with 1,000,000 open against 1,000. Before the per-webhook queues,
 * an ordered claim searched the webhook's backlog and slowed down with it.
 */
import pg from 'pg'
import { createWebhooks, objectId } from 'cotwebhook'
import { createNodeWebhooks } from 'cotwebhook/node'
import { postgresStore, type PostgresStore } from 'cotwebhook/postgres'
import { percentile, round, size, startReceiver, type Result } from './lib.js'

const COMPANY = '625be93a286ef83c1c0e845f'
const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A fresh schema holding one webhook to `url`. */
export interface Setup {
  pool: pg.Pool
  schema: string
  store: PostgresStore
  webhookId: string
  /** Drops the schema and closes the store (not the pool). */
  drop(): Promise<void>
}

export async function setup(pool: pg.Pool, url: string): Promise<Setup> {
  const schema = `cw_backlog_${objectId()}`
  const store = postgresStore(pool, { schema })
  await store.migrate()
  const hooks = createWebhooks({ store, dispatch: false, allowPrivateNetworks: true })
  const webhook = await hooks.registry.create(COMPANY, { name: 'big', code: 'big', trigger: 'create-edit-delete-task', url, context: {} })
  await hooks.close()
  return {
    pool,
    schema,
    store,
    webhookId: webhook.webhook._id,
    drop: async () => {
      await store.close()
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    },
  }
}

/**
 * Puts `count` open deliveries on the webhook: one emitted through the store, the rest copied from it
 * in one INSERT (emitting 1,000,000 events one by one would take the bench's whole budget). The copies
 * reach the queue the way an earlier release's inserts do, through the wake-up trigger, and are
 * counted into the queue by the next claim.
 */
export async function fill(s: Setup, count: number): Promise<void> {
  const hooks = createWebhooks({ store: s.store, dispatch: false, allowPrivateNetworks: true })
  const { deliveries } = await hooks.emit({ company: COMPANY, type: 'COTTask', event: 'create', data: { _id: COMPANY, taskGroup: COMPANY, notes: 'x'.repeat(800) } })
  await hooks.close()
  const table = `"${s.schema}".cotwebhook_deliveries`
  await s.pool.query(
    `INSERT INTO ${table} (id, company, webhook_id, event_id, state, attempts, response, created_at, updated_at, next_attempt_at)
     SELECT lpad(to_hex(g), 24, '0'), company, webhook_id, event_id, state, attempts, response, created_at + g, updated_at + g, next_attempt_at + g
     FROM ${table} d, generate_series(1, $2::int) g WHERE d.id = $1`,
    [deliveries[0]!.id, count - 1],
  )
  // What autovacuum would have done by the time a real backlog of this size had built up.
  await s.pool.query(`ANALYZE ${table}`)
}

/**
 * Drain rate of the first 1,000 deliveries of one ordered webhook (one request in flight at a time),
 * with 100,000 open against 1,000 open. Target: ≥ 0.8.
 */
export async function backlogDrainBench(): Promise<Result> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 8 })
  const receiver = await startReceiver()
  const first = size(1_000, 200)
  const sizes = [first, size(100_000, 5_000)] as const
  const rounds = size(3, 1)
  const rates: [number[], number[]] = [[], []]
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [i, open] of sizes.entries()) {
        const s = await setup(pool, `${receiver.url}/big`)
        try {
          await fill(s, open)
          await receiver.control('count')
          const started = performance.now()
          const hooks = createNodeWebhooks({ store: s.store, allowPrivateNetworks: true, pollIntervalMs: 1_000 })
          await arrivals(receiver, first)
          rates[i]!.push(first / ((performance.now() - started) / 1000))
          await hooks.close()
        } finally {
          await s.drop()
        }
      }
    }
  } finally {
    await receiver.stop()
    await pool.end()
  }
  const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!
  const [small, large] = [median(rates[0]), median(rates[1])]
  return {
    name: 'backlog-drain',
    value: round(large, 0),
    unit: 'deliveries/s',
    baseline: round(small, 0),
    ratio: round(large / small),
    detail:
      `PostgreSQL, one ordered webhook, the first ${first.toLocaleString('en')} deliveries drained with ${sizes[1].toLocaleString('en')} open ` +
      `against ${sizes[0].toLocaleString('en')} open, median of ${rounds} rounds (runs: ${rates[1].map((x) => Math.round(x)).join(', ')} vs ${rates[0].map((x) => Math.round(x)).join(', ')})`,
  }
}

/**
 * One claim (and the settle that hands the head on, not timed) at 1,000,000 open deliveries on one
 * webhook, against 1,000 open: median time of the ordered claim, and the unordered one beside it.
 * Target: under 5 ms.
 */
export async function backlogClaimBench(): Promise<Result> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 8 })
  const sizes = [1_000, size(1_000_000, 20_000)] as const
  const samples = size(200, 30)
  const figures: Record<string, { p50: number; p99: number }> = {}
  try {
    for (const open of sizes) {
      const s = await setup(pool, 'http://127.0.0.1:9/never-called')
      try {
        await fill(s, open)
        for (const ordered of [true, false]) {
          // The first claim counts the copied rows into the queue: set-up, not the figure.
          await claimAndSettle(s, ordered)
          const times: number[] = []
          for (let i = 0; i < samples; i++) times.push(await claimAndSettle(s, ordered))
          times.sort((a, b) => a - b)
          figures[`${open}/${ordered}`] = { p50: round(percentile(times, 50), 3), p99: round(percentile(times, 99), 3) }
        }
      } finally {
        await s.drop()
      }
    }
  } finally {
    await pool.end()
  }
  const [small, large] = sizes.map((open) => figures[`${open}/true`]!)
  const unordered = sizes.map((open) => figures[`${open}/false`]!)
  return {
    name: 'backlog-claim',
    value: large!.p50,
    unit: 'ms (p50)',
    baseline: small!.p50,
    ratio: round(large!.p50 / small!.p50),
    detail:
      `PostgreSQL, one webhook, store.claim() with ${sizes[1].toLocaleString('en')} open against ${sizes[0].toLocaleString('en')} open, ${samples} claims each: ` +
      `ordered p50 ${large!.p50} ms / p99 ${large!.p99} ms against ${small!.p50} / ${small!.p99} ms; ` +
      `unordered p50 ${unordered[1]!.p50} / p99 ${unordered[1]!.p99} ms against ${unordered[0]!.p50} / ${unordered[0]!.p99} ms`,
  }
}

let clock = Date.now()

/** Times one claim of one delivery, then settles it as delivered so the next claim finds the next head. */
async function claimAndSettle(s: Setup, ordered: boolean): Promise<number> {
  const now = (clock += 1)
  const started = performance.now()
  const [claimed] = await s.store.claim({ now: now + 10_000_000_000, limit: 1, leaseMs: 60_000, owner: 'bench', ordered })
  const took = performance.now() - started
  if (!claimed) throw new Error('backlog bench: the claim found nothing')
  await s.store.settle(claimed.lease, { now: now + 10_000_000_000, state: 'succeeded', response: 'ok' })
  return took
}

/** Resolves once the receiver has counted `total` requests. */
async function arrivals(receiver: Awaited<ReturnType<typeof startReceiver>>, total: number): Promise<void> {
  const deadline = Date.now() + 600_000
  while ((await receiver.stats()).count < total) {
    if (Date.now() > deadline) throw new Error(`backlog bench: fewer than ${total} deliveries arrived in 10 minutes`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

