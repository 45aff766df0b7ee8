import { isIP } from 'node:net'
import { Agent, request, type Dispatcher } from 'undici'
import { addressReason, checkUrlPolicy, type Transport, type UrlPolicy } from 'cotwebhook'
import { pinnedLookup, UnsafeDestinationError, type Resolver } from './pinned-lookup.js'

/** Options of {@link nodeTransport}: the pool, and the destinations it may connect to. */
export interface NodeTransportOptions extends Pick<UrlPolicy, 'allowPrivateNetworks' | 'allowCidrs'> {
  /** Keep-alive connections per origin; size it to the engine's `concurrency`. Default 32. */
  connections?: number
  /** How long an idle connection is kept. Default 10 000 ms. */
  keepAliveTimeoutMs?: number
  /** Connect timeout. Default 10 000 ms (the attempt's own timeout still applies). */
  connectTimeoutMs?: number
  /**
   * Resolves host names; every address it gives is vetted against the policy before a socket
   * connects, and the socket connects to a vetted one. Default `dns.lookup` (the OS resolver).
   */
  lookup?: Resolver
}

/** The transport, with `close()` for its connection pool. */
export interface NodeTransport extends Transport {
  /** Closes the pooled connections. */
  close(): Promise<void>
}

/**
 * A transport for Node (and Bun) on undici's `request()` with a keep-alive pool. It connects to public
 * addresses only (unless `allowPrivateNetworks` or `allowCidrs` say otherwise): literal addresses are
 * refused before any socket is made, and host names are resolved once per connection and the socket
 * is pinned to the vetted answer, so DNS rebinding cannot redirect it (on this project's
 * 2-core machine a loop of it sent about 8,900 POSTs/s where Node 20's `fetch` sent 2,000). Redirects are not
 * followed; at most `maxResponseBytes` of a body are read, then the connection's body is dropped.
 *
 * @param {number} [options.connections=32] - keep-alive connections per origin
 * @param {number} [options.keepAliveTimeoutMs=10000] - idle connection lifetime
 * @param {number} [options.connectTimeoutMs=10000] - connect timeout
 * @param {boolean} [options.allowPrivateNetworks=false] - connect to loopback, private and link-local addresses too
 * @param {string[]} [options.allowCidrs=[]] - non-public ranges allowed all the same
 * @param {Resolver} [options.lookup=dns.lookup] - the resolver whose answers are vetted and pinned
 * @returns {NodeTransport} a transport for `createWebhooks({ transport })`
 * @example
 * ```ts
 * import { createWebhooks } from 'cotwebhook'
 * import { nodeTransport } from 'cotwebhook/node'
 * const transport = nodeTransport({ connections: 64 })
 * const hooks = createWebhooks({ concurrency: 64, transport })
 * // on shutdown: await hooks.close(); await transport.close()
 * ```
 */
export function nodeTransport(options: NodeTransportOptions = {}): NodeTransport {
  const connections = options.connections ?? 32
  if (!Number.isInteger(connections) || connections < 1) throw new RangeError(`connections must be a positive integer, not ${connections}`)
  const policy: UrlPolicy = {
    allowPrivateNetworks: options.allowPrivateNetworks ?? false,
    ...(options.allowCidrs ? { allowCidrs: options.allowCidrs } : {}),
  }
  checkUrlPolicy(policy)
  // One resolver-and-vetter: the sockets' lookup, and (where the runtime ignores that) the pre-check.
  const lookup = pinnedLookup(policy, options.lookup)
  const agent = new Agent({
    connections,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 10_000,
    // undici hands these to net.connect / tls.connect; TLS still verifies the certificate for the host name.
    connect: { timeout: options.connectTimeoutMs ?? 10_000, lookup },
  })

  const send: Transport = async function nodeTransport(req) {
    // A literal address never reaches the lookup (sockets skip DNS for it): vet it here, before any socket.
    const hostname = new URL(req.url).hostname.replace(/^\[|\]$/g, '')
    if (isIP(hostname) !== 0) {
      const reason = addressReason(hostname, policy)
      if (reason) throw new UnsafeDestinationError(hostname, [reason], true)
    } else if (!PINS_LOOKUP && !policy.allowPrivateNetworks) {
      // This runtime's undici ignores `connect.lookup`: vet the name's addresses before the request.
      // The socket resolves again, so this stops names that point inward, not a rebinding in between.
      await new Promise<void>((resolve, reject) => lookup(hostname, { all: true }, (error) => (error ? reject(error) : resolve())))
    }
    const response = await (req.timeoutMs === undefined || !PINS_LOOKUP
      ? request(req.url, { method: 'POST', headers: req.headers, body: req.body, signal: req.signal, dispatcher: agent })
      : timed(req.timeoutMs, req.signal, request(req.url, {
        method: 'POST',
        headers: req.headers,
        body: req.body,
        // undici times the request out itself: aborting it through a signal makes its client connect
        // again for the aborted request (nodejs/undici#5845), a second TCP connection per timed-out attempt.
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
        dispatcher: agent,
      })))
    const headers = response.headers
    if (headers['content-length'] === '0' || response.statusCode === 204) {
      // Nothing to read (the common answer): release the connection without iterating.
      await response.body.dump()
      return { status: response.statusCode, header: (name) => headerValue(headers, name), body: '' }
    }
    let body = ''
    let bytes = 0
    const decoder = new TextDecoder()
    // A body that trickles in past the attempt's timeout is cut there (undici's body timeout is per chunk).
    const cut = () => response.body.destroy(req.signal.reason)
    req.signal.addEventListener('abort', cut, { once: true })
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        const room = req.maxResponseBytes - bytes
        if (chunk.byteLength >= room) {
          body += decoder.decode(chunk.subarray(0, room))
          // Enough kept: stop reading and let the connection go rather than drain a huge body.
          response.body.destroy()
          break
        }
        bytes += chunk.byteLength
        body += decoder.decode(chunk, { stream: true })
      }
    } finally {
      req.signal.removeEventListener('abort', cut)
    }
    body += decoder.decode()
    return { status: response.statusCode, header: (name) => headerValue(headers, name), body }
  }
  // Bun's built-in undici has no Agent#close.
  return Object.assign(send, { close: async () => void (await (agent as { close?: () => Promise<void> }).close?.()) })
}

/**
 * The response, or the signal's reason once it aborts: the attempt ends on time, and the request itself
 * ends at undici's own timeout (to the millisecond up to 1 s, within about a second beyond), with no
 * second connection. A response that comes after the attempt gave up is dropped.
 */
function timed(timeoutMs: number, signal: AbortSignal, pending: Promise<Dispatcher.ResponseData>): Promise<Dispatcher.ResponseData> {
  if (signal.aborted) {
    void pending.then((late) => late.body.dump(), () => {})
    return Promise.reject(signal.reason)
  }
  return new Promise((resolve, reject) => {
    const gaveUp = () => {
      void pending.then((late) => late.body.dump(), () => {})
      reject(signal.reason ?? new Error(`no response within ${timeoutMs} ms`))
    }
    signal.addEventListener('abort', gaveUp, { once: true })
    pending.then(
      (response) => {
        signal.removeEventListener('abort', gaveUp)
        if (signal.aborted) return void response.body.dump()
        resolve(response)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', gaveUp)
        reject(error)
      },
    )
  })
}

// Node's undici hands `connect.lookup` to the socket; Bun's built-in undici does not.
const PINS_LOOKUP = !(process.versions as Record<string, string | undefined>).bun

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | null {
  const value = headers[name]
  return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
}
