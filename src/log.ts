import type { COTWebhookLog } from './model.js'
import type { Delivery } from './store.js'

/**
 * The COTWebhookLog view of a delivery: Cotalker's fields (`status`, `retry`, `response`, `event`,
 * `subscription`) and ours (`attempts`, `state`, `nextAttemptAt`, `durationMs`, `updatedAt`).
 *
 * @example
 * ```ts
 * const log = toLog(await store.getDelivery(company, id))
 * ```
 */
export function toLog(delivery: Delivery): COTWebhookLog {
  const last = delivery.attempts.at(-1)
  return {
    _id: delivery.id,
    company: delivery.company,
    createdAt: new Date(delivery.createdAt).toISOString(),
    status: delivery.status,
    // Cotalker's `retry` counts retries: attempts made minus the first.
    retry: Math.max(0, delivery.attempts.length - 1),
    response: delivery.response,
    event: delivery.event,
    subscription: delivery.webhookId,
    __v: delivery.attempts.length,
    attempts: delivery.attempts,
    state: delivery.state,
    nextAttemptAt: delivery.nextAttemptAt === null ? null : new Date(delivery.nextAttemptAt).toISOString(),
    durationMs: last ? last.durationMs : null,
    updatedAt: new Date(delivery.updatedAt).toISOString(),
  }
}
