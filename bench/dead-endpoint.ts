/**
 * A dead endpoint with a backlog, on PostgreSQL: what the store writes while its circuit is open, and
 * how many requests it gets from three instances against one. Before endpoint state lived in the
 * store, every pending delivery was written back once per cool-down and each instance probed on its own.
 */
import pg from 'pg'
import { createNodeWebhooks } from 'cotwebhook/node'
import type { Webhooks } from 'cotwebhook'
import { fill, setup, type Setup } from './backlog.js'
import { quick, round, size, startReceiver, type Result } from './lib.js'

const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

type Receiver = Awaited<ReturnType<typeof startReceiver>>

/**
 * Rows of the deliveries table written per minute while the circuit of a webhook with 10,000 pending
 * deliveries (unordered, its endpoint answering 503) is open, against the same with the circuit
 * turned off. Target: fewer than 10 a minute.
 */
export async function deadEndpointWritesBench(): Promise<Result> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 8 })
  const receiver = await startReceiver()
  const pending = size(10_000, 1_000)
  const windowMs = size(60_000, 5_000)
  try {
    const open = await writesInWindow(pool, receiver, pending, windowMs, true)
    const off = await writesInWindow(pool, receiver, pending, windowMs, false)
    const perMinute = (n: number) => round((n * 60_000) / windowMs, 1)
    return {
      name: 'dead-endpoint-writes',
      value: perMinute(open.writes),
      unit: 'rows written/min',
      baseline: perMinute(off.writes),
      ratio: round(open.writes / Math.max(1, off.writes), 4),
      detail:
        `PostgreSQL, one webhook answering 503 with ${pending.toLocaleString('en')} pending deliveries (unordered), delivery rows written in ` +
        `${windowMs / 1000} s once its circuit opened: ${open.writes} (${open.requests} requests: the probes), against ${off.writes} ` +
        `(${off.requests} requests) with circuitBreaker: false${quick ? ' (retries 1 s apart)' : ''}`,
    }
  } finally {
    await receiver.stop()
    await pool.end()
  }
}

/**
 * Requests a dead endpoint gets per minute from three instances sharing one store, against one
 * instance, once its circuit is open (cool-down held at 1 s so the window sees many probes).
 * Target: ≤ 1.2×.
 */
export async function deadEndpointInstancesBench(): Promise<Result> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 12 })
  const receiver = await startReceiver()
  const windowMs = size(30_000, 5_000)
  try {
    const one = await requestsInWindow(pool, receiver, 1, windowMs)
    const three = await requestsInWindow(pool, receiver, 3, windowMs)
    const perMinute = (n: number) => round((n * 60_000) / windowMs, 1)
    return {
      name: 'dead-endpoint-instances',
      value: perMinute(three),
      unit: 'requests/min',
      baseline: perMinute(one),
      ratio: round(three / Math.max(1, one)),
      detail:
        `PostgreSQL, one webhook answering 503 with 1,000 pending deliveries, its circuit open (cool-down 1 s): ` +
        `${three} requests in ${windowMs / 1000} s from three engines on one store against ${one} from one`,
    }
  } finally {
    await receiver.stop()
    await pool.end()
  }
}

async function writesInWindow(pool: pg.Pool, receiver: Receiver, pending: number, windowMs: number, circuit: boolean) {
  const s = await setup(pool, `${receiver.url}/fail`)
  let hooks: Webhooks | undefined
  try {
    await fill(s, pending)
    await receiver.control('count')
    const opened = signal()
    hooks = createNodeWebhooks({
      store: s.store,
      ordering: 'none',
      allowPrivateNetworks: true,
      // Cotalker's schedule retries after 30 s: a quick run's short window needs retries within it.
      ...(quick ? { retry: { schedule: [1_000, 1_000] } } : {}),
      ...(circuit ? {} : { circuitBreaker: false as const }),
      on: { circuit: (e) => void (e.state === 'open' && opened.resolve()) },
    })
    // Without a circuit there is no moment it opens: start once as many attempts have failed as open one.
    if (circuit) await within(opened.promise, 60_000, 'the circuit to open')
    else while ((await receiver.stats()).count < 5) await sleep(5)
    // Let the attempts that were in flight when it opened settle.
    await sleep(1_000)
    const before = await rowVersions(s)
    const requestsBefore = (await receiver.stats()).count
    await sleep(windowMs)
    const after = await rowVersions(s)
    const requests = (await receiver.stats()).count - requestsBefore
    let writes = 0
    for (const [id, version] of after) if (before.get(id) !== version) writes++
    return { writes, requests }
  } finally {
    await hooks?.close()
    await s.drop()
  }
}

async function requestsInWindow(pool: pg.Pool, receiver: Receiver, instances: number, windowMs: number): Promise<number> {
  const s = await setup(pool, `${receiver.url}/fail`)
  const engines: Webhooks[] = []
  try {
    await fill(s, 1_000)
    await receiver.control('count')
    const opened = signal()
    for (let i = 0; i < instances; i++) {
      engines.push(
        createNodeWebhooks({
          store: s.store,
          ordering: 'none',
          allowPrivateNetworks: true,
          circuitBreaker: { cooldownMs: 1_000, maxCooldownMs: 1_000 },
          on: { circuit: (e) => void (e.state === 'open' && opened.resolve()) },
        }),
      )
    }
    await within(opened.promise, 60_000, 'the circuit to open')
    await sleep(1_000)
    const before = (await receiver.stats()).count
    await sleep(windowMs)
    return (await receiver.stats()).count - before
  } finally {
    await Promise.all(engines.map((hooks) => hooks.close()))
    await s.drop()
  }
}

/** Each delivery row's physical version: it changes whenever the row is written. */
async function rowVersions(s: Setup): Promise<Map<string, string>> {
  const { rows } = await s.pool.query<{ id: string; v: string }>(`SELECT id, ctid::text || ':' || xmin::text AS v FROM "${s.schema}".cotwebhook_deliveries`)
  return new Map(rows.map((row) => [row.id, row.v]))
}

function signal() {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

async function within(promise: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`dead-endpoint bench: waited ${ms} ms for ${what}`)), ms)))
  try {
    await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
