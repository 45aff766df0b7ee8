import { LRUCache } from 'lru-cache'

/** Outcomes counted by one engine since it started, in all and per company. */
export interface Outcomes {
  attempts: { success: number; failure: number; gone: number }
  deliveries: { succeeded: number; failed: number }
}

/** Deliveries that ended in one minute. */
export interface MinuteOutcomes {
  /** The minute's start (epoch ms). */
  start: number
  succeeded: number
  failed: number
}

/** The running counts of an engine's outcomes: a few additions per delivery, nothing stored. */
export interface OutcomeCounts {
  attempt(company: string, outcome: keyof Outcomes['attempts']): void
  /** A delivery ended at `at` (epoch ms). */
  delivery(company: string, outcome: keyof Outcomes['deliveries'], at: number): void
  /** A copy of the counts of `company`, or of all companies. */
  read(company?: string): Outcomes
  /** Deliveries ended per minute over the last hour to `now`, oldest first (60 minutes, empty ones included). */
  recent(company: string | undefined, now: number): MinuteOutcomes[]
}

const MINUTE = 60_000
const MINUTES = 60

const zero = (): Outcomes => ({ attempts: { success: 0, failure: 0, gone: 0 }, deliveries: { succeeded: 0, failed: 0 } })

/**
 * Counts what an engine's deliveries came to, for `stats()` and the metrics route.
 *
 * @example
 * ```ts
 * const counts = outcomeCounts()
 * counts.attempt(company, 'success')
 * counts.read(company).attempts.success // 1
 * ```
 */
export function outcomeCounts(maxCompanies = 10_000): OutcomeCounts {
  const all = zero()
  // Per company, for the companies seen most recently: an engine serving many tenants keeps a ring of
  // 60 minutes for each, so the least recently active beyond `maxCompanies` are forgotten (their
  // counts start again from zero; the totals in `all` keep them).
  const byCompany = new LRUCache<string, Outcomes>({ max: maxCompanies })
  // A ring of the last hour's minutes, per company and in all: slot = minute % 60, reset when reused.
  type Ring = MinuteOutcomes[]
  const ring = (): Ring => Array.from({ length: MINUTES }, () => ({ start: -1, succeeded: 0, failed: 0 }))
  const allMinutes = ring()
  const minutesByCompany = new LRUCache<string, Ring>({ max: maxCompanies })
  const count = (minutes: Ring, outcome: keyof Outcomes['deliveries'], at: number) => {
    const minute = Math.floor(at / MINUTE)
    const slot = minutes[minute % MINUTES]!
    if (slot.start !== minute * MINUTE) Object.assign(slot, { start: minute * MINUTE, succeeded: 0, failed: 0 })
    slot[outcome]++
  }
  const of = (company: string) => {
    let counts = byCompany.get(company)
    if (!counts) byCompany.set(company, (counts = zero()))
    return counts
  }
  return {
    attempt(company, outcome) {
      all.attempts[outcome]++
      of(company).attempts[outcome]++
    },
    delivery(company, outcome, at) {
      all.deliveries[outcome]++
      of(company).deliveries[outcome]++
      count(allMinutes, outcome, at)
      let minutes = minutesByCompany.get(company)
      if (!minutes) minutesByCompany.set(company, (minutes = ring()))
      count(minutes, outcome, at)
    },
    read(company) {
      const counts = company === undefined ? all : (byCompany.get(company) ?? zero())
      return { attempts: { ...counts.attempts }, deliveries: { ...counts.deliveries } }
    },
    recent(company, now) {
      const minutes = company === undefined ? allMinutes : minutesByCompany.get(company)
      const last = Math.floor(now / MINUTE)
      return Array.from({ length: MINUTES }, (_, i) => {
        const start = (last - MINUTES + 1 + i) * MINUTE
        const slot = minutes?.[(last - MINUTES + 1 + i) % MINUTES]
        return slot && slot.start === start ? { start, succeeded: slot.succeeded, failed: slot.failed } : { start, succeeded: 0, failed: 0 }
      })
    },
  }
}
