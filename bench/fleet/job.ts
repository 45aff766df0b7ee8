/**
 * The fleet job, the same for every system measured (cotwebhook and the job queues a user would pick
 * instead): WEBHOOKS endpoints on one receiver process, EVENTS events for each (each event matches one
 * webhook, event n going to webhook n mod WEBHOOKS), emitted by EMITTERS concurrent emitters while
 * the system delivers with CONCURRENCY requests in flight, every request signed (Standard Webhooks,
 * node:crypto HMAC) and sent with undici. Timed from the first emit to the receiver counting the last.
 *
 * With RATE set, the latency variant instead (bench/fleet/paced.ts): TOTAL events (default
 * WEBHOOKS × EVENTS) emitted on a schedule, RATE a second, each timed to its arrival, after WARMUP
 * unmeasured ones (default: one second's worth).
 */

export const COMPANY = '625be93a286ef83c1c0e845f'

/** The job's settings, from the environment the orchestrator gives each worker process. */
export function jobSettings() {
  const number = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
  const receiver = process.env.RECEIVER
  if (!receiver) throw new Error('fleet job: RECEIVER is not set')
  const webhooks = number('WEBHOOKS', 20)
  const events = number('EVENTS', 1_000)
  return {
    receiver,
    webhooks,
    events,
    /** Every event emitted, over all webhooks. */
    total: number('TOTAL', webhooks * events),
    /** Events a second in the latency variant; 0 (unset) runs the throughput job. */
    rate: number('RATE', 0),
    /** Unmeasured events emitted first in the latency variant: one second's worth unless WARMUP says. */
    warmup: number('WARMUP', number('RATE', 0)),
    emitters: number('EMITTERS', 8),
    concurrency: number('CONCURRENCY', 64),
    pgUrl: process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  }
}

/** The task event number `n`, of one task group (about 1 KB as JSON once delivered). */
export function taskEvent(n: number, taskGroup: string) {
  return { company: COMPANY, type: 'COTTask' as const, event: 'create' as const, data: { _id: COMPANY, n, taskGroup, notes: 'x'.repeat(800) } }
}

/** Resolves once the receiver has counted `total` requests (it was reset before the run). */
export async function waitForArrivals(receiver: string, total: number, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { count } = (await (await fetch(`${receiver}/stats`)).json()) as { count: number }
    if (count >= total) return
    if (Date.now() > deadline) throw new Error(`fleet job: ${count} of ${total} deliveries arrived in ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
