/**
 * When to try again: a schedule is the list of delays between attempts (attempts = delays + 1).
 */

/** Cotalker's documented schedule: three attempts, 30 seconds apart. The default. */
export const COTALKER_SCHEDULE: readonly number[] = [30_000, 30_000]

/**
 * The schedule the Standard Webhooks specification suggests: immediately, then 5 s, 5 min, 30 min,
 * 2 h, 5 h, 10 h, 10 h. The long delays are handed back to the store, so they survive restarts.
 */
export const STANDARD_WEBHOOKS_SCHEDULE: readonly number[] = [
  5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
]

/** Retry options of `createWebhooks`. */
export interface RetryOptions {
  /** Delays in ms between attempts. Default {@link COTALKER_SCHEDULE}. */
  schedule?: readonly number[]
  /** Spread each delay by up to ± this fraction (0–1), so failing endpoints are not hit in lockstep. Default 0. */
  jitter?: number
  /** Delays up to this long are waited in process (holding the lease); longer ones go back to the store. Default 60 000. */
  maxInProcessDelayMs?: number
  /** Upper bound for a `Retry-After` delay. Default 3 600 000 (1 hour). */
  maxRetryAfterMs?: number
}

/**
 * The delay before the next attempt, after `attemptsMade` attempts.
 *
 * @example
 * ```ts
 * delayAfter(1, [30_000, 30_000]) // 30000
 * ```
 */
export function delayAfter(attemptsMade: number, schedule: readonly number[], jitter = 0, random = Math.random): number {
  const base = schedule[Math.min(attemptsMade, schedule.length) - 1] ?? 0
  if (!jitter) return base
  return Math.max(0, Math.round(base * (1 + jitter * (random() * 2 - 1))))
}

/**
 * Reads a `Retry-After` value (seconds, or an HTTP date) as a delay in ms, capped; `undefined` when
 * it is absent or unreadable.
 *
 * @example
 * ```ts
 * parseRetryAfter('120', Date.now(), 3_600_000) // 120000
 * ```
 */
export function parseRetryAfter(value: string | null, now: number, capMs: number): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  let ms: number
  if (/^\d{1,10}$/.test(text)) ms = Number(text) * 1000
  // Only the HTTP date form (RFC 9110 IMF-fixdate): Date.parse alone reads "1.5" or "-1" as dates.
  else if (HTTP_DATE.test(text)) ms = Date.parse(text) - now
  else return undefined
  return Math.min(Math.max(0, ms), capMs)
}

const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/

/**
 * Checks a schedule: a list of finite, non-negative delays.
 *
 * @example
 * ```ts
 * checkSchedule([1000, -1]) // throws RangeError
 * ```
 */
export function checkSchedule(schedule: readonly number[]): void {
  if (!Array.isArray(schedule) || schedule.some((d) => typeof d !== 'number' || !Number.isFinite(d) || d < 0)) {
    throw new RangeError('retry.schedule must be a list of delays in milliseconds, each a finite number ≥ 0')
  }
}
