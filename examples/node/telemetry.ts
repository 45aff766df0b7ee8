import { SpanKind, SpanStatusCode, context, metrics, propagation, trace } from '@opentelemetry/api'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import type { MiddlewareHandler } from 'hono'

/**
 * The OpenTelemetry SDK as a Node host would start it for cotwebhook: a tracer provider registered as
 * the global one (with the async-hooks context manager and the W3C propagator), spans batched to an
 * exporter (the console by default; an OTLP exporter to a collector in production), and a meter
 * provider whose reader is the Prometheus exporter, serving `/metrics` on its own port. Start it
 * before `openTelemetry()` is called, so the engine gets the real meter.
 */
export function startTelemetry(options: { spanExporter?: SpanExporter; prometheusPort?: number } = {}) {
  const tracerProvider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(options.spanExporter ?? new ConsoleSpanExporter())] })
  tracerProvider.register()
  const prometheus = new PrometheusExporter({ host: '127.0.0.1', port: options.prometheusPort ?? 9464 })
  const meterProvider = new MeterProvider({ readers: [prometheus] })
  metrics.setGlobalMeterProvider(meterProvider)
  return {
    tracerProvider,
    /** Where Prometheus scrapes. */
    metricsUrl: `http://127.0.0.1:${options.prometheusPort ?? 9464}/metrics`,
    async shutdown() {
      await tracerProvider.shutdown()
      await meterProvider.shutdown()
      trace.disable()
      metrics.disable()
      context.disable()
      propagation.disable()
    },
  }
}

/**
 * A server span around each request to the host, continuing the caller's trace from its
 * `traceparent`: what an HTTP instrumentation (or `@hono/otel`) gives a real host. Every `emit()`
 * made while handling the request is then a child of it, and so is each webhook request it causes.
 */
export function traceRequests(): MiddlewareHandler {
  const tracer = trace.getTracer('example-host')
  return async (c, next) => {
    const incoming = propagation.extract(context.active(), Object.fromEntries(c.req.raw.headers))
    await tracer.startActiveSpan(`${c.req.method} ${c.req.path}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': c.req.method, 'url.path': c.req.path } }, incoming, async (span) => {
      try {
        await next()
        span.setAttribute('http.response.status_code', c.res.status)
        if (c.res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      } finally {
        span.end()
      }
    })
  }
}
