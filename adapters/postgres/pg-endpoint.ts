import type { EndpointState } from 'cotwebhook'

/** A queue row as PostgreSQL returns it (BIGINT columns come as text). */
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

const num = (value: number | string | null): number | null => (value === null ? null : Number(value))

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
