import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { round, size, startReceiver, type Result } from './lib.js'

const run = promisify(execFile)

/**
 * What telemetry costs the dispatch job (bench/dispatch.ts, `ordering: 'none'`): deliveries per second
 * with `openTelemetry()` on an SDK (a span per emit and per attempt, batched to an in-memory exporter,
 * and every metric aggregated), and with `openTelemetry()` on the API alone (no SDK registered), each
 * against the same engine without telemetry. Each configuration runs in a process of its own
 * (bench/telemetry-run.ts), three rounds taking turns at going first, medians.
 */
export async function telemetryBench(): Promise<Result[]> {
  const receiver = await startReceiver()
  const total = size(24_000, 640)
  const runs = { off: [] as number[], api: [] as number[], sdk: [] as number[] }
  const measure = async (mode: keyof typeof runs) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', new URL('./telemetry-run.ts', import.meta.url).pathname], {
      env: { ...process.env, MODE: mode, TOTAL: String(total), RECEIVER: receiver.url },
      timeout: 300_000,
    })
    return (JSON.parse(stdout.trim().split('\n').at(-1)!) as { rate: number }).rate
  }
  try {
    const order = ['off', 'api', 'sdk'] as const
    for (let n = 0; n < 3; n++) {
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
  const detail = (what: string, values: number[]) =>
    `${total.toLocaleString('en')} deliveries to 64 webhooks, ordering 'none', ${what}: runs ${rounds(values)} vs without telemetry ${rounds(runs.off)} (each in a process of its own, medians of 3 rounds)`
  return [
    { name: 'telemetry-sdk', value: Math.round(median(runs.sdk)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.sdk) / off), detail: detail('openTelemetry() on an SDK (batched in-memory span exporter, metrics aggregated)', runs.sdk) },
    { name: 'telemetry-api', value: Math.round(median(runs.api)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.api) / off), detail: detail('openTelemetry() with no SDK registered', runs.api) },
  ]
}
