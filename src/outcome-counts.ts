/** Outcomes counted by one engine since it started, in all and per company. */
export interface Outcomes {
  attempts: { success: number; failure: number; gone: number }
  deliveries: { succeeded: number; failed: number }
}

/** The running counts of an engine's outcomes: a few additions per delivery, nothing stored. */
export interface OutcomeCounts {
  attempt(company: string, outcome: keyof Outcomes['attempts']): void
  delivery(company: string, outcome: keyof Outcomes['deliveries']): void
  /** A copy of the counts of `company`, or of all companies. */
  read(company?: string): Outcomes
}

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
export function outcomeCounts(): OutcomeCounts {
  const all = zero()
  const byCompany = new Map<string, Outcomes>()
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
    delivery(company, outcome) {
      all.deliveries[outcome]++
      of(company).deliveries[outcome]++
    },
    read(company) {
      const counts = company === undefined ? all : (byCompany.get(company) ?? zero())
      return { attempts: { ...counts.attempts }, deliveries: { ...counts.deliveries } }
    },
  }
}
