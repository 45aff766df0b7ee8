/**
 * One configuration of the telemetry bench (bench/telemetry.ts) in a process of its own: code the
 * OpenTelemetry SDK ran leaves V8's shared state changed for whatever runs after it in the same
 * process, so configurations measured one after another in one process do not compare. Prints one
 * JSON line: `{ "rate": deliveries per second }`.
 *
 * Environment: MODE=off|api|sdk, TOTAL (deliveries), RECEIVER (a bench/receiver.mjs URL).
 */
import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { openTelemetry } from 'cotwebhook/otel'
import { engineRun } from './dispatch.js'

/** A reader nobody collects from: measurements are aggregated as an SDK does, never exported. */
class IdleReader extends MetricReader {
  protected async onShutdown() {}
  protected async onForceFlush() {}
}

const url = process.env.RECEIVER!
const receiver = {
  url,
  control: async (what: 'record' | 'count') => void (await fetch(`${url}/control/${what}`, { method: 'POST' })).text(),
  stats: async () => (await (await fetch(`${url}/stats`)).json()) as { count: number; arrivals: Record<string, number> },
}
const total = Number(process.env.TOTAL)
const mode = process.env.MODE
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(new InMemorySpanExporter())] })
const meterProvider = new MeterProvider({ readers: [new IdleReader()] })
const telemetry =
  mode === 'sdk' ? openTelemetry({ tracer: tracerProvider.getTracer('bench'), meter: meterProvider.getMeter('bench') }) : mode === 'api' ? openTelemetry() : undefined
// A first run warms the code up; the second is the one measured.
await engineRun(receiver as never, total, 'none', telemetry ? { telemetry } : {})
const rate = await engineRun(receiver as never, total, 'none', telemetry ? { telemetry } : {})
await tracerProvider.shutdown()
await meterProvider.shutdown()
process.stdout.write(`${JSON.stringify({ rate })}\n`)
