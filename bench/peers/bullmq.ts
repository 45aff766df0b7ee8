/**
 * The fleet job (bench/fleet/job.ts) through BullMQ on Redis, in a process of its own: emitters
 * `Queue#add` one job per event (not `addBulk`: cotwebhook's emit takes one event at a time), and a
 * Worker in the same process with concurrency 64 signs and POSTs each. Prints the same JSON line as
 * bench/fleet/cotwebhook.ts, with `statements` undefined (Redis runs no SQL).
 *
 * Jobs are removed once delivered (`removeOnComplete`, as BullMQ's docs advise so Redis does not grow
 * with every job ever run) and retried 5 times with exponential backoff, as a webhook sender would.
 *
 * ORDERED=1: open-source BullMQ has no per-key ordering (groups are BullMQ Pro), so per-webhook order
 * is one queue per webhook, each with a Worker of concurrency 1.
 *
 * Every key lives under a prefix of this run's own and is removed at the end (`obliterate`, then a
 * scan for anything left). Runs on Node 20 or 22. Environment: ORDERED, the job's settings (REDIS_URL).
 */
// Resolved from bench/peers/node_modules once it is installed (then fully typed); the root typecheck
// also runs on a fresh clone without it, where this import is untyped rather than an error.
// @ts-ignore
import { Redis } from 'ioredis'
// @ts-ignore
import { Queue, Worker, type Job } from 'bullmq'
import { deliverer, deliveryFor, jobSettings, runId, timedJob, webhookTargets, type DeliveryJob } from './common.js'

const job = jobSettings()
const ordered = process.env.ORDERED === '1'
const prefix = `bullfleet-${runId()}`
// One command connection shared by every Queue; each Worker duplicates it for its blocking fetches.
// Workers need maxRetriesPerRequest null (a blocking fetch must not be cut short by ioredis retries).
const connection = new Redis(job.redisUrl, { maxRetriesPerRequest: null })
const targets = webhookTargets(job.receiver, job.webhooks)
const sender = deliverer(targets, job.concurrency)
const process_ = async (j: Job<DeliveryJob>) => sender.deliver(j.data)

const names = ordered ? targets.map((_, i) => `fleet-w${i}`) : ['fleet']
const queues = names.map((name) => new Queue<DeliveryJob>(name, { connection, prefix, defaultJobOptions: { removeOnComplete: true, removeOnFail: 1_000, attempts: 5, backoff: { type: 'exponential', delay: 1_000 } } }))
const workers = names.map((name) => new Worker<DeliveryJob>(name, process_, { connection, prefix, concurrency: ordered ? 1 : job.concurrency }))
for (const worker of workers) worker.on('error', (error: Error) => process.stderr.write(`bullmq worker: ${error.message}\n`))

try {
  await Promise.all([...queues.map((q) => q.waitUntilReady()), ...workers.map((w) => w.waitUntilReady())])
  // Resolves to the delivery's webhook-id once the job is stored, for the latency variant's stamps.
  const emit = async (n: number) => {
    const delivery = deliveryFor(n, targets)
    await queues[ordered ? delivery.webhook : 0]!.add('deliver', delivery)
    return delivery.id
  }
  await timedJob('bullmq', job, ordered, emit)
} finally {
  await Promise.all(workers.map((w) => w.close()))
  for (const q of queues) {
    await q.obliterate({ force: true }).catch(() => {})
    await q.close()
  }
  // Whatever obliterate left (meta keys, events streams) goes too: the run leaves Redis as it found it.
  let cursor = '0'
  do {
    const [next, keys] = await connection.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1_000)
    if (keys.length) await connection.del(...keys)
    cursor = next
  } while (cursor !== '0')
  await connection.quit()
  await sender.close()
}
