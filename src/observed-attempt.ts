import type { COTWebhook } from './model.js'
import type { OutcomeCounts } from './outcome-counts.js'
import { sendAttempt, type AttemptRequest, type AttemptResult } from './sender.js'
import type { Delivery } from './store.js'
import type { Telemetry } from './telemetry.js'

/** What an observed attempt tells, and to whom. */
export interface Observers {
  telemetry?: Telemetry | undefined
  outcomes?: OutcomeCounts | undefined
  now: () => number
}

/**
 * One attempt of a delivery, with the engine's observers told around it: telemetry opens a span (and
 * gives the trace headers the request carries) and closes it with the outcome; the engine's counts
 * take the outcome for `stats()`.
 *
 * @example
 * ```ts
 * const result = await observedAttempt(ctx, delivery, webhook, made + 1, { url, id, body, … })
 * ```
 */
export async function observedAttempt(observers: Observers, delivery: Delivery, webhook: COTWebhook, attemptNumber: number, request: AttemptRequest): Promise<AttemptResult> {
  const recording = observers.telemetry?.attempt({
    company: delivery.company,
    webhookId: delivery.webhookId,
    deliveryId: delivery.id,
    eventId: delivery.eventId,
    trigger: webhook.trigger,
    url: webhook.url,
    attemptNumber,
    enqueuedAt: delivery.createdAt,
    now: observers.now(),
    trace: delivery.trace,
  })
  // The trace headers go as an argument: a copy of the request with them was the costliest line here.
  const sent = await sendAttempt(request, recording?.headers)
  observers.outcomes?.attempt(delivery.company, sent.outcome === 'retry' ? 'failure' : sent.outcome)
  recording?.end({
    status: sent.attempt.error === undefined ? sent.attempt.status : null,
    error: sent.attempt.error,
    outcome: sent.outcome,
    durationMs: sent.attempt.durationMs,
  })
  return sent
}
