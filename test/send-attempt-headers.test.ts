import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fetchTransport, generateSecret, sendAttempt, webCryptoSigner } from 'cotwebhook'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// The headers a loopback receiver saw, in order of arrival.
const seen: IncomingHttpHeaders[] = []
const server = createServer((req, res) => {
  seen.push(req.headers)
  req.resume()
  req.on('end', () => res.writeHead(204).end())
})
let url = ''

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

describe('sendAttempt: extra headers', () => {
  const base = async () => ({
    url, id: 'msg_headers', body: '{"a":1}', keys: [await webCryptoSigner.prepare(generateSecret())], signer: webCryptoSigner,
    timeoutMs: 5_000, maxResponseBytes: 1_024, maxRetryAfterMs: 60_000, transport: fetchTransport(), now: Date.now,
  })

  it('sends them beside the webhook headers, which win over any of the same name', async () => {
    const result = await sendAttempt(await base(), {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      'webhook-id': 'forged',
      'Webhook-Signature': 'v1,forged',
      'content-type': 'text/plain',
      constructor: 'kept',
    })
    expect(result.outcome).toBe('success')
    const got = seen.at(-1)!
    expect(got.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
    expect(got['webhook-id']).toBe('msg_headers')
    expect(got['content-type']).toBe('application/json')
    // A differently cased name is the same header: ours is the only signature sent.
    expect(got['webhook-signature']).not.toContain('forged')
    // A name that is also an Object.prototype key is an ordinary header.
    expect(got.constructor).toBe('kept')
    expect(got['webhook-signature']).toMatch(/^v1,/)
  })

  it('takes request.headers when no argument is given, and sends none without either', async () => {
    await sendAttempt({ ...(await base()), headers: { tracestate: 'k=v', 'webhook-timestamp': '1' } })
    const withField = seen.at(-1)!
    expect(withField.tracestate).toBe('k=v')
    expect(withField['webhook-timestamp']).not.toBe('1')
    await sendAttempt(await base())
    const plain = seen.at(-1)!
    expect(plain.traceparent).toBeUndefined()
    expect(plain.tracestate).toBeUndefined()
  })
})
