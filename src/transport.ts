/**
 * How an attempt reaches the network. The core needs only this: POST a body with headers, give up on
 * abort, follow no redirect, and hand back the status, a header lookup and at most so many bytes of
 * the response. The default runs on the runtime's `fetch`, so the core works everywhere; runtimes
 * with a faster client plug it in here (`cotwebhook/node`).
 */

/** One request, as the sender makes it. */
export interface TransportRequest {
  /** Where to POST. */
  url: string
  /** Request headers. */
  headers: Record<string, string>
  /** The body, already serialised. */
  body: string
  /** Aborted on the attempt's timeout. */
  signal: AbortSignal
  /**
   * The attempt's timeout, at which `signal` aborts. A transport whose client can time a request out
   * itself may use it (and stop waiting at the signal without aborting the request): see
   * `cotwebhook/node`.
   */
  timeoutMs?: number
  /** Read at most this many bytes of the response body, then stop reading. */
  maxResponseBytes: number
}

/** What came back. */
export interface TransportResponse {
  /** The HTTP status. */
  status: number
  /** A response header by lowercase name, or `null`. */
  header(name: string): string | null
  /** The response body, cut at `maxResponseBytes`. */
  body: string
}

/** Sends one request. Rejects for network errors and aborts, with the cause's `code` where there is one. */
export type Transport = (request: TransportRequest) => Promise<TransportResponse>

/** A `fetch`-compatible function. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>

/**
 * A transport on a `fetch` function: the runtime's by default. Redirects are not followed.
 *
 * @example
 * ```ts
 * createWebhooks({ transport: fetchTransport(globalThis.fetch) })
 * ```
 */
export function fetchTransport(fetchImpl: FetchLike = (input, init) => globalThis.fetch(input, init)): Transport {
  return async function fetchTransport(request) {
    const response = await fetchImpl(request.url, {
      method: 'POST',
      headers: request.headers,
      body: request.body,
      redirect: 'manual',
      signal: request.signal,
    })
    const body = await readBounded(response, request.maxResponseBytes)
    return { status: response.status, header: (name) => response.headers.get(name), body }
  }
}

/** Reads at most `limit` bytes of the body as text, then stops reading. */
async function readBounded(response: Response, limit: number): Promise<string> {
  if (!response.body) return ''
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let bytes = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    const room = limit - bytes
    if (value.byteLength >= room) {
      text += decoder.decode(value.subarray(0, room))
      await reader.cancel().catch(() => {})
      return text
    }
    bytes += value.byteLength
    text += decoder.decode(value, { stream: true })
  }
  return text + decoder.decode()
}
