import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SpanKind, SpanStatusCode, context, metrics, trace, type Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { memoryStore, type Telemetry } from 'cotwebhook'
import { openTelemetry } from 'cotwebhook/otel'
import { sqliteStore } from 'cotwebhook/sqlite'
import { COMPANY, TASK_GROUP, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { heldAnswers, startReceiver, until, type Receiver } from './helpers/receiver.js'

/** A reader the test collects from when it wants to, instead of on a timer. */
class CollectingReader extends MetricReader {
  protected async onShutdown() {}
  protected async onForceFlush() {}
}

/** An SDK of its own per test: spans to memory, metrics collected on demand. */
function sdk() {
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const reader = new CollectingReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  const telemetry = openTelemetry({ tracer: tracerProvider.getTracer('cotwebhook'), meter: meterProvider.getMeter('cotwebhook') })
  return {
    spans,
    tracer: tracerProvider.getTracer('host'),
    telemetry,
    /** Every metric by name. */
    async collect(): Promise<Map<string, MetricData>> {
      const { resourceMetrics, errors } = await reader.collect()
      expect(errors).toEqual([])
      return new Map(resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]))
    },
  }
}

/** The sum of a counter's points whose attributes include `where`. */
const sum = (metric: MetricData | undefined, where: Record<string, unknown> = {}) =>
  (metric?.dataPoints ?? [])
    .filter((p) => Object.entries(where).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + (typeof p.value === 'number' ? p.value : (p.value as { count: number }).count), 0)

/** A host request's span, active while `run` runs. */
const inRequest = <T>(tracer: Tracer, run: () => Promise<T>) =>
  tracer.startActiveSpan('GET /tasks', { kind: SpanKind.SERVER }, async (span) => {
    try {
      return { result: await run(), span }
    } finally {
      span.end()
    }
  })

const byKind = (spans: ReadableSpan[], kind: SpanKind) => spans.filter((s) => s.kind === kind)
const traceIdOf = (traceparent: string | undefined) => traceparent?.split('-')[1]

beforeAll(() => {
  // What a Node host's SDK registers: the active span follows async calls.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
})
afterAll(() => {
  context.disable()
  trace.disable()
  metrics.disable()
})

let receiver: Receiver | undefined
afterEach(async () => {
  await closeAll()
  await receiver?.close()
  receiver = undefined
})

describe('OpenTelemetry traces', () => {
  it('continue a host request’s trace through the emit into the receiver’s traceparent', async () => {
    const otel = sdk()
    receiver = await startReceiver()
    const hooks = engine({ telemetry: otel.telemetry })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook?token=s3cret&x=1`))
    const { span: request } = await inRequest(otel.tracer, () => hooks.emit(taskEvent()))
    await until(() => receiver!.requests.length === 1)
    await hooks.drain()
    const traceparent = receiver.requests[0]!.headers.traceparent
    expect(traceIdOf(traceparent)).toBe(request.spanContext().traceId)
    const [emit] = byKind(otel.spans.getFinishedSpans(), SpanKind.PRODUCER)
    const [attempt] = byKind(otel.spans.getFinishedSpans(), SpanKind.CLIENT)
    expect(emit!.parentSpanContext?.spanId).toBe(request.spanContext().spanId)
    expect(emit!.attributes).toMatchObject({ 'cotwebhook.matched': 1, 'cotwebhook.event.type': 'COTTask', 'cotwebhook.event.name': 'create' })
    expect(attempt!.spanContext().traceId).toBe(request.spanContext().traceId)
    expect(attempt!.parentSpanContext?.spanId).toBe(emit!.spanContext().spanId)
    // The receiver continues from the attempt's own span.
    expect(traceparent).toBe(`00-${attempt!.spanContext().traceId}-${attempt!.spanContext().spanId}-01`)
    expect(attempt!.name).toBe('POST')
    expect(attempt!.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 200, 'server.address': '127.0.0.1', 'server.port': receiver.port })
    // The URL without query secrets.
    expect(attempt!.attributes['url.full']).toBe(`${receiver.url}/hook?token=REDACTED&x=REDACTED`)
    expect(JSON.stringify(otel.spans.getFinishedSpans().map((s) => s.attributes))).not.toContain('s3cret')
    expect(attempt!.attributes).not.toHaveProperty('http.request.resend_count')
  })

  it('give each attempt its status, error and retry count; a failed one is an error span', async () => {
    const otel = sdk()
    receiver = await startReceiver((_, i) => ({ status: i === 0 ? 503 : 200 }))
    const hooks = engine({ telemetry: otel.telemetry, retry: { schedule: [20], jitter: 0 } })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    const { span: request } = await inRequest(otel.tracer, () => hooks.emit(taskEvent()))
    await until(() => receiver!.requests.length === 2)
    await hooks.drain()
    const attempts = byKind(otel.spans.getFinishedSpans(), SpanKind.CLIENT)
    expect(attempts.map((s) => s.attributes['http.response.status_code'])).toEqual([503, 200])
    expect(attempts[0]!.attributes['error.type']).toBe('503')
    expect(attempts[0]!.status.code).toBe(SpanStatusCode.ERROR)
    expect(attempts[0]!.attributes).not.toHaveProperty('http.request.resend_count')
    expect(attempts[1]!.attributes['http.request.resend_count']).toBe(1)
    expect(attempts[1]!.status.code).toBe(SpanStatusCode.UNSET)
    expect(attempts[1]!.attributes).not.toHaveProperty('error.type')
    for (const s of attempts) expect(s.spanContext().traceId).toBe(request.spanContext().traceId)
    // Each request carried its own attempt's span as the parent.
    expect(receiver.requests.map((r) => r.headers.traceparent!.split('-')[2])).toEqual(attempts.map((s) => s.spanContext().spanId))
  })

  it('name a timeout as such, with no status', async () => {
    const otel = sdk()
    const gate = heldAnswers()
    receiver = await startReceiver(() => gate.hold())
    const hooks = engine({ telemetry: otel.telemetry, timeoutMs: 200, retry: { schedule: [] } })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    await hooks.emit(taskEvent())
    await hooks.drain()
    gate.open()
    const [attempt] = byKind(otel.spans.getFinishedSpans(), SpanKind.CLIENT)
    expect(attempt!.attributes['error.type']).toBe('timeout')
    expect(attempt!.attributes).not.toHaveProperty('http.response.status_code')
    expect(attempt!.status).toMatchObject({ code: SpanStatusCode.ERROR, message: expect.stringContaining('timeout: no complete response within 200 ms') })
  })

  it('link a delivery resumed by another engine after a crash to the emitting trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cotwebhook-otel-'))
    const file = join(dir, 'hooks.db')
    try {
      const emitting = sdk()
      const resuming = sdk()
      receiver = await startReceiver()
      const first = sqliteStore(new Database(file))
      await first.migrate()
      const a = engine({ store: first, dispatch: false, telemetry: emitting.telemetry })
      await a.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
      const { span: request } = await inRequest(emitting.tracer, () => a.emit(taskEvent()))
      // A process claims it and dies: its lease runs out with nothing sent.
      expect(await first.claim({ now: Date.now(), limit: 10, leaseMs: 100, owner: 'crashed', ordered: true })).toHaveLength(1)
      await a.close()
      const [emit] = byKind(emitting.spans.getFinishedSpans(), SpanKind.PRODUCER)
      // Another process on the same file takes it over when the lease ends.
      const b = engine({ store: sqliteStore(new Database(file)), pollIntervalMs: 50, telemetry: resuming.telemetry })
      await until(() => receiver!.requests.length === 1, 15_000, 'the resumed delivery')
      await b.drain()
      const [attempt] = byKind(resuming.spans.getFinishedSpans(), SpanKind.CLIENT)
      expect(attempt!.spanContext().traceId).toBe(request.spanContext().traceId)
      expect(attempt!.parentSpanContext?.spanId).toBe(emit!.spanContext().spanId)
      expect(traceIdOf(receiver.requests[0]!.headers.traceparent)).toBe(request.spanContext().traceId)
      expect(byKind(resuming.spans.getFinishedSpans(), SpanKind.PRODUCER)).toEqual([])
    } finally {
      await closeAll()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('start a trace of their own for an emit outside any span, and send nothing when no SDK records', async () => {
    const otel = sdk()
    receiver = await startReceiver()
    const hooks = engine({ telemetry: otel.telemetry })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    await hooks.emit(taskEvent())
    await until(() => receiver!.requests.length === 1)
    const [emit] = byKind(otel.spans.getFinishedSpans(), SpanKind.PRODUCER)
    expect(emit!.parentSpanContext).toBeUndefined()
    expect(traceIdOf(receiver.requests[0]!.headers.traceparent)).toBe(emit!.spanContext().traceId)
    // The API alone (no SDK registered): spans record nothing and no header is made up.
    const bare = engine({ telemetry: openTelemetry() })
    await bare.registry.create(COMPANY, taskWebhook(`${receiver.url}/bare`, { code: 'bare' }))
    await bare.emit(taskEvent(1))
    await until(() => receiver!.requests.length === 2) // each engine has a memory store of its own
    expect(receiver.requests.find((r) => r.path === '/bare')!.headers).not.toHaveProperty('traceparent')
  })

  it('keep the host’s tracestate with the delivery', async () => {
    const otel = sdk()
    receiver = await startReceiver()
    const hooks = engine({ telemetry: otel.telemetry })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    const parent = trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true, traceState: (await import('@opentelemetry/api')).createTraceState('vendor=v1') })
    await context.with(trace.setSpan(context.active(), parent), () => hooks.emit(taskEvent()))
    await until(() => receiver!.requests.length === 1)
    expect(receiver.requests[0]!.headers.tracestate).toBe('vendor=v1')
    expect(traceIdOf(receiver.requests[0]!.headers.traceparent)).toBe('4bf92f3577b34da6a3ce929d0e0e4736')
  })
})

describe('OpenTelemetry metrics', () => {
  it('move as documented under a scripted run: 3 successes, 1 retry, 1 exhausted with its circuit opened, 1 gone', async () => {
    const otel = sdk()
    const gate = heldAnswers()
    receiver = await startReceiver((request, i) => {
      if (request.path.startsWith('/ok')) return gate.hold()
      if (request.path === '/flaky') return { status: receiver!.requests.filter((r) => r.path === '/flaky').length === 1 ? 500 : 200 }
      if (request.path === '/gone') return { status: 410 }
      return { status: 500, body: `no ${i}` }
    })
    const hooks = engine({
      store: memoryStore(),
      telemetry: otel.telemetry,
      retry: { schedule: [10], jitter: 0 },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 60_000 },
    })
    const make = (path: string, code: string, taskGroup: string) => hooks.registry.create(COMPANY, taskWebhook(`${receiver!.url}${path}`, { code, context: { taskGroup } }))
    const groups = { ok: TASK_GROUP, flaky: '6261612a8f1e99002e5c8cc1', dead: '6261612a8f1e99002e5c8cc2', gone: '6261612a8f1e99002e5c8cc3' }
    await make('/ok', 'ok', groups.ok)
    await make('/flaky', 'flaky', groups.flaky)
    await make('/dead', 'dead', groups.dead)
    await make('/gone', 'gone', groups.gone)
    const emitTo = (taskGroup: string, n: number) => hooks.emit({ ...taskEvent(n), data: { ...taskEvent(n).data, taskGroup } } as never)
    for (const n of [1, 2, 3]) await emitTo(groups.ok, n)
    await until(() => gate.held === 1)
    // Ordered: one out, all three open.
    const during = await otel.collect()
    expect(sum(during.get('cotwebhook.deliveries.open'))).toBe(3)
    const waited = during.get('cotwebhook.deliveries.oldest_open_age')!.dataPoints[0]!.value as number
    expect(waited).toBeGreaterThanOrEqual(0)
    expect(during.get('cotwebhook.deliveries.oldest_open_age')!.descriptor.unit).toBe('s')
    gate.open()
    await emitTo(groups.flaky, 4)
    await emitTo(groups.dead, 5)
    await emitTo(groups.gone, 6)
    await hooks.drain()

    const m = await otel.collect()
    expect(sum(m.get('cotwebhook.attempts'), { 'cotwebhook.outcome': 'success' })).toBe(4)
    expect(sum(m.get('cotwebhook.attempts'), { 'cotwebhook.outcome': 'failure' })).toBe(3)
    expect(sum(m.get('cotwebhook.attempts'), { 'cotwebhook.outcome': 'gone' })).toBe(1)
    expect(sum(m.get('cotwebhook.attempts'), { 'cotwebhook.trigger': 'create-edit-delete-task' })).toBe(8)
    expect(sum(m.get('cotwebhook.deliveries'), { 'cotwebhook.outcome': 'succeeded' })).toBe(4)
    expect(sum(m.get('cotwebhook.deliveries'), { 'cotwebhook.outcome': 'failed' })).toBe(2)
    expect(sum(m.get('http.client.request.duration'))).toBe(8)
    expect(sum(m.get('http.client.request.duration'), { 'http.response.status_code': 500 })).toBe(3)
    expect(m.get('http.client.request.duration')!.descriptor.unit).toBe('s')
    expect(sum(m.get('cotwebhook.delivery.lag'))).toBe(6) // one per delivery: its first attempt
    expect(sum(m.get('cotwebhook.circuit.transitions'), { 'cotwebhook.circuit.state': 'open' })).toBe(1)
    expect(sum(m.get('cotwebhook.webhooks.disabled'), { 'cotwebhook.disable.reason': 'gone' })).toBe(1)
    expect(sum(m.get('cotwebhook.deliveries.open'))).toBe(0)
    expect(m.get('cotwebhook.deliveries.oldest_open_age')!.dataPoints[0]!.value).toBe(0)

    // A webhook edited meanwhile keeps counting into the same series (its attributes are made again).
    const ok = (await hooks.registry.list(COMPANY)).webhooks.find((w) => w.code === 'ok')!
    await hooks.registry.update(COMPANY, ok._id, { url: `${receiver.url}/ok?v=2` })
    await emitTo(groups.ok, 7)
    await hooks.drain()
    const after = await otel.collect()
    expect(sum(after.get('cotwebhook.attempts'), { 'cotwebhook.outcome': 'success' })).toBe(5)
    expect(after.get('cotwebhook.attempts')!.dataPoints.filter((p) => p.attributes['cotwebhook.outcome'] === 'success')).toHaveLength(1)
  })

  it('a telemetry that throws goes to onError and delivery goes on', async () => {
    const errors: unknown[] = []
    receiver = await startReceiver()
    const broken: Telemetry = {
      emit: () => {
        throw new Error('emit broke')
      },
      attempt: () => ({
        end: () => {
          throw new Error('end broke')
        },
      }),
    }
    const hooks = engine({ telemetry: broken, onError: (e) => errors.push(e) })
    await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    await hooks.emit(taskEvent())
    await hooks.drain()
    expect(receiver.requests).toHaveLength(1)
    expect((await hooks.logs(COMPANY, (await hooks.registry.list(COMPANY)).webhooks[0]!._id))[0]!.state).toBe('succeeded')
    expect(errors.map((e) => (e as Error).message)).toEqual(['cotwebhook: telemetry failed in emit: emit broke', 'cotwebhook: telemetry failed in attempt end: end broke'])
  })
})
