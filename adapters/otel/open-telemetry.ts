import { ROOT_CONTEXT, SpanKind, SpanStatusCode, metrics, trace, type Attributes, type Context, type Meter, type ObservableCounter, type Tracer } from '@opentelemetry/api'
import { VERSION, type AttemptInfo, type EmitInfo, type Telemetry } from 'cotwebhook'
import { formatTrace, parseTrace } from './trace-context.js'

/** Options of {@link openTelemetry}. */
export interface OpenTelemetryOptions {
  /** Where spans go. Default: the global tracer provider's `cotwebhook` tracer (a no-op until an SDK registers one). */
  tracer?: Tracer
  /** Where measurements go. Default: the global meter provider's `cotwebhook` meter (a no-op until an SDK registers one). */
  meter?: Meter
}

/**
 * Telemetry on OpenTelemetry's API, for `createWebhooks({ telemetry })`: a span per emit and a client
 * span per attempt in the emit's trace (the trace context travels with each delivery through the
 * store, so an attempt made by another engine after a crash still continues it), `traceparent` and
 * `tracestate` on the outgoing request, and the metrics listed in docs/operations.md. Works on every
 * runtime the API runs on; `@opentelemetry/api` is an optional peer, loaded only by this entry point.
 *
 * @example
 * ```ts
 * import { openTelemetry } from 'cotwebhook/otel'
 * const hooks = createWebhooks({ store, telemetry: openTelemetry() }) // the globals the SDK registered
 * ```
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): Telemetry {
  const tracer = options.tracer ?? trace.getTracer('cotwebhook', VERSION)
  const meter = options.meter ?? metrics.getMeter('cotwebhook', VERSION)

  // Counted here and reported when the SDK collects: the SDK hashes the attributes of every
  // measurement, and two counts per delivery through it cost more than the span (profiled).
  const attempts = tally(meter.createObservableCounter('cotwebhook.attempts', { unit: '{attempt}', description: 'HTTP attempts made, by outcome (success, failure, gone) and trigger' }))
  const deliveries = tally(meter.createObservableCounter('cotwebhook.deliveries', { unit: '{delivery}', description: 'Deliveries that became final, by outcome (succeeded, failed) and trigger' }))
  const finals = new Map<string, { succeeded: Attributes; failed: Attributes }>()
  const duration = meter.createHistogram('http.client.request.duration', { unit: 's', description: 'Duration of webhook HTTP attempts, response body included' })
  const lag = meter.createHistogram('cotwebhook.delivery.lag', { unit: 's', description: 'Time from the emit to the first attempt of a delivery' })
  const transitions = meter.createCounter('cotwebhook.circuit.transitions', { unit: '{transition}', description: 'Circuits opened or closed, by state' })
  const disabled = meter.createCounter('cotwebhook.webhooks.disabled', { unit: '{webhook}', description: 'Webhooks the engine turned off, by reason' })
  const open = meter.createObservableGauge('cotwebhook.deliveries.open', { unit: '{delivery}', description: 'Deliveries not yet final, in the store' })
  const oldest = meter.createObservableGauge('cotwebhook.deliveries.oldest_open_age', { unit: 's', description: 'How long the oldest open delivery in the store has waited' })

  // What every attempt to a webhook shares, made once: attribute sets are hashed by the metrics SDK
  // on every measurement, and building them per attempt showed in profiles.
  type Shared = {
    span: Attributes
    trigger: Attributes
    succeeded: Attributes
    failed: Attributes
    gone: Attributes
    /**
     * The attributes of an attempt that ended with `status` (or, without one, `error`): `metric` for the
     * duration histogram, `span` only what the span does not already carry.
     */
    ended: (status: number | null, error: string | undefined) => { metric: Attributes; span: Attributes }
  }
  const shared = new Map<string, Shared & { url: string; triggerName: string }>()
  // One attribute object per trigger and outcome, shared by every webhook: the counts' keys.
  const outcomes = new Map<string, { succeeded: Attributes; failed: Attributes; gone: Attributes }>()
  const outcomesOf = (trigger: string) => {
    let found = outcomes.get(trigger)
    // Triggers are the few of the trigger table: nothing to bound.
    if (!found) {
      const of = (outcome: string) => ({ 'cotwebhook.trigger': trigger, 'cotwebhook.outcome': outcome })
      found = { succeeded: of('success'), failed: of('failure'), gone: of('gone') }
      outcomes.set(trigger, found)
    }
    return found
  }
  const webhookOf = (info: AttemptInfo): Shared => {
    let found = shared.get(info.webhookId)
    // A webhook edited since (its URL or trigger) gets its attributes made again.
    if (!found || found.url !== info.url || found.triggerName !== info.trigger) {
      if (shared.size >= MAX_SHARED) shared.clear()
      const where = serverOf(info.url)
      const server = { 'http.request.method': 'POST', 'server.address': where.host, 'server.port': where.port }
      const trigger = { 'cotwebhook.trigger': info.trigger }
      const endings = new Map<number | string, { metric: Attributes; span: Attributes }>()
      found = {
        url: info.url,
        triggerName: info.trigger,
        span: { ...server, 'url.full': where.url, 'cotwebhook.company': info.company, 'cotwebhook.webhook.id': info.webhookId, ...trigger },
        trigger,
        ended(status, error) {
          const key = status ?? error ?? 'unknown'
          let attributes = endings.get(key)
          if (!attributes) {
            // error.type: the status of a failed response (2xx carry none), or what kept a response from coming.
            const failed = status === null ? error : status >= 200 && status < 300 ? undefined : String(status)
            const span = { ...(status === null ? {} : { 'http.response.status_code': status }), ...(failed === undefined ? {} : { 'error.type': failed }) }
            attributes = { metric: { ...server, ...span }, span }
            if (endings.size < MAX_ENDINGS) endings.set(key, attributes)
          }
          return attributes
        },
        ...outcomesOf(info.trigger),
      }
      shared.set(info.webhookId, found)
    }
    return found
  }

  let lastTrace: string | undefined
  let lastParent: Context = ROOT_CONTEXT

  return {
    emit(info: EmitInfo) {
      const span = tracer.startSpan('cotwebhook emit', {
        kind: SpanKind.PRODUCER,
        attributes: { 'messaging.system': 'cotwebhook', 'cotwebhook.company': info.company, 'cotwebhook.event.type': info.type, 'cotwebhook.event.name': info.event },
      })
      return {
        trace: formatTrace(span.spanContext()),
        end(result) {
          if ('error' in result) {
            span.recordException(result.error instanceof Error ? result.error : String(result.error))
            span.setStatus({ code: SpanStatusCode.ERROR, message: result.error instanceof Error ? result.error.message : String(result.error) })
          } else {
            span.setAttribute('cotwebhook.matched', result.matched)
          }
          span.end()
        },
      }
    },

    attempt(info: AttemptInfo) {
      // The emit's context, or a trace of its own: never whatever happens to be active in the claim loop.
      // An emit's deliveries tend to go one after another: the last parent is kept, not parsed again.
      if (info.trace !== lastTrace) {
        const parent = parseTrace(info.trace)
        lastTrace = info.trace
        lastParent = parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT
      }
      const webhook = webhookOf(info)
      const span = tracer.startSpan('POST', { kind: SpanKind.CLIENT, attributes: webhook.span }, lastParent)
      if (span.isRecording()) {
        span.setAttribute('cotwebhook.delivery.id', info.deliveryId)
        span.setAttribute('cotwebhook.event.id', info.eventId)
        if (info.attemptNumber > 1) span.setAttribute('http.request.resend_count', info.attemptNumber - 1)
      }
      if (info.attemptNumber === 1) lag.record(Math.max(0, info.now - info.enqueuedAt) / 1000, webhook.trigger)
      const traceparent = formatTrace(span.spanContext())
      return {
        headers: traceparent ? headersOf(traceparent) : undefined,
        end(result) {
          const ended = webhook.ended(result.status, result.status === null ? (result.error?.split(':')[0] ?? 'unknown') : undefined)
          if (span.isRecording()) {
            span.setAttributes(ended.span)
            if (result.outcome !== 'success') span.setStatus({ code: SpanStatusCode.ERROR, ...(result.error ? { message: result.error } : {}) })
          }
          span.end()
          duration.record(result.durationMs / 1000, ended.metric)
          attempts.add(result.outcome === 'success' ? webhook.succeeded : result.outcome === 'gone' ? webhook.gone : webhook.failed)
        },
      }
    },

    delivered(info) {
      let ends = finals.get(info.trigger)
      if (!ends) {
        ends = { succeeded: { 'cotwebhook.trigger': info.trigger, 'cotwebhook.outcome': 'succeeded' }, failed: { 'cotwebhook.trigger': info.trigger, 'cotwebhook.outcome': 'failed' } }
        finals.set(info.trigger, ends)
      }
      deliveries.add(ends[info.outcome])
    },

    hooks: {
      circuit: (event) => transitions.add(1, { 'cotwebhook.circuit.state': event.state }),
      webhookDisabled: (event) => disabled.add(1, { 'cotwebhook.disable.reason': event.reason }),
    },

    observe(source) {
      // One read of the store per collection for both gauges.
      meter.addBatchObservableCallback(async (result) => {
        const backlog = await source.backlog()
        result.observe(open, backlog.open)
        result.observe(oldest, (backlog.oldestOpenAgeMs ?? 0) / 1000)
      }, [open, oldest])
    },
  }
}

// Webhooks whose shared attributes are kept; past it the cache starts again.
const MAX_SHARED = 10_000
// Distinct endings (statuses, error kinds) kept per webhook.
const MAX_ENDINGS = 64

/**
 * A monotonic count per attribute set, kept in a map keyed by the attribute objects (one per trigger
 * and outcome, never made twice), and observed whole at each collection.
 */
function tally(counter: ObservableCounter): { add(attributes: Attributes): void } {
  const counts = new Map<Attributes, number>()
  counter.addCallback((result) => {
    for (const [attributes, n] of counts) result.observe(n, attributes)
  })
  return { add: (attributes) => void counts.set(attributes, (counts.get(attributes) ?? 0) + 1) }
}

/** The URL without what may carry secrets (user info, query values), and its server. */
function serverOf(raw: string): { url: string; host: string; port: number } {
  const url = new URL(raw)
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  url.username = ''
  url.password = ''
  for (const key of [...new Set(url.searchParams.keys())]) url.searchParams.set(key, 'REDACTED')
  return { url: url.href, host: url.hostname, port }
}

function headersOf(trace: string): Record<string, string> {
  const space = trace.indexOf(' ')
  return space < 0 ? { traceparent: trace } : { traceparent: trace.slice(0, space), tracestate: trace.slice(space + 1) }
}
