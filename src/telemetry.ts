import type { OperatorHooks } from './operator-hooks.js'

/**
 * What the engine tells a tracing and metrics backend: each emit, each attempt, each delivery that
 * ends, and (through the operator hooks) circuit transitions and webhooks turned off. The engine holds
 * no tracing library: `openTelemetry()` from `cotwebhook/otel` implements this on
 * `@opentelemetry/api`, and a host may implement it for anything else. Without one, nothing is
 * recorded and nothing is loaded.
 *
 * A telemetry must not throw: the engine calls it on the delivery path (it guards each call anyway,
 * sending what is thrown to `onError`).
 */
export interface Telemetry {
  /** `emit()` begins (after its input was accepted). */
  emit(event: EmitInfo): EmitRecording
  /** An attempt is about to be sent. */
  attempt(attempt: AttemptInfo): AttemptRecording
  /** A delivery became final. */
  delivered?(delivery: DeliveredInfo): void
  /** Told what the operator hooks are told (circuit transitions, webhooks turned off, …). */
  hooks?: OperatorHooks
  /** Handed once, when the engine starts: what gauges read (the store's open deliveries). */
  observe?(source: TelemetrySource): void
}

/** An emit as telemetry sees it. */
export interface EmitInfo {
  company: string
  /** `COTTask`, `COTUser`, … */
  type: string
  /** `create`, `update`, `delete`, `logout`. */
  event: string
}

/** An emit being recorded. */
export interface EmitRecording {
  /**
   * The trace context to keep with the emit's deliveries (W3C `traceparent`, then `tracestate` after
   * a space), so attempts made later, by any engine, continue the emit's trace. Absent: none kept.
   */
  readonly trace?: string | undefined
  /** The emit resolved with `matched` deliveries, or failed with `error`. */
  end(result: { matched: number } | { error: unknown }): void
}

/** An attempt as telemetry sees it. */
export interface AttemptInfo {
  company: string
  webhookId: string
  deliveryId: string
  eventId: string
  /** The webhook's trigger. */
  trigger: string
  /** Where it is sent (as stored: it may hold query secrets, which a recorder must not keep). */
  url: string
  /** 1 for the first attempt of the delivery. */
  attemptNumber: number
  /** When the delivery was enqueued (epoch ms). */
  enqueuedAt: number
  /** The clock now (epoch ms). */
  now: number
  /** The trace context kept with the delivery, if any. */
  trace?: string | undefined
}

/** An attempt being recorded. */
export interface AttemptRecording {
  /** Headers to send with the request (`traceparent`, `tracestate`); they never replace the webhook headers. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The attempt ended: a status (409 without a response, as logged), or an error; and the outcome. */
  end(result: AttemptEnd): void
}

/** How an attempt ended. */
export interface AttemptEnd {
  /** The HTTP status, or `null` when no response came. */
  status: number | null
  /** `timeout: …`, `network: …`: why no response came. */
  error?: string | undefined
  /** `success` (2xx), `gone` (410), `retry` (anything else). */
  outcome: 'success' | 'gone' | 'retry'
  durationMs: number
}

/** A delivery that became final. */
export interface DeliveredInfo {
  company: string
  webhookId: string
  trigger: string
  outcome: 'succeeded' | 'failed'
  /** Attempts made, in all. */
  attempts: number
}

/** What telemetry may read for its gauges. */
export interface TelemetrySource {
  /** Deliveries not yet final, across the store. */
  openCount(): Promise<number>
  /** The store's backlog across companies: open deliveries and how long the oldest has waited (ms). */
  backlog(): Promise<{ open: number; oldestOpenAgeMs: number | null }>
}

/**
 * The telemetry with every call guarded: whatever it throws goes to `onError`, and delivery goes on.
 *
 * @example
 * ```ts
 * const telemetry = guardTelemetry(options.telemetry, onError) // undefined stays undefined
 * ```
 */
export function guardTelemetry(telemetry: Telemetry | undefined, onError: (error: unknown) => void): Telemetry | undefined {
  if (!telemetry) return undefined
  const failed = (what: string, cause: unknown) =>
    onError(new Error(`cotwebhook: telemetry failed in ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause }))
  // Written out per method rather than through one generic wrapper: these run for every attempt, and a
  // shared wrapper with spread arguments was measurably slower on the delivery path.
  return {
    emit(info) {
      let made: EmitRecording
      try {
        made = telemetry.emit(info)
      } catch (cause) {
        failed('emit', cause)
        return QUIET
      }
      return new GuardedRecording(made, 'emit end', failed)
    },
    attempt(info) {
      let made: AttemptRecording
      try {
        made = telemetry.attempt(info)
      } catch (cause) {
        failed('attempt', cause)
        return QUIET
      }
      return new GuardedRecording(made, 'attempt end', failed)
    },
    delivered(info) {
      try {
        telemetry.delivered?.(info)
      } catch (cause) {
        failed('delivered', cause)
      }
    },
    ...(telemetry.hooks ? { hooks: telemetry.hooks } : {}),
    observe(source) {
      try {
        telemetry.observe?.(source)
      } catch (cause) {
        failed('observe', cause)
      }
    },
  }
}

const QUIET = { trace: undefined, headers: undefined, end() {} }

/** A recording whose `end` cannot throw into the engine. */
class GuardedRecording {
  constructor(
    private readonly made: { readonly trace?: string | undefined; readonly headers?: Readonly<Record<string, string>> | undefined; end(result: never): void },
    private readonly what: string,
    private readonly failed: (what: string, cause: unknown) => void,
  ) {}

  get trace() {
    return this.made.trace
  }

  get headers() {
    return this.made.headers
  }

  end(result: never) {
    try {
      this.made.end(result)
    } catch (cause) {
      this.failed(this.what, cause)
    }
  }
}
