import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { openTelemetry } from 'cotwebhook/otel'
import { engineRun } from './dispatch.js'
import { round, size, startReceiver, type Result } from './lib.js'

/** A reader nobody collects from: measurements are aggregated as an SDK does, never exported. */
class IdleReader extends MetricReader {
  protected async onShutdown() {}
  protected async onForceFlush() {}
}

/**
 * What telemetry costs the dispatch job (bench/dispatch.ts, `ordering: 'none'`): deliveries per second
 * with `openTelemetry()` on an SDK (a span per emit and per attempt, batched to an in-memory exporter,
 * and every metric aggregated), and with `openTelemetry()` on the API alone (no SDK registered), each
 * against the same engine without telemetry; three interleaved rounds, medians.
 */
export async function telemetryBench(): Promise<Result[]> {
  const receiver = await startReceiver()
  const total = size(24_000, 640)
  const runs = { off: [] as number[], api: [] as number[], sdk: [] as number[] }
  try {
    const run = {
      off: () => engineRun(receiver, total, 'none'),
      api: () => engineRun(receiver, total, 'none', { telemetry: openTelemetry() }),
      sdk: async () => {
        const spans = new InMemorySpanExporter()
        const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(spans)] })
        const meterProvider = new MeterProvider({ readers: [new IdleReader()] })
        try {
          return await engineRun(receiver, total, 'none', { telemetry: openTelemetry({ tracer: tracerProvider.getTracer('bench'), meter: meterProvider.getMeter('bench') }) })
        } finally {
          await tracerProvider.shutdown()
          await meterProvider.shutdown()
        }
      },
    }
    // A first run warms the engine's code up and is not counted; each round then starts with another
    // configuration, so none is always first (or always after the heaviest).
    await run.off()
    const order = ['off', 'api', 'sdk'] as const
    for (let n = 0; n < 3; n++) {
      for (let k = 0; k < order.length; k++) {
        const which = order[(n + k) % order.length]!
        runs[which].push(await run[which]())
      }
    }
  } finally {
    await receiver.stop()
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const off = median(runs.off)
  const rounds = (values: number[]) => values.map((v) => Math.round(v)).join(', ')
  const detail = (what: string, values: number[]) =>
    `${total.toLocaleString('en')} deliveries to 64 webhooks, ordering 'none', ${what}: runs ${rounds(values)} vs without telemetry ${rounds(runs.off)} (medians of 3 interleaved rounds)`
  return [
    { name: 'telemetry-sdk', value: Math.round(median(runs.sdk)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.sdk) / off), detail: detail('openTelemetry() on an SDK (batched in-memory span exporter, metrics aggregated)', runs.sdk) },
    { name: 'telemetry-api', value: Math.round(median(runs.api)), unit: 'deliveries/s', baseline: Math.round(off), ratio: round(median(runs.api) / off), detail: detail('openTelemetry() with no SDK registered', runs.api) },
  ]
}
