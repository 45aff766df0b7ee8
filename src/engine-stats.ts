import type { MinuteOutcomes, Outcomes } from './outcome-counts.js'
import type { Store } from './store.js'

/** One webhook in {@link EngineStats}. */
export interface WebhookBacklog {
  webhookId: string
  company: string
  /** Deliveries not yet final. */
  open: number
  /** How long the oldest of them has waited (ms), or `null` with none open. */
  oldestOpenAgeMs: number | null
  /** `open`: attempts held back until `circuitOpenUntil`; `half-open`: a probe may go; `closed`. */
  circuit: 'open' | 'half-open' | 'closed'
  circuitOpenUntil: number | null
  /** Deliveries exhausted in a row. */
  consecutiveFailures: number
  failingSince: number | null
  lastSuccessAt: number | null
  lastFailureAt: number | null
}

/** What `hooks.stats()` answers. */
export interface EngineStats {
  /** When it was read (epoch ms). */
  at: number
  /** Deliveries not yet final. */
  open: number
  /** How long the oldest open delivery has waited (ms), or `null`. */
  oldestOpenAgeMs: number | null
  /** Webhooks whose circuit is open or half-open. */
  circuitsOpen: number
  /** Webhooks with open deliveries or a circuit not closed: circuits first, then the largest backlogs; at most `limit`. */
  webhooks: WebhookBacklog[]
  /** How many webhooks `webhooks` left out. */
  more: number
  /** This engine's outcomes since it started (a fleet sums its instances, as Prometheus does). */
  outcomes: Outcomes
  /** This engine's deliveries ended per minute over the last hour, oldest first. */
  recent: MinuteOutcomes[]
}

/**
 * Reads the store's per-webhook stats and orders them for an operator.
 *
 * @example
 * ```ts
 * const stats = await readStats(store, { outcomes: counts.read(company), recent: counts.recent(company, now) }, now, company, 20)
 * ```
 */
export async function readStats(store: Store, counts: { outcomes: Outcomes; recent: MinuteOutcomes[] }, now: number, company: string | undefined, limit: number): Promise<EngineStats> {
  const rows = await store.stats(company)
  let open = 0
  let oldest: number | null = null
  const listed: WebhookBacklog[] = []
  for (const row of rows) {
    open += row.open
    if (row.oldestOpenAt !== null && (oldest === null || row.oldestOpenAt < oldest)) oldest = row.oldestOpenAt
    const circuit = row.openUntil === null ? 'closed' : row.openUntil > now ? 'open' : 'half-open'
    if (!row.open && circuit === 'closed') continue
    listed.push({
      webhookId: row.webhookId,
      company: row.company,
      open: row.open,
      oldestOpenAgeMs: row.oldestOpenAt === null ? null : Math.max(0, now - row.oldestOpenAt),
      circuit,
      circuitOpenUntil: row.openUntil,
      consecutiveFailures: row.consecutiveFailures,
      failingSince: row.failingSince,
      lastSuccessAt: row.lastSuccessAt,
      lastFailureAt: row.lastFailureAt,
    })
  }
  listed.sort((a, b) => Number(b.circuit !== 'closed') - Number(a.circuit !== 'closed') || b.open - a.open || (a.webhookId < b.webhookId ? -1 : 1))
  return {
    at: now,
    open,
    oldestOpenAgeMs: oldest === null ? null : Math.max(0, now - oldest),
    circuitsOpen: listed.filter((w) => w.circuit !== 'closed').length,
    webhooks: listed.slice(0, limit),
    more: Math.max(0, listed.length - limit),
    ...counts,
  }
}
