import { Agent, request } from 'undici'
import { createWebhooks, generateSecret, memoryStore, type WebhooksOptions } from 'cotwebhook'
import { nodeSigner, nodeTransport } from 'cotwebhook/node'
import { round, size, startReceiver, until, type Result } from './lib.js'

const WEBHOOKS = 64
const COMPANY = '625be93a286ef83c1c0e845f'

/** A user event whose JSON body is about 1 KB. */
export function userEvent(n: number) {
  return { company: COMPANY, type: 'COTUser' as const, event: 'edit' as const, data: { _id: COMPANY, n, bio: 'x'.repeat(820) } }
}

/**
 * Deliveries per second from emit() to a receiver in another process: 64 webhooks, 1 KB bodies, no
 * failures, through cotwebhook/node's undici transport and signer; against a loop of the same client
 * (undici request() on a 64-connection Agent) with 64 requests in flight, the same bodies and headers,
 * signed the same way.
 */
export async function dispatchBench(): Promise<Result[]> {
  const receiver = await startReceiver()
  const total = size(24_000, 640)
  try {
    // Two interleaved rounds, best of each: this machine's noise hits all three alike.
    let raw = 0
    let none = 0
    let ordered = 0
    for (let round = 0; round < 2; round++) {
      raw = Math.max(raw, await rawLoop(receiver.url, total))
      none = Math.max(none, await engineRun(receiver, total, 'none'))
      ordered = Math.max(ordered, await engineRun(receiver, total, 'webhook'))
    }
    const detail = (o: string) => `${total.toLocaleString('en')} deliveries to ${WEBHOOKS} webhooks, 1 KB bodies, ${o}; vs raw undici request() loop, 64 in flight`
    return [
      { name: 'dispatch', value: Math.round(none), unit: 'deliveries/s', baseline: Math.round(raw), ratio: round(none / raw), detail: detail("ordering: 'none'") },
      { name: 'dispatch-ordered', value: Math.round(ordered), unit: 'deliveries/s', baseline: Math.round(raw), ratio: round(ordered / raw), detail: detail("ordering: 'webhook' (default)") },
    ]
  } finally {
    await receiver.stop()
  }
}

async function rawLoop(url: string, total: number): Promise<number> {
  const agent = new Agent({ connections: WEBHOOKS })
  const body = JSON.stringify({ ...userEvent(0), diff: {}, extraData: null, createdAt: new Date().toISOString() })
  const signer = nodeSigner()
  const keys = [signer.prepare(generateSecret())]
  let next = 0
  const worker = async () => {
    while (next < total) {
      const i = next++
      // The same work per request as a delivery's attempt: sign, then POST.
      const timestamp = Math.floor(Date.now() / 1000)
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'cotwebhook/bench',
        'webhook-id': `msg_${i}`,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': await signer.sign(keys, `msg_${i}`, timestamp, body),
      }
      const res = await request(`${url}/w${i % WEBHOOKS}`, { method: 'POST', headers, body, dispatcher: agent })
      await res.body.dump()
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: WEBHOOKS }, worker))
  const rate = total / ((performance.now() - start) / 1000)
  await agent.close()
  return rate
}

/** Deliveries per second of one engine run of the dispatch job; `options` add to the engine's. */
export async function engineRun(receiver: Awaited<ReturnType<typeof startReceiver>>, total: number, ordering: 'none' | 'webhook', options: WebhooksOptions = {}): Promise<number> {
  await receiver.control('count')
  const transport = nodeTransport({ connections: WEBHOOKS, allowPrivateNetworks: true })
  const hooks = createWebhooks({ store: memoryStore(), concurrency: WEBHOOKS, ordering, transport, signer: nodeSigner(), allowPrivateNetworks: true, pollIntervalMs: 0, ...options })
  for (let i = 0; i < WEBHOOKS; i++) {
    await hooks.registry.create(COMPANY, { name: `w${i}`, code: `w${i}`, trigger: 'create-edit-delete-user', url: `${receiver.url}/w${i}` })
  }
  const events = total / WEBHOOKS
  const start = performance.now()
  for (let n = 0; n < events; n++) await hooks.emit(userEvent(n))
  await hooks.drain()
  const rate = total / ((performance.now() - start) / 1000)
  await until(async () => (await receiver.stats()).count >= total, 10_000, 'every delivery at the receiver')
  await hooks.close()
  await transport.close()
  return rate
}
