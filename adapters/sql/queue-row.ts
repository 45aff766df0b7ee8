import type { EndpointState } from 'cotwebhook'
import type { QueueState } from './queue-rules.js'

// A queue record as SQLite (and D1) return it, and the queue state the rules work on: read, written
// and shown as endpoint state.

/** A queue row as selected. */
export interface QueueRow {
  webhook_id: string
  company: string
  version: number
  ordered: number | boolean
  open: number
  hint: number | null
  hint_seq: number | null
  out: number
  out_until: number | null
  consecutive_failures: number
  failing_since: number | null
  last_success_at: number | null
  last_failure_at: number | null
  failed_attempts: number
  open_until: number | null
  cooldown_ms: number
  probe_token: string | null
  probe_until: number | null
  rate_per_second: number | null
  rate_burst: number | null
  tokens: number
  tokens_at: number | null
}

/** The queue state of a row. */
export function fromRow(row: QueueRow): QueueState {
  return {
    webhookId: row.webhook_id,
    company: row.company,
    version: Number(row.version),
    ordered: row.ordered === true || Number(row.ordered) === 1,
    open: Number(row.open),
    hint: num(row.hint),
    hintSeq: num(row.hint_seq),
    out: Number(row.out),
    outUntil: num(row.out_until),
    probeToken: row.probe_token,
    bucket: { tokens: Number(row.tokens), at: num(row.tokens_at) },
    endpoint: endpointOf(row),
  }
}

/** The written columns of a state, in the order of the write statement. */
export function columns(s: QueueState): unknown[] {
  const e = s.endpoint
  return [
    s.ordered ? 1 : 0, s.open, s.hint, s.hintSeq, s.out, s.outUntil,
    e.consecutiveFailures, e.failingSince, e.lastSuccessAt, e.lastFailureAt, e.failedAttempts, e.openUntil,
    e.cooldownMs, s.probeToken, e.probeUntil, e.rate?.perSecond ?? null, e.rate?.burst ?? null, s.bucket.tokens, s.bucket.at,
  ]
}

/** The endpoint state of a queue (zeros for none). */
export function toEndpoint(state: QueueState | undefined): EndpointState {
  if (!state) {
    return { consecutiveFailures: 0, failingSince: null, lastSuccessAt: null, lastFailureAt: null, failedAttempts: 0, openUntil: null, cooldownMs: 0, probeUntil: null, rate: null, open: 0 }
  }
  return { ...state.endpoint, rate: state.endpoint.rate ? { ...state.endpoint.rate } : null, open: state.open }
}

/** A number from a column that may come as text, or null. */
export const num = (value: number | string | null): number | null => (value === null ? null : Number(value))

/** The endpoint columns of a queue row, as either database returns them (PostgreSQL's BIGINT as text). */
export interface QueueRecord {
  open: number | string
  consecutive_failures: number | string
  failing_since: number | string | null
  last_success_at: number | string | null
  last_failure_at: number | string | null
  failed_attempts: number | string
  open_until: number | string | null
  cooldown_ms: number | string
  probe_until: number | string | null
  rate_per_second: number | null
  rate_burst: number | string | null
}

/**
 * A webhook's endpoint state from its queue row (zeros when it has none yet).
 *
 * @example
 * ```ts
 * endpointOf((await pool.query('SELECT * FROM cotwebhook_queues WHERE webhook_id = $1', [id])).rows[0])
 * ```
 */
export function endpointOf(row: QueueRecord | undefined): EndpointState {
  if (!row) {
    return { consecutiveFailures: 0, failingSince: null, lastSuccessAt: null, lastFailureAt: null, failedAttempts: 0, openUntil: null, cooldownMs: 0, probeUntil: null, rate: null, open: 0 }
  }
  return {
    consecutiveFailures: Number(row.consecutive_failures),
    failingSince: num(row.failing_since),
    lastSuccessAt: num(row.last_success_at),
    lastFailureAt: num(row.last_failure_at),
    failedAttempts: Number(row.failed_attempts),
    openUntil: num(row.open_until),
    cooldownMs: Number(row.cooldown_ms),
    probeUntil: num(row.probe_until),
    rate: row.rate_per_second === null ? null : { perSecond: Number(row.rate_per_second), burst: Number(row.rate_burst ?? 1) },
    open: Number(row.open),
  }
}
