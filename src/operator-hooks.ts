import type { Attempt } from './model.js'

/**
 * Typed callbacks for the operator: the seam for metrics, alerts and OpenTelemetry. They are told
 * facts after they are recorded in the store, never secrets, and cannot break delivery: whatever a
 * hook throws (or its promise rejects with) goes to the engine's `onError`.
 */

/** What every hook event names: which delivery of which event to which webhook. */
export interface DeliveryRef {
  /** The event's company. */
  company: string
  /** The webhook's `_id`. */
  webhookId: string
  /** The delivery's id (the COTWebhookLog `_id`, the `webhook-id` header). */
  deliveryId: string
  /** The event's id. */
  eventId: string
}

/** An attempt that did not succeed (a failure status, 410, a network error or a timeout). */
export interface AttemptFailedEvent extends DeliveryRef {
  /** The attempt as logged. */
  attempt: Attempt
  /** 1 for the first attempt. */
  attemptNumber: number
  /** Whether another attempt is scheduled. */
  willRetry: boolean
}

/** A delivery that failed for good: its last attempt failed, or its webhook went away. */
export interface DeliveryExhaustedEvent extends DeliveryRef {
  /** Attempts made. */
  attempts: number
  /** The last response (truncated) or failure. */
  response: string
}

/** A delivery that succeeded after one or more failed attempts. */
export interface DeliveryRecoveredEvent extends DeliveryRef {
  /** Attempts made, the successful one included. */
  attempts: number
}

/** Why a webhook was turned off. */
export type DisableReason = 'gone' | 'failures' | 'failing-too-long'

/** A webhook the engine turned off (`isActive: false`). */
export interface WebhookDisabledEvent {
  company: string
  webhookId: string
  /** `gone`: the receiver answered 410; `failures` and `failing-too-long`: the health policy. */
  reason: DisableReason
  /** Deliveries exhausted in a row when it was turned off. */
  consecutiveFailures: number
  /** Epoch ms of the first failure of that run, if any. */
  failingSince: number | null
}

/** The circuit of a webhook opened (attempts stop for `until - now`) or closed again. */
export interface CircuitEvent {
  company: string
  webhookId: string
  /** `open`: attempts are held back until `until`; `closed`: a probe succeeded. */
  state: 'open' | 'closed'
  /** When `open`: when a probe attempt will be let through (epoch ms). */
  until?: number
}

/**
 * The hooks; every one is optional.
 *
 * @example
 * ```ts
 * createWebhooks({ on: {
 *   attemptFailed: (e) => metrics.increment('webhook.attempt.failed', { status: e.attempt.status }),
 *   webhookDisabled: (e) => alert(`webhook ${e.webhookId} turned off: ${e.reason}`),
 * } })
 * ```
 */
export interface OperatorHooks {
  attemptFailed?: (event: AttemptFailedEvent) => void | Promise<void>
  deliveryExhausted?: (event: DeliveryExhaustedEvent) => void | Promise<void>
  deliveryRecovered?: (event: DeliveryRecoveredEvent) => void | Promise<void>
  webhookDisabled?: (event: WebhookDisabledEvent) => void | Promise<void>
  circuit?: (event: CircuitEvent) => void | Promise<void>
}

/** Calls hooks without letting them throw into the delivery path. */
export type HookCaller = <K extends keyof OperatorHooks>(name: K, event: Parameters<NonNullable<OperatorHooks[K]>>[0]) => void

/**
 * Binds the hooks to an error sink.
 *
 * @example
 * ```ts
 * const call = hookCaller(options.on ?? {}, onError)
 * call('deliveryRecovered', { company, webhookId, deliveryId, eventId, attempts: 2 })
 * ```
 */
export function hookCaller(hooks: OperatorHooks, onError: (error: unknown) => void, also?: OperatorHooks): HookCaller {
  const one = callerOf(hooks, onError)
  if (!also) return one
  // The telemetry's hooks hear the same facts, guarded the same way.
  const other = callerOf(also, onError)
  return (name, event) => {
    one(name, event)
    other(name, event)
  }
}

function callerOf(hooks: OperatorHooks, onError: (error: unknown) => void): HookCaller {
  return (name, event) => {
    const hook = hooks[name] as ((event: unknown) => unknown) | undefined
    if (!hook) return
    try {
      const result = hook(event)
      if (result && typeof (result as Promise<void>).then === 'function') {
        ;(result as Promise<void>).then(undefined, (error: unknown) => onError(hookError(name, error)))
      }
    } catch (error) {
      onError(hookError(name, error))
    }
  }
}

function hookError(name: string, cause: unknown): Error {
  return new Error(`cotwebhook: the ${name} hook failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
}
