/**
 * `npm run bench`: every benchmark, each a ratio against a baseline measured in the same run, printed
 * as a table and written to .tmp/bench/results.json (`--update` writes the committed bench/results.json
 * instead, `--out <file>` anywhere, `--quick` runs a small smoke). `npm run bench -- peers backlog`
 * runs the named steps only and replaces their results in the file, keeping the others. These are not tests: nothing here passes or fails on a number.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backlogClaimBench, backlogDrainBench } from './backlog.js'
import { deadEndpointInstancesBench, deadEndpointWritesBench } from './dead-endpoint.js'
import { dispatchBench } from './dispatch.js'
import { telemetryBench } from './telemetry.js'
import { statsBench } from './stats.js'
import { durableBench } from './durable.js'
import { emitOverheadBench } from './emit-overhead.js'
import { latencyBench } from './latency.js'
import { machine, quick, type Result } from './lib.js'
import { matcherBench } from './matcher.js'
import { fairnessCostBench, floodBench, hangingBench } from './neighbours.js'
import { peersBench, peersLatencyBench } from './peers.js'

// A run leaves the committed figures alone unless asked (`--update`): results go to .tmp/ by default.
const outIndex = process.argv.indexOf('--out')
const committed = fileURLToPath(new URL('./results.json', import.meta.url))
const out = outIndex > 0
  ? process.argv[outIndex + 1]!
  : process.argv.includes('--update') ? committed : fileURLToPath(new URL('../.tmp/bench/results.json', import.meta.url))
mkdirSync(dirname(out), { recursive: true })

// The targets of the performance issue, to say beside each figure whether it was met.
const TARGETS: Record<string, { text: string; met: (r: Result) => boolean }> = {
  matcher: { text: '≥ 1,000× and ≥ 1M/s', met: (r) => r.ratio >= 1_000 && r.value >= 1_000_000 },
  dispatch: { text: '≥ 0.85', met: (r) => r.ratio >= 0.85 },
  'dispatch-ordered': { text: '≥ 0.85', met: (r) => r.ratio >= 0.85 },
  latency: { text: '≤ 2× and < 5 ms', met: (r) => r.ratio <= 2 && r.value < 5 },
  'emit-overhead': { text: '≥ 0.90', met: (r) => r.ratio >= 0.9 },
  memory: { text: '≤ 1,024 B', met: (r) => r.value <= 1_024 },
  'durable-sqlite': { text: '≥ 0.5', met: (r) => r.ratio >= 0.5 },
  'durable-postgres': { text: '≥ 0.5', met: (r) => r.ratio >= 0.5 },
  // The fleet issue: the durable path against the job queues a user would pick instead.
  'peers-postgres-vs-graphile-worker': { text: '≥ 1.0', met: (r) => r.ratio >= 1 },
  'peers-postgres-vs-pg-boss': { text: '≥ 1.5', met: (r) => r.ratio >= 1.5 },
  'peers-postgres-ordered-vs-unordered': { text: '≥ 0.8', met: (r) => r.ratio >= 0.8 },
  'peers-sqlite-ordered-vs-unordered': { text: '≥ 0.8', met: (r) => r.ratio >= 0.8 },
  'peers-postgres-statements-vs-graphile-worker': { text: '≤ 0.3 per delivery', met: (r) => r.value <= 0.3 },
  'backlog-drain': { text: '≥ 0.8', met: (r) => r.ratio >= 0.8 },
  'backlog-claim': { text: '< 5 ms', met: (r) => r.value < 5 },
  'dead-endpoint-writes': { text: '< 10/min', met: (r) => r.value < 10 },
  'dead-endpoint-instances': { text: '≤ 1.2×', met: (r) => r.ratio <= 1.2 },
  // The noisy-neighbours issue: another company's trouble costs a healthy one at most twice its p99.
  'neighbours-hanging': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'neighbours-hanging-unordered': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'neighbours-flood': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'neighbours-flood-postgres': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'neighbours-backlog': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'neighbours-backlog-postgres': { text: '≤ 2×', met: (r) => r.ratio <= 2 },
  'fairness-cost': { text: '0.95–1.05', met: (r) => r.ratio >= 0.95 && r.ratio <= 1.05 },
  'fairness-cost-ordered': { text: '0.95–1.05', met: (r) => r.ratio >= 0.95 && r.ratio <= 1.05 },
  // The operators issue: traces and metrics on cost at most 10%; the API without an SDK, nothing measurable.
  'telemetry-sdk': { text: '≥ 0.90', met: (r) => r.ratio >= 0.9 },
  'telemetry-api': { text: '≥ 0.95', met: (r) => r.ratio >= 0.95 },
  'stats-postgres': { text: '< 10 ms', met: (r) => r.value < 10 },
}

/** Every step, by the name that selects it on the command line, in the order they run. */
const STEPS: Record<string, () => Promise<Result | Result[]>> = {
  matcher: matcherBench,
  memory: memoryInChild,
  dispatch: dispatchBench,
  latency: latencyBench,
  'emit-overhead': emitOverheadBench,
  durable: durableBench,
  backlog: async () => [await backlogDrainBench(), await backlogClaimBench()],
  'dead-endpoint': async () => [await deadEndpointWritesBench(), await deadEndpointInstancesBench()],
  hanging: hangingBench,
  flood: floodBench,
  'fairness-cost': fairnessCostBench,
  telemetry: telemetryBench,
  stats: statsBench,
  peers: () => peersBench({ quick, runs: quick ? 1 : 3 }),
  'peers-latency': () => peersLatencyBench({ quick, runs: quick ? 1 : 3 }),
}
const chosen = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--') && all[i - 1] !== '--out')
const unknown = chosen.filter((name) => !(name in STEPS))
if (unknown.length) {
  console.error(`bench: no step named ${unknown.join(', ')}; the steps are ${Object.keys(STEPS).join(', ')}`)
  process.exit(2)
}

const results: Result[] = []
const started = performance.now()
const step = async (label: string, run: () => Promise<Result | Result[]>) => {
  const t = performance.now()
  process.stdout.write(`${label} … `)
  results.push(...[await run()].flat())
  console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`)
}

for (const [name, run] of Object.entries(STEPS)) if (!chosen.length || chosen.includes(name)) await step(name, run)

const rows = [['name', 'value', 'baseline', 'ratio', 'target', '']]
for (const r of results) {
  const target = TARGETS[r.name]
  rows.push([r.name, `${r.value.toLocaleString('en')} ${r.unit}`, r.baseline.toLocaleString('en'), String(r.ratio), target?.text ?? '', target ? (target.met(r) ? 'met' : 'missed') : ''])
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
console.log()
for (const [i, row] of rows.entries()) {
  console.log(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  ').trimEnd())
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
}
for (const r of results) console.log(`- ${r.name}: ${r.detail}`)
// A partial run replaces its own results and keeps the rest of the file's.
const kept = chosen.length && existsSync(out) ? ((JSON.parse(readFileSync(out, 'utf8')) as { results: Result[] }).results ?? []) : []
const fresh = new Set(results.map((r) => r.name))
const report = { machine: machine(), date: new Date().toISOString(), quick, results: [...kept.filter((r) => !fresh.has(r.name)), ...results] }
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`)
console.log(`\n${machine()}; ${((performance.now() - started) / 1000).toFixed(0)} s; written to ${out}`)

/** The memory figure needs a clean heap and --expose-gc: a process of its own. */
function memoryInChild(): Promise<Result> {
  const script = fileURLToPath(new URL('./memory.ts', import.meta.url))
  const args = ['--expose-gc', '--import', 'tsx', '--conditions=cotwebhook-source', script, ...(quick ? ['--quick'] : [])]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()))
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(text.trim().split('\n').at(-1)!) as Result) : reject(new Error(`memory bench exited with ${code}`))))
  })
}
