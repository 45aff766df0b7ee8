import { Webhook } from 'standardwebhooks'
import { describe, expect, it } from 'vitest'
import { generateSecret, webCryptoSigner } from 'cotwebhook'
import { nodeSigner, nodeTransport } from 'cotwebhook/node'

describe('nodeSigner()', () => {
  it('makes the same signatures as the WebCrypto signer, which standardwebhooks accepts', async () => {
    const secrets = [generateSecret(), generateSecret()]
    const node = nodeSigner()
    const nodeKeys = secrets.map((s) => node.prepare(s))
    const webKeys = await Promise.all(secrets.map((s) => webCryptoSigner.prepare(s)))
    const body = JSON.stringify({ hello: 'wörld', n: 1 })
    const timestamp = Math.floor(Date.now() / 1000)
    const header = await node.sign(nodeKeys, 'msg_1', timestamp, body)
    expect(header).toBe(await webCryptoSigner.sign(webKeys, 'msg_1', timestamp, body))
    expect(header.split(' ')).toHaveLength(2)
    for (const secret of secrets) {
      const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(timestamp), 'webhook-signature': header }
      expect(new Webhook(secret).verify(body, headers)).toEqual({ hello: 'wörld', n: 1 })
    }
  })

  it('refuses an empty secret', () => {
    expect(() => nodeSigner().prepare('whsec_')).toThrow('a whsec_ secret must not be empty')
  })
})

describe('nodeTransport()', () => {
  it('refuses a pool without connections', () => {
    expect(() => nodeTransport({ connections: 0 })).toThrow('connections must be a positive integer, not 0')
  })

  it('opens one connection per timed-out attempt, not a second one after the timeout', async () => {
    const { createServer } = await import('node:http')
    let connections = 0
    const server = createServer((req) => void req.resume()) // never answers
    server.on('connection', () => connections++)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hang`
    const transport = nodeTransport({ allowPrivateNetworks: true })
    try {
      for (let attempt = 1; attempt <= 3; attempt++) {
        const controller = new AbortController()
        const timer = setTimeout(() => controller.abort(new Error('timed out')), 100)
        await expect(transport({ url, headers: { 'content-type': 'application/json' }, body: '{}', signal: controller.signal, timeoutMs: 100, maxResponseBytes: 100 }))
          .rejects.toThrow('timed out')
        clearTimeout(timer)
        // Aborted through a signal, undici's client connected again for the aborted request right away
        // (nodejs/undici#5845): two connections per attempt within a few milliseconds.
        await new Promise((resolve) => setTimeout(resolve, 200))
        expect(connections).toBe(attempt)
      }
    } finally {
      await transport.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('createNodeWebhooks()', () => {
  it('delivers through the undici pool with node:crypto signatures that standardwebhooks accepts', async () => {
    const { startReceiver } = await import('./helpers/receiver.js')
    const receiver = await startReceiver()
    const { createNodeWebhooks } = await import('cotwebhook/node')
    const hooks = createNodeWebhooks({ concurrency: 4, allowPrivateNetworks: true })
    try {
      const company = '625be93a286ef83c1c0e845f'
      const { secret } = await hooks.registry.create(company, { name: 'n', code: 'n', trigger: 'create-edit-delete-user', url: receiver.url })
      await hooks.emit({ company, type: 'COTUser', event: 'create', data: { _id: company } })
      await hooks.drain()
      expect(receiver.requests).toHaveLength(1)
      expect(new Webhook(secret).verify(receiver.requests[0]!.body, receiver.requests[0]!.headers)).toMatchObject({ type: 'COTUser' })
    } finally {
      await hooks.close()
      await receiver.close()
    }
  })
})
