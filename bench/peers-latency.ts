/**
 * cotwebhook against the job queues a user would pick instead, on latency rather than throughput:
 * events emitted at a steady 500 a second (on a schedule, each when due, not after the previous emit
 * returned: bench/fleet/paced.ts), spread over 8 webhooks on the receiver process, each timed from its
 * emit/add call, and from that call having returned, to the receiver getting the request. What a
 * subscriber waits is the first; the second leaves out the durable write, where every system here
 * pays a commit (PostgreSQL) or a round trip (Redis).
 *
 * The same worker scripts as the throughput job (bench/peer-systems.ts), in their latency variant
 * (RATE set): each system in a fresh schema or queue prefix of its own, one second's worth of
 * unmeasured events first, the systems interleaved across rounds so that a slow spell on a shared
 * machine lands on all of them, and the median of each system's p50 and p99 over the rounds compared.
 */
import { round, startReceiver, type Result } from './lib.js'
import type { Latency } from './fleet/paced.js'
import { fleetSystems, median, runWorker, version, type System } from './peer-systems.js'

/** Events a second: well under every system's throughput here, so the figures are latency, not backlog. */
const RATE = 500
const WEBHOOKS = 8

/** One system as measured here: its worker, the environment that sets it up, and those settings in words. */
interface Variant {
  key: string
  label: string
  system: System
  env: Record<string, string>
  settings: string
  failed?: string
}

/** The medians over the rounds of one variant's p50 and p99, from the call and from the return. */
interface Figures {
  call: { p50: number; p99: number }
  returned: { p50: number; p99: number }
  /** The emit/add call itself. */
  emit: { p50: number; p99: number }
  /** Each round's p99 from the call, to show the spread. */
  rounds: number[]
}

/**
 * Runs the latency comparison `runs` rounds (default 3; 1 with `quick`) of 5,000 events (300 with
 * `quick`) per system and returns one result per peer: cotwebhook's p99 from the emit call (PostgreSQL
 * store, default ordering 'webhook') against the peer's, in ms, lower is better.
 */
export async function peersLatencyBench(options: { quick?: boolean; runs?: number } = {}): Promise<Result[]> {
  const quick = options.quick ?? false
  const runs = options.runs ?? (quick ? 1 : 3)
  const total = quick ? 300 : 5_000
  const [cotwebhook, graphile, pgBoss, bullmq] = fleetSystems(['postgres'])
  const variants: Variant[] = [
    { key: 'cotwebhook-postgres', label: "cotwebhook (postgres store, ordering 'webhook')", system: cotwebhook!, env: { ORDERED: '1' }, settings: COTWEBHOOK },
    { key: 'cotwebhook-postgres-unordered', label: "cotwebhook (postgres store, ordering 'none')", system: cotwebhook!, env: { ORDERED: '0' }, settings: COTWEBHOOK },
    { key: 'graphile-worker', label: `graphile-worker ${version('graphile-worker')}`, system: graphile!, env: { ORDERED: '0' }, settings: GRAPHILE },
    { key: 'pg-boss', label: `pg-boss ${version('pg-boss')}`, system: pgBoss!, env: { ORDERED: '0', ...PG_BOSS_ENV }, settings: PG_BOSS },
    { key: 'bullmq', label: `BullMQ ${version('bullmq')} (Redis)`, system: bullmq!, env: { ORDERED: '0' }, settings: BULLMQ },
  ]

  const receiver = await startReceiver()
  const measured = new Map<string, Latency[]>()
  try {
    for (let round = 1; round <= runs; round++) {
      for (const variant of variants) {
        if (variant.failed) continue
        const command = variant.system.command()
        if (typeof command === 'string') {
          variant.failed = command
          continue
        }
        try {
          const run = await runWorker(command, {
            RECEIVER: receiver.url,
            RATE: String(RATE),
            TOTAL: String(total),
            WEBHOOKS: String(WEBHOOKS),
            WARMUP: String(quick ? 100 : RATE),
            ...variant.env,
          })
          if (!run.latency) throw new Error('printed no latency figures')
          measured.set(variant.key, [...(measured.get(variant.key) ?? []), run.latency])
          const { fromCall, fromReturn } = run.latency
          process.stderr.write(
            `  peers latency round ${round}: ${variant.key} from call p50 ${fromCall.p50} p99 ${fromCall.p99} ms, from return p50 ${fromReturn.p50} p99 ${fromReturn.p99} ms (schedule lag ≤ ${run.latency.maxLagMs} ms)\n`,
          )
        } catch (error) {
          variant.failed = `run ${round} failed: ${(error as Error).message}`
          process.stderr.write(`  peers latency round ${round}: ${variant.key} ${variant.failed}\n`)
        }
      }
    }
  } finally {
    await receiver.stop()
  }

  const figures = new Map<string, Figures>()
  for (const [key, list] of measured) {
    const mid = (pick: (l: Latency) => number) => round(median(list.map(pick)))
    figures.set(key, {
      call: { p50: mid((l) => l.fromCall.p50), p99: mid((l) => l.fromCall.p99) },
      returned: { p50: mid((l) => l.fromReturn.p50), p99: mid((l) => l.fromReturn.p99) },
      emit: { p50: mid((l) => l.emit.p50), p99: mid((l) => l.emit.p99) },
      rounds: list.map((l) => l.fromCall.p99),
    })
  }
  last = { variants, figures }
  return compare(variants, figures, `${RATE} events/s on a schedule, ${total.toLocaleString('en')} events over ${WEBHOOKS} webhooks after ${quick ? 100 : RATE} unmeasured, median of ${runs} interleaved rounds`)
}

// The settings each system runs with, in the results' words. They are set in the worker scripts
// (bench/fleet/cotwebhook.ts, bench/peers/*.ts); pg-boss's latency choices come from PG_BOSS_ENV.
const COTWEBHOOK = 'createNodeWebhooks, concurrency 64, pollIntervalMs 1,000 (emit claims its deliveries itself: the poll is only a fallback), pg pool of 8'
const GRAPHILE = 'addJob per event; concurrentJobs 64, LISTEN/NOTIFY (always on), localQueue 500, completeJobBatchDelay/failJobBatchDelay 0, prepared statements'
/**
 * pg-boss's latency settings, as a user tuning for it would pick: LISTEN/NOTIFY on (`useListenNotify`
 * and the queue's `notify`, which pg-boss documents as the way to wake workers at once), the shortest
 * backstop poll it allows (0.5 s). On this machine, quiet, 2,500 events: p50/p99 from the call
 * 47/111 ms with NOTIFY against 277/488 ms without (the poll's wait); 1 × 64 with NOTIFY 29/143 ms.
 * Under load from other processes NOTIFY fared worse than polling (each send's NOTIFY serialises
 * the commits: bench/peers/pg-boss.ts), so the choice is the quiet machine's.
 */
const PG_BOSS_ENV: Record<string, string> = { PGB_NOTIFY: '1' }
const PG_BOSS = 'send per event; work with localConcurrency 2 × batchSize 32, burstWhenBatchFull, perJobResults, useListenNotify + queue notify, pollingIntervalSeconds/notifyPollingIntervalSeconds 0.5 (its minimum)'
const BULLMQ = 'Queue#add per event; Worker concurrency 64 (blocking fetch: no poll), removeOnComplete'

/** The results: cotwebhook's p99 from the call against each peer's, with every system's figures in the detail. */
function compare(variants: Variant[], figures: Map<string, Figures>, job: string): Result[] {
  const ours = figures.get('cotwebhook-postgres')
  const describe = (v: Variant) => {
    const f = figures.get(v.key)
    if (!f) return `${v.label}: not measured (${v.failed ?? 'no run'})`
    return `${v.label} from call p50 ${f.call.p50} / p99 ${f.call.p99} ms (rounds' p99 ${f.rounds.map((r) => round(r, 1)).join(', ')}), from return p50 ${f.returned.p50} / p99 ${f.returned.p99} ms, the emit itself p50 ${f.emit.p50} / p99 ${f.emit.p99} ms [${v.settings}]`
  }
  const all = variants.map(describe).join('; ')
  return variants
    .filter((v) => !v.key.startsWith('cotwebhook'))
    .map((peer) => {
      const theirs = figures.get(peer.key)
      return {
        name: `latency-postgres-vs-${peer.key}`,
        value: ours ? ours.call.p99 : 0,
        unit: 'ms (p99, emit called -> arrival)',
        baseline: theirs ? theirs.call.p99 : 0,
        ratio: ours && theirs ? round(ours.call.p99 / theirs.call.p99) : 0,
        detail: `lower is better; cotwebhook (postgres store, default ordering 'webhook') against ${peer.label}, ${job}: ${all}`,
      }
    })
}

/** The variants and figures of the last peersLatencyBench call, for the standalone table. */
let last: { variants: Variant[]; figures: Map<string, Figures> } | undefined

/** Prints the last run's figures as a table, then the results (bench/peers.ts --latency). */
export function printLatency(results: Result[]): void {
  const { variants, figures } = last!
  const table = [['system', 'call p50', 'call p99', 'return p50', 'return p99', 'emit p50', 'emit p99', "rounds' call p99"]]
  for (const v of variants) {
    const f = figures.get(v.key)
    const cell = (n: number | undefined) => (n === undefined ? '-' : String(n))
    table.push([v.key, cell(f?.call.p50), cell(f?.call.p99), cell(f?.returned.p50), cell(f?.returned.p99), cell(f?.emit.p50), cell(f?.emit.p99), f?.rounds.join(', ') ?? '-'])
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)))
  console.log('latency, ms (median over rounds)')
  for (const [i, row] of table.entries()) {
    console.log(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  ').trimEnd())
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  }
  for (const v of variants) if (v.failed) console.log(`- ${v.key} failed: ${v.failed}`)
  for (const r of results) console.log(`- ${r.name}: ${r.value} ms vs ${r.baseline} ms, ratio ${r.ratio}`)
  console.log(`- detail: ${results[0]?.detail ?? ''}`)
}
