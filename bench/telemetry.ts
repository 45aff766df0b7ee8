import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { round, size, startReceiver, type Result } from './lib.js'

const run = promisify(execFile)
// Processes running the same configuration differ by up to a third on this machine: seven rounds.
const ROUNDS = size(7, 1)

/**
 * What telemetry costs the dispatch job (bench/dispatch.ts, `ordering: 'none'`): deliveries per second
 * with `openTelemetry()` on an SDK (a span per emit and per attempt, batched to an in-memory exporter
 * that is emptied after each batch, as a collector's exporter lets a batch go once shipped, every span
 * checked to have reached it; every metric aggregated), and with `openTelemetry()` on the API alone (no
 * SDK registered), each against the same engine without telemetry. Each configuration runs in a
 * process of its own (bench/telemetry-run.ts), seven rounds taking turns at going first, medians.
 */
export async function telemetryBench(): Promise<Result[]> {
  const receiver = await startReceiver()
  const total = size(24_000, 640)
  const runs = { off: [] as number[], api: [] as number[], sdk: [] as number[] }
  // The engine process's CPU time per delivery in each run: a second view, less moved by what else the
  // machine is doing than the rate is.
  const cpu = { off: [] as number[], api: [] as number[], sdk: [] as number[] }
  const measure = async (mode: keyof typeof runs) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', new URL('./telemetry-run.ts', import.meta.url).pathname], {
      env: { ...process.env, MODE: mode, TOTAL: String(total), RECEIVER: receiver.url },
      timeout: 300_000,
    })
    const { rate, cpuUs, spans } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { rate: number; cpuUs: number; spans: number }
    // Two runs, each a span per attempt and one per emit (64 deliveries each): fewer means spans were
    // dropped (a full batch queue), and the figure would flatter tracing.
    const expected = 2 * (total + total / 64)
    if (mode === 'sdk' && spans < expected) throw new Error(`telemetry bench: ${spans} spans exported, ${expected} made`)
    cpu[mode].push(cpuUs)
    return rate
  }
  try {
    const order = ['off', 'api', 'sdk'] as const
    for (let n = 0; n < ROUNDS; n++) {
      for (let k = 0; k < order.length; k++) {
        const which = order[(n + k) % order.length]!
        runs[which].push(await measure(which))
      }
    }
  } finally {
    await receiver.stop()
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const off = median(runs.off)
  const rounds = (values: number[]) => values.map((v) => Math.round(v)).join(', ')
  const detail = (what: string, mode: 'api' | 'sdk') =>
    `${total.toLocaleString('en')} deliveries to 64 webhooks, ordering 'none', ${what}: runs ${rounds(runs[mode])} vs without telemetry ${rounds(runs.off)} ` +
    `(each in a process of its own, medians of ${ROUNDS} rounds); engine CPU per delivery ${round(median(cpu[mode]), 1)} µs vs ${round(median(cpu.off), 1)} µs (${round(median(cpu.off) / median(cpu[mode]))})`
  return [
    { name: 'telemetry-sdk', value: Math.round(median(runs.sdk)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.sdk) / off), detail: detail('openTelemetry() on an SDK (every span batched to an in-memory exporter emptied after each batch, metrics aggregated)', 'sdk') },
    { name: 'telemetry-api', value: Math.round(median(runs.api)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.api) / off), detail: detail('openTelemetry() with no SDK registered', 'api') },
  ]
}
