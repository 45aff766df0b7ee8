/**
 * The companies with an attempt under way on this engine (in a send slot, or queued for one), counted
 * per company. A response waits for the event loop's check phase only while another company has one:
 * then that company's request may be waiting for the same phase to be written. A company whose other
 * deliveries only wait for a retry, a host or a slot of its webhook has no request to let go first.
 *
 * @example
 * ```ts
 * const sending = sendingCompanies()
 * sending.enter('acme')
 * sending.othersThan('acme') // false: only acme is sending
 * sending.leave('acme')
 * ```
 */
export function sendingCompanies() {
  const counts = new Map<string, number>()
  return {
    /** An attempt of `company` is under way. */
    enter(company: string): void {
      counts.set(company, (counts.get(company) ?? 0) + 1)
    },
    /** An attempt of `company` is over (answered, failed or not sent after all). */
    leave(company: string): void {
      const left = (counts.get(company) ?? 1) - 1
      if (left > 0) counts.set(company, left)
      else counts.delete(company)
    },
    /** Whether a company other than `company` has an attempt under way. */
    othersThan(company: string): boolean {
      return counts.size > (counts.has(company) ? 1 : 0)
    },
  }
}
