import { Hono, type Context } from 'hono'
import type { Webhooks } from '../engine.js'
import type { EngineStats } from '../engine-stats.js'
import { UnauthorizedError } from '../errors.js'
import { errorResponse } from './errors.js'

/** Options of {@link webhookMetrics}. One of `token` and `authorize` is required. */
export interface MetricsOptions {
  /** The operator's credential: a scrape must send `Authorization: Bearer <token>`. */
  token?: string
  /** Or decide per request (a network check, your own auth); `true` lets the scrape in. */
  authorize?: (c: Context) => boolean | Promise<boolean>
  /** Webhooks given series of their own (circuits first, then the largest backlogs). Default 1 000. */
  maxWebhooks?: number
  /** Where a failing store's error goes before the 500. Default `console.error`. */
  onError?: (error: unknown) => void
}

/**
 * A Prometheus scrape route for hosts without an OpenTelemetry SDK: `GET /metrics` answers the
 * text exposition format with the fleet's backlog and circuits (read from the store, so every
 * instance answers the same) and this instance's attempt and delivery counters (Prometheus sums the
 * instances). It spans every company, so it is for the operator only: it refuses any request without
 * the operator's credential, and is never mounted behind a tenant's token.
 *
 * @example
 * ```ts
 * app.route('/ops', webhookMetrics(hooks, { token: process.env.METRICS_TOKEN }))
 * // prometheus.yml: authorization: { credentials: <token> }, metrics_path: /ops/metrics
 * ```
 */
export function webhookMetrics(hooks: Webhooks | ((c: Context) => Webhooks), options: MetricsOptions): Hono {
  const { token, authorize } = options ?? {}
  if (!token && typeof authorize !== 'function') {
    throw new TypeError('webhookMetrics: give options.token (the operator’s bearer token) or options.authorize: the metrics span every company')
  }
  const maxWebhooks = options.maxWebhooks ?? 1_000
  const onError = options.onError ?? ((error: unknown) => console.error('cotwebhook metrics:', error))
  const engine = typeof hooks === 'function' ? hooks : () => hooks
  const app = new Hono()
  app.get('/metrics', async (c) => {
    const allowed = authorize ? await authorize(c) : sameText(c.req.header('authorization') ?? '', `Bearer ${token}`)
    if (!allowed) return errorResponse(c, new UnauthorizedError('missing or wrong operator credentials for the metrics'), onError)
    try {
      const stats = await engine(c).stats(undefined, { limit: maxWebhooks })
      return c.body(exposition(stats), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
    } catch (error) {
      return errorResponse(c, error, onError)
    }
  })
  return app
}

/** The Prometheus text of `stats`. */
export function exposition(stats: EngineStats): string {
  const lines: string[] = []
  const family = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[Record<string, string>, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) lines.push(`${name}${labelText(labels)} ${Number.isFinite(value) ? value : 0}`)
  }
  const per = (value: (w: EngineStats['webhooks'][number]) => number) =>
    stats.webhooks.map((w): [Record<string, string>, number] => [{ company: w.company, webhook_id: w.webhookId }, value(w)])
  family('cotwebhook_open_deliveries', 'gauge', 'Deliveries not yet final, in the store.', [[{}, stats.open]])
  family('cotwebhook_oldest_open_delivery_age_seconds', 'gauge', 'How long the oldest open delivery has waited.', [[{}, (stats.oldestOpenAgeMs ?? 0) / 1000]])
  family('cotwebhook_circuits_open', 'gauge', 'Webhooks whose circuit is open or half-open.', [[{}, stats.circuitsOpen]])
  family('cotwebhook_webhooks_unlisted', 'gauge', 'Webhooks with a backlog or an open circuit left out of the per-webhook series (maxWebhooks).', [[{}, stats.more]])
  family('cotwebhook_webhook_open_deliveries', 'gauge', 'Deliveries not yet final, per webhook with a backlog or an open circuit.', per((w) => w.open))
  family('cotwebhook_webhook_oldest_open_delivery_age_seconds', 'gauge', 'How long the webhook’s oldest open delivery has waited.', per((w) => (w.oldestOpenAgeMs ?? 0) / 1000))
  family('cotwebhook_webhook_circuit_open', 'gauge', '1 while the webhook’s circuit is open or half-open.', per((w) => (w.circuit === 'closed' ? 0 : 1)))
  family('cotwebhook_webhook_consecutive_failures', 'gauge', 'Deliveries of the webhook exhausted in a row.', per((w) => w.consecutiveFailures))
  const { attempts, deliveries } = stats.outcomes
  family('cotwebhook_attempts_total', 'counter', 'HTTP attempts this instance made, by outcome.', [
    [{ outcome: 'success' }, attempts.success],
    [{ outcome: 'failure' }, attempts.failure],
    [{ outcome: 'gone' }, attempts.gone],
  ])
  family('cotwebhook_deliveries_total', 'counter', 'Deliveries this instance brought to an end, by outcome.', [
    [{ outcome: 'succeeded' }, deliveries.succeeded],
    [{ outcome: 'failed' }, deliveries.failed],
  ])
  return `${lines.join('\n')}\n`
}

function labelText(labels: Record<string, string>): string {
  const entries = Object.entries(labels)
  if (!entries.length) return ''
  return `{${entries.map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}`
}

// Compares without stopping at the first difference, so the time taken does not tell how much matched.
function sameText(a: string, b: string): boolean {
  let diff = a.length ^ b.length
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0)
  return diff === 0
}
