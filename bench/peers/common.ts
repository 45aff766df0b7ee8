/**
 * What the three peer workers (graphile-worker, pg-boss, BullMQ) share, so that each differs from the
 * others and from cotwebhook only in the queue: the webhooks the app keeps, the Standard Webhooks
 * signature, the undici pool the deliveries go through, the emit loop, the statement count and the
 * JSON line each prints. It is the code a user would write around a job queue to send webhooks.
 *
 * These scripts live in bench/peers/ (not bench/fleet/) so that Node's and TypeScript's module
 * resolution find the peers in bench/peers/node_modules without NODE_PATH (which ESM ignores).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { Agent, request } from 'undici'

import { jobSettings, taskEvent, waitForArrivals } from '../fleet/job.js'
import { emitPaced, latencyOf, type Latency } from '../fleet/paced.js'

export { jobSettings, waitForArrivals }

/** What the app puts in one job: everything the worker needs to send one delivery. */
export interface DeliveryJob {
  /** The webhook's index, to find its signing key (secrets stay out of the job table). */
  webhook: number
  /** The Standard Webhooks message id, fixed at emit so that a retry is recognisable as the same message. */
  id: string
  url: string
  /** The exact JSON sent and signed, fixed at emit so that every attempt signs the same bytes. */
  body: string
  /** The event number, sent as `x-seq` when CHECK_ORDER=1 so the receiver can record arrival order. */
  n: number
}

/** The app's webhooks: one endpoint on the receiver and one signing key each. */
export function webhookTargets(receiver: string, count: number) {
  return Array.from({ length: count }, (_, i) => ({
    url: `${receiver}/w${i}`,
    // A whsec_ secret decoded once, as a user's app would keep it (cotwebhook's node signer does the same).
    key: randomBytes(24),
  }))
}

/**
 * The app's side of an emit: event `n` matches webhook `n mod webhooks` (as cotwebhook's matcher finds
 * in bench/fleet/cotwebhook.ts, where webhook i's context is taskGroup i), rendered once.
 */
export function deliveryFor(n: number, targets: ReturnType<typeof webhookTargets>): DeliveryJob {
  const webhook = n % targets.length
  // taskGroup only needs to differ per webhook here: the app has already matched the event.
  return { webhook, id: `msg_${randomUUID()}`, url: targets[webhook]!.url, body: JSON.stringify(taskEvent(n, `w${webhook}`)), n }
}

/**
 * The worker's side: sign (Standard Webhooks: HMAC-SHA256 of `id.timestamp.body`, base64, `v1,`
 * prefix) and POST through one keep-alive pool sized to the concurrency, as cotwebhook's node transport
 * does; a non-2xx answer throws so that the queue retries the job.
 */
export function deliverer(targets: ReturnType<typeof webhookTargets>, connections: number) {
  const agent = new Agent({ connections, keepAliveTimeout: 10_000, connect: { timeout: 10_000 } })
  const sequence = process.env.CHECK_ORDER === '1'
  async function deliver(job: DeliveryJob): Promise<void> {
    const timestamp = Math.floor(Date.now() / 1000)
    const signature = createHmac('sha256', targets[job.webhook]!.key).update(`${job.id}.${timestamp}.${job.body}`).digest('base64')
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'webhook-id': job.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': `v1,${signature}`,
    }
    if (sequence) headers['x-seq'] = String(job.n)
    const response = await request(job.url, { method: 'POST', headers, body: job.body, dispatcher: agent, headersTimeout: 15_000, bodyTimeout: 15_000 })
    // Nothing of the answer is kept: drain it so the connection goes back to the pool.
    await response.body.dump()
    if (response.statusCode < 200 || response.statusCode >= 300) throw new Error(`${job.url} answered ${response.statusCode}`)
  }
  return { deliver, close: () => agent.close() }
}

/**
 * Counts every statement any pg client in this process sends, at `Client#query`: the peers run their
 * queries on pooled clients they check out themselves (`pool.connect()`), which a wrapper around
 * `Pool#query` (as bench/fleet/cotwebhook.ts uses for cotwebhook, whose hot path is `pool.query`) would
 * not see. Call it before the peer makes its pool. It counts only if the peer uses this same `pg` (npm
 * dedupes it in bench/peers); if not, the count stays 0 and the scripts report `undefined`.
 * With TALLY=1, `tally()` writes the most frequent statements (their first 70 characters) to stderr.
 */
export function countStatements() {
  let statements = 0
  const byText = new Map<string, number>()
  const tallying = process.env.TALLY === '1'
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }
  const query = proto.query
  proto.query = function counted(this: unknown, ...args: unknown[]) {
    statements++
    if (tallying) {
      const first = args[0] as string | { text?: string; name?: string }
      const text = (typeof first === 'string' ? first : (first.text ?? first.name ?? '?')).replace(/\s+/g, ' ').trim().slice(0, 70)
      byText.set(text, (byText.get(text) ?? 0) + 1)
    }
    return query.apply(this, args)
  }
  return {
    read: () => statements,
    tally() {
      if (!tallying) return
      for (const [text, n] of [...byText].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stderr.write(`${String(n).padStart(7)}  ${text}\n`)
    },
  }
}

/**
 * The emit loop of bench/fleet/cotwebhook.ts: `emitters` concurrent callers each taking the next
 * event number and awaiting one emit (one job added) before taking another.
 */
export async function emitAll(total: number, emitters: number, emit: (n: number) => Promise<unknown>): Promise<undefined> {
  let next = 0
  const emitter = async () => {
    while (next < total) await emit(next++)
  }
  await Promise.all(Array.from({ length: emitters }, emitter))
  return undefined
}

/**
 * With CHECK_ORDER=1: switches the receiver to recording arrival times by `x-seq` (this resets its
 * count, so call it before the run starts).
 */
export async function startOrderCheck(receiver: string): Promise<void> {
  if (process.env.CHECK_ORDER !== '1') return
  await (await fetch(`${receiver}/control/record`, { method: 'POST' })).text()
}

/**
 * With CHECK_ORDER=1: how many deliveries arrived before an earlier event of the same webhook (0 when
 * each webhook's events arrived in emit order), written to stderr. Arrival times are recorded when the
 * request starts, so concurrent deliveries of one webhook (unordered runs) show up as inversions.
 */
export async function reportOrder(receiver: string, webhooks: number): Promise<void> {
  if (process.env.CHECK_ORDER !== '1') return
  const { arrivals } = (await (await fetch(`${receiver}/stats`)).json()) as { arrivals: Record<string, number> }
  const byWebhook = new Map<number, Array<[number, number]>>()
  for (const [seq, at] of Object.entries(arrivals)) {
    const n = Number(seq)
    const list = byWebhook.get(n % webhooks) ?? []
    list.push([n, at])
    byWebhook.set(n % webhooks, list)
  }
  let inversions = 0
  for (const list of byWebhook.values()) {
    list.sort((a, b) => a[1] - b[1])
    for (let i = 1; i < list.length; i++) if (list[i]![0] < list[i - 1]![0]) inversions++
  }
  process.stderr.write(`order check: ${inversions} deliveries arrived before an earlier event of their webhook\n`)
}

/** The fleet job's result line (the same shape bench/fleet/cotwebhook.ts prints); `latency` with RATE set. */
export function printResult(result: { system: string; ordered: boolean; deliveries: number; elapsedMs: number; emittedMs: number; statements: number | undefined; latency?: Latency | undefined }): void {
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

/**
 * The measured part of every peer's run, as bench/fleet/cotwebhook.ts does it for cotwebhook: emit
 * (all at once from the emitters, or paced with RATE set) until the receiver has every delivery, then
 * print the result line, with the statements `counter` saw when the peer runs on PostgreSQL.
 */
export async function timedJob(
  system: string,
  job: ReturnType<typeof jobSettings>,
  ordered: boolean,
  emit: (n: number) => Promise<string>,
  counter?: ReturnType<typeof countStatements>,
): Promise<void> {
  await startOrderCheck(job.receiver)
  const before = counter?.read() ?? 0
  const started = performance.now()
  const stamps = job.rate ? await emitPaced(job, emit) : await emitAll(job.total, job.emitters, emit)
  const emittedMs = performance.now() - started
  await waitForArrivals(job.receiver, job.total)
  const elapsedMs = performance.now() - started
  const used = (counter?.read() ?? 0) - before
  const latency = stamps && (await latencyOf(job.receiver, stamps))
  await reportOrder(job.receiver, job.webhooks)
  counter?.tally()
  printResult({ system, ordered, deliveries: job.total, elapsedMs, emittedMs, statements: used > 0 ? used : undefined, latency })
}

/** A schema, queue prefix or key name no other run uses. */
export const runId = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
