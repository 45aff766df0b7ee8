/**
 * cotwebhook against the job queues a user would pick instead, on the same fleet job
 * (bench/fleet/job.ts: 20 webhooks × 1,000 events from 8 emitters, 64 requests in flight, each a
 * signed POST to bench/receiver.mjs, timed from the first emit to the last arrival): graphile-worker
 * and pg-boss on the same PostgreSQL, BullMQ on Redis. Each system runs in a process of its own,
 * unordered and with per-webhook order, interleaved across rounds (round 1 runs every system once,
 * then round 2…) so that a slow spell on a shared machine lands on all of them, and the medians are
 * compared.
 *
 * The systems, how their workers start and where the peers come from: bench/peer-systems.ts. A peer
 * that cannot be installed or run is reported in the results' detail, never thrown. The latency
 * variant (a steady 500 events/s, each timed to its arrival) is bench/peers-latency.ts.
 *
 * Alone: `node --import tsx --conditions=cotwebhook-source bench/peers.ts [--quick] [--runs N]
 * [--latency]` prints the medians and the results (of the latency variant with --latency).
 */
import { pathToFileURL } from 'node:url'
import { round, startReceiver, type Result } from './lib.js'
import { fleetSystems, median, runWorker, version, type FleetRun, type System } from './peer-systems.js'
import { peersLatencyBench, printLatency } from './peers-latency.js'

export { peersLatencyBench }

/** The medians of one system in one mode over the rounds. */
interface Median {
  rate: number
  statementsPerDelivery: number | undefined
  runs: number[]
}

/**
 * Runs the comparison `options.runs` rounds and returns one result per figure compared (see the file
 * comment). `quick` runs 100 events per webhook instead of 1,000.
 */
export async function peersBench(options: { quick: boolean; runs: number }): Promise<Result[]> {
  const systems = fleetSystems(['postgres', 'sqlite', 'memory'])

  const receiver = await startReceiver()
  const runs = new Map<string, FleetRun[]>()
  try {
    for (let round = 1; round <= options.runs; round++) {
      for (const system of systems) {
        for (const ordered of [false, true]) {
          if (system.failed) continue
          const command = system.command()
          if (typeof command === 'string') {
            system.failed = command
            continue
          }
          await receiver.control('count')
          try {
            const run = await runWorker(command, {
              RECEIVER: receiver.url,
              ORDERED: ordered ? '1' : '0',
              ...(options.quick ? { EVENTS: '100' } : {}),
            })
            const key = `${system.name}/${ordered ? 'ordered' : 'unordered'}`
            runs.set(key, [...(runs.get(key) ?? []), run])
            process.stderr.write(`  peers round ${round}: ${key} ${Math.round(rateOf(run)).toLocaleString('en')}/s\n`)
          } catch (error) {
            system.failed = `${ordered ? 'ordered' : 'unordered'} run ${round} failed: ${(error as Error).message}`
            process.stderr.write(`  peers round ${round}: ${system.name} ${system.failed}\n`)
          }
        }
      }
    }
  } finally {
    await receiver.stop()
  }

  const medians = new Map<string, Median>()
  for (const [key, list] of runs) medians.set(key, medianOf(list))
  lastMedians = { medians, systems }
  return compare(medians, systems, options)
}

/** The medians and failures of the last peersBench call, for the standalone table. */
let lastMedians: { medians: Map<string, Median>; systems: System[] } | undefined

const rateOf = (run: FleetRun) => run.deliveries / (run.elapsedMs / 1000)

function medianOf(list: FleetRun[]): Median {
  const rates = list.map(rateOf)
  const counted = list.filter((run) => run.statements !== undefined)
  return {
    rate: median(rates),
    statementsPerDelivery: counted.length ? median(counted.map((run) => run.statements! / run.deliveries)) : undefined,
    runs: rates.map((r) => Math.round(r)),
  }
}

/** The results: each compared figure, with what was compared and any failure in its detail. */
function compare(medians: Map<string, Median>, systems: System[], options: { quick: boolean; runs: number }): Result[] {
  const failure = (name: string) => systems.find((s) => s.name === name)?.failed
  const get = (name: string, ordered: boolean) => medians.get(`${name}/${ordered ? 'ordered' : 'unordered'}`)
  const describe = (name: string, ordered: boolean) => {
    const m = get(name, ordered)
    return m ? `${Math.round(m.rate).toLocaleString('en')}/s (runs ${m.runs.join(', ')})` : `not measured (${failure(name) ?? 'no run'})`
  }
  const job = `20 webhooks × ${options.quick ? 100 : '1,000'} events, 8 emitters, 64 in flight, median of ${options.runs} interleaved rounds`
  const result = (name: string, unit: string, value: number | undefined, baseline: number | undefined, detail: string): Result => ({
    name,
    unit,
    value: value === undefined ? 0 : round(value, unit === 'deliveries/s' ? 0 : 2),
    baseline: baseline === undefined ? 0 : round(baseline, unit === 'deliveries/s' ? 0 : 2),
    ratio: value !== undefined && baseline ? round(value / baseline, 2) : 0,
    detail,
  })
  const peers = [
    { name: 'graphile-worker', label: `graphile-worker ${version('graphile-worker')}`, settings: 'concurrentJobs 64, localQueue 500, completeJobBatchDelay/failJobBatchDelay 0, LISTEN, prepared statements; ordered: queueName per webhook' },
    { name: 'pg-boss', label: `pg-boss ${version('pg-boss')}`, settings: 'work localConcurrency × batchSize 2 × 32, burstWhenBatchFull, perJobResults, polling 0.5 s, no LISTEN/NOTIFY; ordered: key_strict_fifo, singletonKey per webhook, 4 × 16' },
    { name: 'bullmq', label: `BullMQ ${version('bullmq')} (Redis)`, settings: 'Worker concurrency 64, removeOnComplete; ordered: a queue per webhook, Worker concurrency 1' },
  ]
  const results: Result[] = []
  for (const p of peers) {
    for (const ordered of [false, true]) {
      results.push(
        result(
          `peers-postgres${ordered ? '-ordered' : ''}-vs-${p.name}`,
          'deliveries/s',
          get('cotwebhook-postgres', ordered)?.rate,
          get(p.name, ordered)?.rate,
          `${job}${ordered ? ', per-webhook order' : ''}: cotwebhook (postgres store) ${describe('cotwebhook-postgres', ordered)} vs ${p.label} ${describe(p.name, ordered)} [${p.settings}]`,
        ),
      )
    }
  }
  for (const store of ['postgres', 'sqlite'] as const) {
    const name = `cotwebhook-${store}`
    results.push(
      result(
        `peers-${store}-ordered-vs-unordered`,
        'deliveries/s',
        get(name, true)?.rate,
        get(name, false)?.rate,
        `${job}: cotwebhook (${store} store) with ordering 'webhook' ${describe(name, true)} vs ordering 'none' ${describe(name, false)}`,
      ),
    )
  }
  for (const p of peers.filter((p) => p.name !== 'bullmq')) {
    const ours = get('cotwebhook-postgres', false)?.statementsPerDelivery
    const theirs = get(p.name, false)?.statementsPerDelivery
    const ordered = (name: string) => get(name, true)?.statementsPerDelivery?.toFixed(2) ?? '?'
    results.push(
      result(
        `peers-postgres-statements-vs-${p.name}`,
        'statements/delivery',
        ours,
        theirs,
        `${job}: SQL statements per delivery, emit to last arrival (cotwebhook: its pool's queries; ${p.name}: every pg client query), unordered; ordered: cotwebhook ${ordered('cotwebhook-postgres')}, ${p.name} ${ordered(p.name)}${theirs === undefined ? ` (${p.name} not measured: ${failure(p.name) ?? 'no count'})` : ''}`,
      ),
    )
  }
  return results
}

const alone = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
const runsIndex = process.argv.indexOf('--runs')
const quickAlone = process.argv.includes('--quick')
const runsAlone = runsIndex > 0 ? Number(process.argv[runsIndex + 1]) : quickAlone ? 1 : 3
if (alone && process.argv.includes('--latency')) printLatency(await peersLatencyBench({ quick: quickAlone, runs: runsAlone }))
else if (alone) {
  const results = await peersBench({ quick: quickAlone, runs: runsAlone })
  const { medians, systems } = lastMedians!
  const fmt = (m: Median | undefined) => (m ? Math.round(m.rate).toLocaleString('en') : '-')
  const spd = (m: Median | undefined) => m?.statementsPerDelivery?.toFixed(2) ?? '-'
  const table = [['system', 'unordered/s', 'ordered/s', 'stmts/delivery (unord.)', 'stmts/delivery (ord.)', 'runs (unordered | ordered)']]
  for (const s of systems) {
    const u = medians.get(`${s.name}/unordered`)
    const o = medians.get(`${s.name}/ordered`)
    table.push([s.name, fmt(u), fmt(o), spd(u), spd(o), `${u?.runs.join(', ') ?? '-'} | ${o?.runs.join(', ') ?? '-'}`])
  }
  table.push(...results.map((r) => [r.name, `${r.value.toLocaleString('en')} ${r.unit}`, r.baseline.toLocaleString('en'), String(r.ratio), '', '']))
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)))
  for (const [i, row] of table.entries()) {
    if (i === systems.length + 1) console.log(`\n${['result', 'value', 'baseline', 'ratio'].map((h, j) => h.padEnd(widths[j]!)).join('  ')}`)
    console.log(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  ').trimEnd())
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  }
  for (const s of systems) if (s.failed) console.log(`- ${s.name} failed: ${s.failed}`)
  for (const r of results) console.log(`- ${r.name}: ${r.detail}`)
}
