import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { addressReason, type UrlPolicy } from 'cotwebhook'

/**
 * DNS resolution for the delivery sockets: resolve the name, keep only the addresses the URL policy
 * allows, and hand exactly those to the socket. The check and the connection use the same answer,
 * so a name that resolves to a public address when checked and to 127.0.0.1 a moment later (DNS
 * rebinding) cannot move the connection: there is no second lookup to rebind.
 */

/** A resolver with the shape of `dns.lookup(hostname, { all: true }, callback)`. */
export type Resolver = (
  hostname: string,
  options: { all: true },
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void

/**
 * The error a refused destination fails the connection with; its `code` is stable. For a name, the
 * message does not say what it resolved to (the log is the tenant's to read, and internal names'
 * addresses are not theirs to learn); `reasons` has the detail for the operator.
 */
export class UnsafeDestinationError extends Error {
  /** `ERR_UNSAFE_DESTINATION`: the sender logs it as a refused attempt, not a network failure. */
  readonly code = 'ERR_UNSAFE_DESTINATION'
  /** The host name (or literal) that was refused. */
  readonly hostname: string
  /** Why each address was refused. */
  readonly reasons: string[]

  constructor(hostname: string, reasons: string[], literal = false) {
    super(`${hostname} was not connected to: ${literal ? reasons.join('; ') : 'it resolves to no public address'}`)
    this.name = 'UnsafeDestinationError'
    this.hostname = hostname
    this.reasons = reasons
  }
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for `net.connect`/`tls.connect` that vets every resolved address against the policy.
 * Node 20 asks for all addresses (happy eyeballs) or for one; both forms are answered.
 *
 * @example
 * ```ts
 * new Agent({ connect: { lookup: pinnedLookup({}) } })   // public addresses only
 * ```
 */
export function pinnedLookup(policy: UrlPolicy, resolver: Resolver = dnsLookup as unknown as Resolver) {
  return function lookup(hostname: string, options: { all?: boolean; family?: number | string } | number, callback: LookupCallback): void {
    const all = typeof options === 'object' && options !== null && options.all === true
    const asked = typeof options === 'number' ? options : options?.family
    const family = asked === 'IPv4' ? 4 : asked === 'IPv6' ? 6 : asked
    resolver(hostname, { all: true }, (error, addresses) => {
      if (error) return callback(error, all ? [] : '')
      const wanted = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses
      const refused: string[] = []
      const allowed = wanted.filter((a) => {
        const reason = addressReason(a.address, policy)
        if (reason) refused.push(reason)
        return !reason
      })
      if (!allowed.length) {
        return callback(new UnsafeDestinationError(hostname, refused.length ? refused : ['the name has no address']) as NodeJS.ErrnoException, all ? [] : '')
      }
      if (all) return callback(null, allowed)
      callback(null, allowed[0]!.address, allowed[0]!.family)
    })
  }
}
