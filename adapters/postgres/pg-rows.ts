import { LeaseLostError, type ClaimedDelivery, type EndpointChange, type EnqueueInput, type Lease, type SettleResult, type Settlement } from 'cotwebhook'
import { toDelivery, type DeliveryRow, type Tables } from '../sql/schema.js'

// Rows as the PostgreSQL store reads them, made into what the contract answers.

/** The statement that reads deliveries with their events. */
export function deliverySelect(t: Tables): string {
  return `SELECT d.seq, d.id, d.company, d.webhook_id, d.event_id, d.state, d.attempts, d.status, d.response,
    d.created_at, d.updated_at, d.next_attempt_at, d.trace, e.body AS event FROM ${t.deliveries} d JOIN ${t.events} e ON e.id = d.event_id`
}

// The company of each lease handed out, by the lease object the engine gives back to settle: settles
// are batched by company (postgres-store.ts). Weak: a lease forgotten by the engine is forgotten here.
const leaseCompanies = new WeakMap<Lease, string>()

/** The company of the delivery a lease handed out by this store is for; undefined for any other lease. */
export function companyOfLease(lease: Lease): string | undefined {
  return leaseCompanies.get(lease)
}

function leaseOf(deliveryId: string, token: string, company: string): Lease {
  const lease = { deliveryId, token }
  leaseCompanies.set(lease, company)
  return lease
}

/** A claimed delivery from a claim's row. */
export function toClaimed(row: DeliveryRow & { lease_token: string }, event: unknown, probe: boolean, perSecond: number | null, burst: number | string | null): ClaimedDelivery {
  const claimed: ClaimedDelivery = { delivery: toDelivery({ ...row, event }), lease: leaseOf(row.id, row.lease_token, row.company) }
  if (probe) claimed.probe = true
  claimed.rate = perSecond === null ? null : { perSecond: Number(perSecond), burst: Number(burst ?? 1) }
  return claimed
}

/** A delivery the enqueue leased to its emitter: written as the emitter gave it, so told back by id only. */
export function leasedAtEmit(input: EnqueueInput, id: string, token: string): ClaimedDelivery {
  const { webhookId } = input.deliveries.find((d) => d.id === id)!
  const { event, eventId, now } = input
  const delivery = {
    id, company: event.company, webhookId, eventId, event, state: 'pending' as const, attempts: [], status: null, response: '', createdAt: now, updatedAt: now, nextAttemptAt: now,
    ...(input.trace === undefined ? {} : { trace: input.trace }),
  }
  return { delivery, lease: leaseOf(id, token, event.company), rate: null }
}

/** What a settle changed in the endpoint, from the settle function's answer. */
export function toChange(change: { opened?: number | string; closed?: boolean; openUntil?: number | string; disable?: string; consecutiveFailures: number; failingSince?: number | string }): EndpointChange {
  return {
    ...(change.opened !== undefined ? { circuit: { state: 'open' as const, until: Number(change.opened) } } : change.closed ? { circuit: { state: 'closed' as const } } : {}),
    ...(change.openUntil === undefined ? {} : { openUntil: Number(change.openUntil) }),
    ...(change.disable ? { disable: change.disable as 'failures' | 'failing-too-long' } : {}),
    consecutiveFailures: Number(change.consecutiveFailures),
    failingSince: change.failingSince === undefined ? null : Number(change.failingSince),
  }
}

/** One settle of a batch: its lease and what it records (`release`: a hand-back without an attempt). */
export type SettleItem = { lease: Lease; settlement: Settlement; release?: true }

/** The settle function's input for a batch. */
export function settleItems(entries: readonly SettleItem[]) {
  return entries.map(({ lease, settlement: s, release }) => ({
    id: lease.deliveryId,
    token: lease.token,
    now: s.now,
    state: s.state,
    response: s.response,
    ...(release ? { kind: 'release' } : {}),
    ...(s.attempt ? { attempt: s.attempt } : {}),
    ...(s.nextAttemptAt === undefined ? {} : { nextAttemptAt: s.nextAttemptAt }),
    ...(s.holdUntil === undefined ? {} : { holdUntil: s.holdUntil }),
    ...(s.endpoint ? { outcome: s.endpoint.outcome, exhausted: s.endpoint.exhausted ?? false, policy: s.endpoint.policy } : {}),
    ...(s.next ? { next: s.next } : {}),
  }))
}

/**
 * Each settle's answer from the function's rows: one row per item, and a second for an item the claim
 * at the end handed a delivery; an item without an `ok` row lost its lease.
 */
export function settleResults(entries: readonly SettleItem[], rows: readonly Record<string, any>[]): Array<SettleResult | Error> {
  const results = new Map<number, SettleResult | Error>()
  for (const row of rows) {
    if (!row.ok) {
      results.set(row.i, new LeaseLostError(entries[row.i]!.lease.deliveryId))
      continue
    }
    const result = (results.get(row.i) as SettleResult | undefined) ?? {}
    if (row.change) result.endpoint = toChange(row.change)
    if (row.next_delivery) result.next = toClaimed(row.next_delivery, row.next_event, row.next_probe, row.next_rate, row.next_burst)
    results.set(row.i, result)
  }
  return entries.map(({ lease }, i) => results.get(i) ?? new LeaseLostError(lease.deliveryId))
}

/** The company the settle served last by turns or by passing a queue straight on, if any (the last row that says). */
export function lastTurn(rows: readonly Record<string, any>[]): string | undefined {
  for (let i = rows.length - 1; i >= 0; i--) if (rows[i]!.turn) return rows[i]!.turn as string
  return undefined
}
