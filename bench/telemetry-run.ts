/**
 * One configuration of the telemetry bench (bench/telemetry.ts) in a process of its own: code the
 * OpenTelemetry SDK ran leaves V8's shared state changed for whatever runs after it in the same
 * process, so configurations measured one after another in one process do not compare. Prints one
 * JSON line: `{ "rate": deliveries per second, "cpuUs": this process's CPU time per delivery, "spans":
 * spans exported over both runs }` (the rate and the CPU time of the second run).
 *
 * Environment: MODE=off|api|sdk, TOTAL (deliveries), RECEIVER (a bench/receiver.mjs URL).
 */
import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { openTelemetry } from 'cotwebhook/otel'
import { engineRun } from './dispatch.js'

/** A reader nobody collects from: measurements are aggregated as an SDK does, never exported. */
class IdleReader extends MetricReader {
  protected async onShutdown() {}
  protected async onForceFlush() {}
}

/**
 * The SDK's in-memory exporter, emptied after each batch it is handed (the spans counted first): a
 * collector's exporter ships a batch and lets it go. Left to keep every span, the 50,000 of a run
 * stay on the heap and every garbage collection after walks them: that measured the test exporter's
 * memory (0.72 against 0.93 emptied, same runs), not what tracing costs a host.
 */
class DrainedExporter extends InMemorySpanExporter {
  exported = 0
  override export(spans: ReadableSpan[], resultCallback: Parameters<InMemorySpanExporter['export']>[1]): void {
    this.exported += spans.length
    super.export(spans, resultCallback)
    this.reset()
  }
}

const url = process.env.RECEIVER!
const receiver = {
  url,
  control: async (what: 'record' | 'count') => void (await fetch(`${url}/control/${what}`, { method: 'POST' })).text(),
  stats: async () => (await (await fetch(`${url}/stats`)).json()) as { count: number; arrivals: Record<string, number> },
}
const total = Number(process.env.TOTAL)
const mode = process.env.MODE
const exporter = new DrainedExporter()
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] })
const meterProvider = new MeterProvider({ readers: [new IdleReader()] })
const telemetry =
  mode === 'sdk' ? openTelemetry({ tracer: tracerProvider.getTracer('bench'), meter: meterProvider.getMeter('bench') }) : mode === 'api' ? openTelemetry() : undefined
// A first run warms the code up; the second is the one measured.
await engineRun(receiver as never, total, 'none', telemetry ? { telemetry } : {})
const cpu = process.cpuUsage()
const rate = await engineRun(receiver as never, total, 'none', telemetry ? { telemetry } : {})
const used = process.cpuUsage(cpu)
await tracerProvider.shutdown()
await meterProvider.shutdown()
process.stdout.write(`${JSON.stringify({ rate, cpuUs: (used.user + used.system) / total, spans: exporter.exported })}\n`)
