import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import pg from 'pg'
import { createWebhooks, memoryStore, objectId, type Store, type Webhooks, type WebhooksOptions } from 'cotwebhook'
import { nodeSigner, nodeTransport } from 'cotwebhook/node'
import { postgresStore } from 'cotwebhook/postgres'
import { userEvent } from './dispatch.js'
import { percentile, quick, round, size, startReceiver, until, wallNow, type Result } from './lib.js'

/**
 * Noisy neighbours: one company's hanging or flooding webhooks beside another company's healthy one,
 * on one engine and one store. Each figure is the healthy company's emit-to-arrival p99 beside the
 * trouble against its p99 alone, measured in the same run; and the fairness machinery's cost for a
 * single tenant (its throughput with the defaults against the same engine with them turned off).
 */

const HEALTHY = '625be93a286ef83c1c0e8450'
const NOISY = '625be93a286ef83c1c0e8451'
// The quiet company's events per second: enough samples for a p99 that is not just the slowest one.
const QUIET_RATE = 20
const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

type Receiver = Awaited<ReturnType<typeof startReceiver>>

const taskEvent = (company: string, taskGroup: string, n: number) =>
  ({ company, type: 'COTTask' as const, event: 'edit' as const, data: { _id: company, taskGroup, n, note: 'x'.repeat(400) } })

/** Calls `send(i)` `perSecond` times a second, not waiting for one to finish before the next is due. */
async function paced(count: number, perSecond: number, send: (i: number) => Promise<void>): Promise<void> {
  const start = performance.now()
  const pending: Promise<void>[] = []
  for (let i = 0; i < count; i++) {
    const wait = start + (i * 1000) / perSecond - performance.now()
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    pending.push(send(i))
  }
  await Promise.all(pending)
}

/** The healthy company's stream: one webhook, `perSecond` events for `seconds`; latencies, sorted. */
async function healthyStream(hooks: ReturnType<typeof createWebhooks>, receiver: Receiver, perSecond: number, seconds: number): Promise<number[]> {
  return (await healthySamples(hooks, receiver, perSecond, seconds)).map((s) => s.latency).sort((a, b) => a - b)
}

/**
 * The same stream's samples: when each emit returned (wall clock), its emit-to-arrival latency, and
 * its emit-to-wire latency: until undici wrote the request's headers to the socket (its
 * `undici:client:sendHeaders` channel). The wire time is the engine's share; what follows it is the
 * kernel and the receiver's process getting a core, which on a 2-core machine it shares with the
 * engine and the noisy receiver.
 */
async function healthySamples(hooks: ReturnType<typeof createWebhooks>, receiver: Receiver, perSecond: number, seconds: number): Promise<{ at: number; latency: number; wire: number }[]> {
  const group = objectId()
  await hooks.registry.create(HEALTHY, { name: 'healthy', code: `healthy_${group}`, trigger: 'create-edit-delete-task', url: `${receiver.url}/healthy`, context: { taskGroup: group } })
  const returnedAt = new Map<string, number>()
  const wroteAt = new Map<string, number>()
  const wrote = (message: unknown) => {
    const { headers } = message as { headers: string }
    const id = headers.startsWith('POST /healthy ') ? /\r\nwebhook-id: ([^\r]+)\r\n/.exec(headers)?.[1] : undefined
    if (id !== undefined) wroteAt.set(id, wallNow())
  }
  subscribe('undici:client:sendHeaders', wrote)
  try {
    await paced(perSecond * seconds, perSecond, async (i) => {
      const { deliveries } = await hooks.emit(taskEvent(HEALTHY, group, i))
      returnedAt.set(deliveries[0]!.id, wallNow())
    })
    await until(async () => Object.keys((await receiver.stats()).arrivals).length >= returnedAt.size, 30_000, 'the healthy deliveries')
  } finally {
    unsubscribe('undici:client:sendHeaders', wrote)
  }
  const arrivals = (await receiver.stats()).arrivals
  return [...returnedAt].map(([id, at]) => {
    const written = wroteAt.get(id)
    if (written === undefined) throw new Error(`bench: no request of delivery ${id} seen on undici's sendHeaders channel`)
    return { at, latency: arrivals[id]! - at, wire: written - at }
  })
}

/** The median of several rounds' percentiles. */
const medianOf = (rounds: number[][], p: number) => round(rounds.map((r) => percentile(r, p)).sort((a, b) => a - b)[Math.floor(rounds.length / 2)]!, 2)

/**
 * A healthy webhook at 100 events/s beside never-answering ones (memory store, `cotwebhook/node`,
 * 32 send slots, `timeoutMs` 5000): 40 ordered webhooks with 2 events each, and one unordered webhook
 * with 64; each against the healthy webhook alone with the same ordering, rounds interleaved.
 */
export async function hangingBench(): Promise<Result[]> {
  const healthy = await startReceiver()
  const dead = await startReceiver()
  const seconds = size(8, 2)
  const rounds = size(3, 1)
  const cases = [
    { name: 'neighbours-hanging', ordering: 'webhook' as const, webhooks: 40, each: 2, text: '40 never-answering ordered webhooks, 2 events each' },
    { name: 'neighbours-hanging-unordered', ordering: 'none' as const, webhooks: 1, each: 64, text: "one never-answering webhook with 64 deliveries, ordering: 'none'" },
  ]
  const results: Result[] = []
  try {
    const samples = new Map<string, { alone: number[][]; beside: number[][] }>(cases.map((c) => [c.name, { alone: [], beside: [] }]))
    for (let r = 0; r < rounds; r++) {
      for (const c of cases) {
        const s = samples.get(c.name)!
        s.alone.push(await hangingRound(healthy, dead, c.ordering, 0, 0, seconds))
        s.beside.push(await hangingRound(healthy, dead, c.ordering, c.webhooks, c.each, seconds))
      }
    }
    for (const c of cases) {
      const { alone, beside } = samples.get(c.name)!
      const p99 = medianOf(beside, 99)
      const base = medianOf(alone, 99)
      results.push({
        name: c.name, value: p99, unit: 'ms (p99)', baseline: base, ratio: round(p99 / base),
        detail: `healthy webhook at 100 events/s for ${seconds} s beside ${c.text} (memory store, 32 slots, timeoutMs 5000), median of ${rounds} interleaved rounds: ` +
          `p50 ${medianOf(beside, 50)} ms, p99 ${p99} ms (rounds: ${beside.map((x) => round(percentile(x, 99), 1)).join(', ')}); alone p50 ${medianOf(alone, 50)} ms, p99 ${base} ms`,
      })
    }
    return results
  } finally {
    await healthy.stop()
    await dead.stop()
  }
}

async function hangingRound(healthy: Receiver, dead: Receiver, ordering: 'webhook' | 'none', webhooks: number, each: number, seconds: number): Promise<number[]> {
  await healthy.control('record')
  const transport = nodeTransport({ connections: 64, allowPrivateNetworks: true })
  const hooks = createWebhooks({ store: memoryStore(), ordering, timeoutMs: 5_000, transport, signer: nodeSigner(), allowPrivateNetworks: true, pollIntervalMs: 0 })
  try {
    for (let w = 0; w < webhooks; w++) {
      const group = objectId()
      await hooks.registry.create(NOISY, { name: `dead${w}`, code: `dead${w}`, trigger: 'create-edit-delete-task', url: `${dead.url}/hang/${w}`, context: { taskGroup: group } })
      for (let n = 0; n < each; n++) await hooks.emit(taskEvent(NOISY, group, n))
    }
    // Measured once the hanging attempts are under way (and after the same second alone), as the flood
    // is: the emits above never wait for I/O on the memory store, so every connection they asked for
    // opens at once after them, and without the wait the healthy stream's first 100 ms measure that one
    // burst. The timeouts and retries of the hanging attempts fall inside the window.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    return await healthyStream(hooks, healthy, 100, seconds)
  } finally {
    await hooks.close()
    await transport.close()
  }
}

/**
 * One company floods 100,000 events over 64 webhooks (8 emitters, as fast as they go) while another
 * emits 20 events/s to one webhook: the second company's p99 during the flood against its p99 alone,
 * on the memory store and on PostgreSQL (ordered, the default; separate receivers, so the figure is
 * the engine's and the store's, not a shared receiver's). The emitters rarely get ahead of the
 * deliveries, so each store is measured with the flood as a backlog too: emitted before the delivering
 * engine starts, and drained while the quiet company emits.
 */
export async function floodBench(): Promise<Result[]> {
  const results: Result[] = []
  results.push(await floodOn('neighbours-flood', 'memory store', async () => ({ store: memoryStore(), done: async () => {} })))
  results.push(await floodOn('neighbours-backlog', 'memory store', async () => ({ store: memoryStore(), done: async () => {} }), true))
  const pool = new pg.Pool({ connectionString: PG_URL, max: 8, connectionTimeoutMillis: 2_000 })
  try {
    await pool.query('SELECT 1')
  } catch (error) {
    console.warn(`neighbours-flood-postgres skipped: ${(error as Error).message}`)
    await pool.end()
    return results
  }
  const openPostgres = async () => {
    const schema = `cw_bench_${objectId()}`
    const store = postgresStore(pool, { schema })
    await store.migrate()
    return { store, done: async () => void (await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)) }
  }
  try {
    results.push(await floodOn('neighbours-flood-postgres', 'PostgreSQL', openPostgres))
    results.push(await floodOn('neighbours-backlog-postgres', 'PostgreSQL', openPostgres, true))
  } finally {
    await pool.end()
  }
  return results
}

async function floodOn(name: string, label: string, open: () => Promise<{ store: Store; done: () => Promise<void> }>, backlog = false): Promise<Result> {
  const quiet = await startReceiver()
  const noisy = await startReceiver()
  const seconds = size(15, 3)
  // The smoke's flood must outlast the wait below, or no quiet event counts.
  const events = size(100_000, 10_000)
  const rounds = size(3, 1)
  try {
    const alone: Awaited<ReturnType<typeof floodRound>>[] = []
    const beside: Awaited<ReturnType<typeof floodRound>>[] = []
    // Rounds take turns at going first: whatever the machine is doing meanwhile falls on both sides.
    for (let r = 0; r < rounds; r++) {
      if (r % 2) beside.push(await floodRound(quiet, noisy, open, events, seconds, backlog))
      alone.push(await floodRound(quiet, noisy, open, 0, seconds))
      if (!(r % 2)) beside.push(await floodRound(quiet, noisy, open, events, seconds, backlog))
    }
    const during = beside.map((b) => b.latencies)
    const p99 = medianOf(during, 99)
    const base = medianOf(alone.map((a) => a.latencies), 99)
    const wire = (runs: typeof beside) => `p50 ${medianOf(runs.map((r) => r.wire), 50)} ms, p99 ${medianOf(runs.map((r) => r.wire), 99)} ms`
    const last = beside[beside.length - 1]!
    return {
      name, value: p99, unit: 'ms (p99)', baseline: base, ratio: round(p99 / base),
      detail: `${label}: a company emitting ${QUIET_RATE} events/s while another ${backlog ? 'has a backlog of' : 'floods'} ${events.toLocaleString('en')} events over 64 ordered webhooks${backlog ? ' (emitted through an engine that does not deliver, then drained by one that does)' : ''}, ` +
        `counting only the quiet company's events emitted before the flood's last delivery (${beside.map((b) => b.latencies.length).join(', ')} of them; ` +
        `the flood took ${beside.map((b) => round(b.floodMs / 1000, 1)).join(', ')} s${last.delivered < events ? `; in the last, ${last.flooded.toLocaleString('en')} emitted and ${last.delivered.toLocaleString('en')} delivered by the window's end` : ''}), ` +
        `median of ${rounds} interleaved rounds: p50 ${medianOf(during, 50)} ms, p99 ${p99} ms (rounds: ${during.map((x) => round(percentile(x, 99), 1)).join(', ')}); ` +
        `alone p50 ${medianOf(alone.map((a) => a.latencies), 50)} ms, p99 ${base} ms (rounds: ${alone.map((a) => round(percentile(a.latencies, 99), 1)).join(', ')}); ` +
        `of which the engine's share, from the emit to the request's headers on the wire: ${wire(beside)} (alone ${wire(alone)})`,
    }
  } finally {
    await quiet.stop()
    await noisy.stop()
  }
}

/**
 * One round: with `events` the flood starts a second before the quiet company's stream, and only the
 * quiet events emitted while the flood still had undelivered events count (once it is delivered, the
 * rest of the window measures an idle engine); without, the quiet stream alone. With `backlog`, the
 * flood is in the store before the delivering engine starts: emitted through an engine that does not
 * deliver, so the window measures the drain of a backlog ahead of the quiet company, not the host's emits.
 */
async function floodRound(quiet: Receiver, noisy: Receiver, open: () => Promise<{ store: Store; done: () => Promise<void> }>, events: number, seconds: number, backlog = false) {
  await quiet.control('record')
  await noisy.control('count')
  const { store, done } = await open()
  const transport = nodeTransport({ connections: 64, allowPrivateNetworks: true })
  const options: WebhooksOptions = { store, transport, signer: nodeSigner(), allowPrivateNetworks: true, pollIntervalMs: quick ? 100 : 1_000 }
  const groups = Array.from({ length: 64 }, () => objectId())
  const register = async (engine: Webhooks) => {
    for (const [w, taskGroup] of groups.entries()) {
      await engine.registry.create(NOISY, { name: `flood${w}`, code: `flood${w}`, trigger: 'create-edit-delete-task', url: `${noisy.url}/flood/${w}`, context: { taskGroup } })
    }
  }
  const feeder = backlog && events ? createWebhooks({ ...options, dispatch: false }) : undefined
  let flooded = 0
  if (feeder) {
    try {
      await register(feeder)
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (flooded < events) {
          const n = flooded++
          await feeder.emit(taskEvent(NOISY, groups[n % groups.length]!, n))
        }
      }))
    } finally {
      await feeder.close()
    }
  }
  const hooks = createWebhooks(options)
  let stop = false
  try {
    if (!feeder) await register(hooks)
    const emitter = async () => {
      while (!stop && flooded < events) {
        const n = flooded++
        await hooks.emit(taskEvent(NOISY, groups[n % groups.length]!, n))
        // Emits come from the host's requests, each a turn of the event loop: a loop that never yields
        // would measure its own hold on the event loop, not the engine's fairness.
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    const started = wallNow()
    let floodEnd = Number.POSITIVE_INFINITY
    const flood = Promise.all(Array.from({ length: events ? 8 : 0 }, emitter)).then(async () => {
      if (!events) return
      // The receiver's count, asked every 50 ms: the end is known to within that.
      while (!stop && (await noisy.stats()).count < flooded) await new Promise((resolve) => setTimeout(resolve, 50))
      floodEnd = wallNow()
    })
    // Measured once the flood is under way (and after the same second alone): a p99 of a few hundred
    // samples, not the engine's first second.
    await new Promise((resolve) => setTimeout(resolve, size(1_000, 200)))
    const samples = await healthySamples(hooks, quiet, QUIET_RATE, seconds)
    stop = true
    await flood
    const delivered = (await noisy.stats()).count
    const counted = samples.filter((s) => s.at < floodEnd)
    const latencies = counted.map((s) => s.latency).sort((a, b) => a - b)
    const wire = counted.map((s) => s.wire).sort((a, b) => a - b)
    return { latencies, wire, flooded: Math.min(flooded, events), delivered, floodMs: Math.min(floodEnd, wallNow()) - started }
  } finally {
    await hooks.close()
    await transport.close()
    await done()
  }
}

/**
 * What the fairness machinery costs one tenant: deliveries per second to 64 webhooks of one company
 * (memory store, as the dispatch bench) with the defaults (a webhook's share of the send slots, the
 * slow lane, company turns) against the same engine with the share at every slot and no slow lane,
 * after a warm-up run of each. Seven rounds, each a pair run back to back (taking turns at going
 * first); the ratio is the median of the pairs' ratios: this machine's speed drifts by a third between
 * minutes, and a pair shares the minute. The engine's CPU time per delivery is reported beside it.
 * Company turns cannot be turned off; with one company they do no work beyond a lookup.
 */
export async function fairnessCostBench(): Promise<Result[]> {
  const receiver = await startReceiver()
  const total = size(24_000, 640)
  const rounds = size(7, 1)
  const withoutFairness: Partial<WebhooksOptions> = { rateLimit: { webhookConcurrency: 64 }, slowLane: false }
  try {
    const results: Result[] = []
    for (const ordering of ['none', 'webhook'] as const) {
      const on: Run[] = []
      const off: Run[] = []
      await singleTenantRun(receiver, total, ordering, {})
      await singleTenantRun(receiver, total, ordering, withoutFairness)
      for (let r = 0; r < rounds; r++) {
        const first = r % 2 === 0
        if (first) on.push(await singleTenantRun(receiver, total, ordering, {}))
        off.push(await singleTenantRun(receiver, total, ordering, withoutFairness))
        if (!first) on.push(await singleTenantRun(receiver, total, ordering, {}))
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
      const pairs = on.map((run, r) => run.rate / off[r]!.rate)
      const cpu = (runs: Run[]) => round(median(runs.map((run) => run.cpuUs)), 1)
      results.push({
        name: ordering === 'none' ? 'fairness-cost' : 'fairness-cost-ordered', value: Math.round(median(on.map((run) => run.rate))), unit: 'deliveries/s',
        baseline: Math.round(median(off.map((run) => run.rate))), ratio: round(median(pairs), 3),
        detail: `${total.toLocaleString('en')} deliveries to 64 webhooks of one company, ordering: '${ordering}', ${rounds} rounds of a pair: defaults ` +
          `(${on.map((run) => Math.round(run.rate)).join(', ')}/s) vs webhookConcurrency 64 and slowLane false (${off.map((run) => Math.round(run.rate)).join(', ')}/s), ` +
          `pair ratios ${pairs.map((x) => round(x, 3)).join(', ')}, median ${round(median(pairs), 3)}; engine CPU per delivery ${cpu(on)} µs vs ${cpu(off)} µs`,
      })
    }
    return results
  } finally {
    await receiver.stop()
  }
}

/** One single-tenant run: deliveries per second, and this process's CPU time per delivery. */
interface Run {
  rate: number
  cpuUs: number
}

async function singleTenantRun(receiver: Receiver, total: number, ordering: 'none' | 'webhook', fairness: Partial<WebhooksOptions>): Promise<Run> {
  await receiver.control('count')
  const transport = nodeTransport({ connections: 64, allowPrivateNetworks: true })
  const hooks = createWebhooks({ store: memoryStore(), concurrency: 64, ordering, transport, signer: nodeSigner(), allowPrivateNetworks: true, pollIntervalMs: 0, ...fairness })
  const company = userEvent(0).company
  for (let i = 0; i < 64; i++) {
    await hooks.registry.create(company, { name: `w${i}`, code: `w${i}`, trigger: 'create-edit-delete-user', url: `${receiver.url}/w${i}` })
  }
  const start = performance.now()
  const cpu = process.cpuUsage()
  for (let n = 0; n < total / 64; n++) await hooks.emit(userEvent(n))
  await hooks.drain()
  const used = process.cpuUsage(cpu)
  const rate = total / ((performance.now() - start) / 1000)
  await hooks.close()
  await transport.close()
  return { rate, cpuUs: (used.user + used.system) / total }
}
