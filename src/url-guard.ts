import ipaddr from 'ipaddr.js'
import { UnsafeUrlError } from './errors.js'

/**
 * Which delivery URLs are allowed. A webhook makes the host's servers call a URL a customer chose,
 * so by default only public destinations are reached. This checks the URL as written (literal
 * addresses in every spelling the URL parser accepts, and `localhost`); resolving names and pinning
 * the vetted address for the connection is the transport's job (`nodeTransport` in `cotwebhook/node`).
 */

/** The URL policy. */
export interface UrlPolicy {
  /** Allow loopback, private, link-local and other non-public destinations. Default `false`. */
  allowPrivateNetworks?: boolean
  /**
   * Non-public ranges allowed all the same, as CIDRs (`'10.20.0.0/16'`, `'fd00:1::/64'`): an internal
   * receiver, without opening every private network. Default: none.
   */
  allowCidrs?: readonly string[]
  /** Refuse `http:` URLs: deliveries go over TLS only. Default `false`. */
  httpsOnly?: boolean
}

// ipaddr.js range names, in words a user can act on.
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'an unspecified address',
  broadcast: 'a broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address',
  private: 'a private (RFC 1918) address',
  reserved: 'a reserved address',
  uniqueLocal: 'a unique-local address',
  ipv4Mapped: 'an IPv4-mapped address',
  rfc6145: 'an IPv4-translated address',
  rfc6052: 'a NAT64 address',
  '6to4': 'a 6to4 address',
  teredo: 'a Teredo address',
}

// Parsed once per policy object: the engine checks every URL against the same policy.
const parsedCidrs = new WeakMap<readonly string[], Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>>()

/**
 * Checks a policy's options, so a typo fails at start-up rather than at the first delivery.
 *
 * @example
 * ```ts
 * checkUrlPolicy({ allowCidrs: ['10.0.0.0/8'] }) // ok
 * checkUrlPolicy({ allowCidrs: ['10.0.0.0/33'] }) // throws RangeError naming allowCidrs[0]
 * ```
 */
export function checkUrlPolicy(policy: UrlPolicy): void {
  if (policy.allowCidrs !== undefined) cidrsOf(policy.allowCidrs)
}

function cidrsOf(list: readonly string[]): Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> {
  let parsed = parsedCidrs.get(list)
  if (!parsed) {
    if (!Array.isArray(list)) throw new RangeError('allowCidrs must be an array of CIDR strings')
    parsed = list.map((cidr, index) => {
      try {
        return ipaddr.parseCIDR(String(cidr))
      } catch (cause) {
        throw new RangeError(`allowCidrs[${index}]: "${String(cidr)}" is not a CIDR such as 10.0.0.0/8 or fd00::/8`, { cause })
      }
    })
    parsedCidrs.set(list, parsed)
  }
  return parsed
}

/**
 * Returns the parsed URL when it may be delivered to, or throws {@link UnsafeUrlError} saying which
 * rule refused it: only `http:` and `https:` (`https:` alone with `httpsOnly`), no credentials in the
 * URL, and, unless `allowPrivateNetworks`, no `localhost` and no literal address outside the public
 * unicast space (save `allowCidrs`).
 *
 * @example
 * ```ts
 * checkUrl('https://example.com/hook')            // URL
 * checkUrl('http://169.254.169.254/latest')       // throws: a link-local address
 * checkUrl('http://127.0.0.1:8080/', { allowPrivateNetworks: true }) // URL
 * ```
 */
export function checkUrl(url: string, policy: UrlPolicy = {}): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (cause) {
    throw new UnsafeUrlError(url, 'is not an absolute URL', { cause })
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    // `localhost:4000/x` parses as scheme `localhost`: a host and port written without a scheme.
    const hostAndPort = /^[a-z0-9.-]+:\d+(\/|$)/i.test(url)
    const hint = hostAndPort ? `; did you mean ${policy.httpsOnly ? 'https' : 'http'}://${url}?` : ''
    throw new UnsafeUrlError(url, `scheme ${parsed.protocol.slice(0, -1)} is not allowed (http or https only)${hint}`)
  }
  if (policy.httpsOnly && parsed.protocol !== 'https:') {
    throw new UnsafeUrlError(url, 'scheme http is not allowed: this sender delivers over https only')
  }
  if (parsed.username || parsed.password) {
    throw new UnsafeUrlError(url, 'credentials in the URL are not allowed (put them in the path or a query, or verify the signature instead)')
  }
  if (policy.allowPrivateNetworks) return parsed
  const reason = privateHostReason(parsed.hostname, policy)
  if (reason) throw new UnsafeUrlError(url, reason, { privateNetwork: true })
  return parsed
}

/**
 * Why a host name (as the WHATWG URL parser normalised it) is not a public destination, or
 * `undefined` when it is a public address, an address `allowCidrs` lets through, or a name still to
 * be resolved.
 *
 * @example
 * ```ts
 * privateHostReason('10.0.0.1') // '10.0.0.1 is a private (RFC 1918) address'
 * ```
 */
export function privateHostReason(hostname: string, policy: UrlPolicy = {}): string | undefined {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname
  const lower = host.toLowerCase().replace(/\.$/, '')
  if (lower === 'localhost' || lower.endsWith('.localhost')) return `${host} is a loopback name`
  // The URL parser has already turned decimal, octal, hexadecimal and short IPv4 forms into dotted quads.
  if (!ipaddr.isValid(host)) return undefined
  return addressReason(host, policy)
}

// The IPv4 address inside a NAT64 (64:ff9b::/96 and /48 forms) or 6to4 address.
function embeddedIPv4(address: ipaddr.IPv4 | ipaddr.IPv6, range: string): ipaddr.IPv4 | undefined {
  if (address.kind() !== 'ipv6') return undefined
  const bytes = (address as ipaddr.IPv6).toByteArray()
  // The local-use prefix 64:ff9b:1::/48 puts the IPv4 address around the reserved byte 8 (RFC 6052 §2.2).
  if (range === 'rfc6052' && bytes[4] === 0 && bytes[5] === 1) return new ipaddr.IPv4([bytes[6]!, bytes[7]!, bytes[9]!, bytes[10]!])
  if (range === 'rfc6052') return new ipaddr.IPv4(bytes.slice(12, 16))
  if (range === '6to4') return new ipaddr.IPv4(bytes.slice(2, 6))
  return undefined
}

/**
 * Why an IP address (a literal, or what a host name resolved to) is not a public destination under
 * the policy, or `undefined` when it may be connected to. IPv4-mapped IPv6 addresses are judged as
 * the IPv4 address they carry.
 *
 * @example
 * ```ts
 * addressReason('127.0.0.1')                                   // '127.0.0.1 is a loopback address'
 * addressReason('10.1.2.3', { allowCidrs: ['10.1.0.0/16'] })   // undefined
 * addressReason('93.184.216.34')                               // undefined
 * ```
 */
export function addressReason(ip: string, policy: UrlPolicy = {}): string | undefined {
  if (policy.allowPrivateNetworks) return undefined
  let address: ipaddr.IPv4 | ipaddr.IPv6
  try {
    address = ipaddr.parse(ip.replace(/%.*$/, ''))
  } catch {
    return `${ip} is not an IP address`
  }
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6
    if (v6.isIPv4MappedAddress()) address = v6.toIPv4Address()
    // ::a.b.c.d, the deprecated IPv4-compatible form, which some stacks still route to a.b.c.d.
    else if (v6.parts.slice(0, 6).every((part) => part === 0) && v6.range() === 'unicast') {
      return `${ip} is an IPv4-compatible address (deprecated; use the IPv4 address)`
    }
  }
  const range = address.range()
  if (range === 'unicast') return undefined
  const words = `${ip} is ${RANGE_WORDS[range] ?? `a special-purpose (${range}) address`}`
  if (!policy.allowCidrs?.length || !cidrsOf(policy.allowCidrs).some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits))) return words
  // Allowing a NAT64 or 6to4 prefix allows the gateway, not every IPv4 address behind it: judge the one it carries.
  const carried = embeddedIPv4(address, range)
  if (carried && carried.range() !== 'unicast') return `${words} carrying ${carried.toString()}, ${RANGE_WORDS[carried.range()] ?? carried.range()}`
  return undefined
}
