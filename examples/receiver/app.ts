import { Hono } from 'hono'
import { WebhookVerificationError, verifyWebhook, type COTEvent } from 'cotwebhook'

/** What the receiver saw of one request. */
export interface Arrival {
  path: string
  webhookId: string
  verified: boolean
  event?: COTEvent
  error?: string
}

export interface ReceiverOptions {
  /** The secret of the webhook posting to this path (`/hooks/:code`), or undefined if unknown. */
  secretFor: (code: string) => string | undefined
  /** Called for every request, verified or not. */
  onArrival?: (arrival: Arrival) => void
  /** Answer this status instead of 204 (e.g. to watch retries). */
  statusFor?: (arrival: Arrival) => number | undefined
}

/**
 * A webhook receiver: verifies the Standard Webhooks signature of every POST to /hooks/:code with
 * that webhook's secret, answers 204 (401 when verification fails), and reports what arrived.
 */
export function createReceiverApp(options: ReceiverOptions) {
  const app = new Hono()
  app.post('/hooks/:code', async (c) => {
    const body = await c.req.text()
    const code = c.req.param('code')
    const arrival: Arrival = { path: c.req.path, webhookId: c.req.header('webhook-id') ?? '', verified: false }
    const secret = options.secretFor(code)
    try {
      if (!secret) throw new WebhookVerificationError(`no secret known for ${code}`)
      arrival.event = await verifyWebhook(secret, c.req.raw.headers, body)
      arrival.verified = true
    } catch (error) {
      arrival.error = (error as Error).message
    }
    options.onArrival?.(arrival)
    if (!arrival.verified) return c.json({ error: arrival.error }, 401)
    const status = options.statusFor?.(arrival)
    return status ? c.text(`answered ${status} on purpose`, status as 503) : c.body(null, 204)
  })
  return app
}
