import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UnsafeUrlError, createWebhooks, memoryStore, objectId, type COTWebhook, type Store } from 'cotwebhook'
import { nodeTransport, type Resolver } from 'cotwebhook/node'
import { COMPANY } from '../helpers/fixtures.js'

/**
 * Every destination that is not on the public internet is refused, in every spelling, and a real
 * listener on this machine proves none of them was reached. The listener binds `::` (dual stack),
 * so a connection to 127.0.0.1, ::1, 0.0.0.0 or :: on its port would be counted.
 */

let listener: Server
let port = 0
let connections = 0
// Sockets undici actually connected, anywhere.
let undiciConnects = 0
const onConnected = () => {
  undiciConnects++
}

beforeAll(async () => {
  listener = createServer((_req, res) => res.end('reached'))
  listener.on('connection', () => connections++)
  await new Promise<void>((resolve) => listener.listen({ port: 0, host: '::', ipv6Only: false }, resolve))
  port = (listener.address() as AddressInfo).port
  subscribe('undici:client:connected', onConnected)
})

afterAll(async () => {
  unsubscribe('undici:client:connected', onConnected)
  listener.closeAllConnections()
  await new Promise<void>((resolve) => listener.close(() => resolve()))
})

type Row = { url: (p: number) => string; why: RegExp; loopback?: boolean }

// The URL as written, and the words of the refusal. Loopback rows carry the listener's port.
const REFUSED: Row[] = [
  { url: (p) => `http://127.0.0.1:${p}/hook`, why: /loopback address/, loopback: true },
  { url: (p) => `http://127.1:${p}/hook`, why: /127\.0\.0\.1 is a loopback address/, loopback: true },
  { url: (p) => `http://2130706433:${p}/hook`, why: /127\.0\.0\.1 is a loopback address/, loopback: true },
  { url: (p) => `http://0x7f000001:${p}/hook`, why: /127\.0\.0\.1 is a loopback address/, loopback: true },
  { url: (p) => `http://0177.0.0.1:${p}/hook`, why: /127\.0\.0\.1 is a loopback address/, loopback: true },
  { url: (p) => `http://0x7f.0.0.1:${p}/hook`, why: /127\.0\.0\.1 is a loopback address/, loopback: true },
  { url: (p) => `http://127.0.0.1.:${p}/hook`, why: /loopback address/, loopback: true },
  { url: (p) => `http://127.255.255.254:${p}/hook`, why: /loopback address/, loopback: true },
  { url: (p) => `http://[::1]:${p}/hook`, why: /::1 is a loopback address/, loopback: true },
  { url: (p) => `http://[0:0:0:0:0:0:0:1]:${p}/hook`, why: /::1 is a loopback address/, loopback: true },
  { url: (p) => `http://[::ffff:127.0.0.1]:${p}/hook`, why: /::ffff:7f00:1 is a loopback address/, loopback: true },
  { url: (p) => `http://[::127.0.0.1]:${p}/hook`, why: /IPv4-compatible address/, loopback: true },
  { url: (p) => `http://0.0.0.0:${p}/hook`, why: /unspecified address/, loopback: true },
  { url: (p) => `http://0:${p}/hook`, why: /0\.0\.0\.0 is an unspecified address/, loopback: true },
  { url: (p) => `http://[::]:${p}/hook`, why: /:: is an unspecified address/, loopback: true },
  { url: (p) => `http://localhost:${p}/hook`, why: /loopback name/, loopback: true },
  { url: (p) => `http://LOCALHOST.:${p}/hook`, why: /loopback name/, loopback: true },
  { url: (p) => `http://api.localhost:${p}/hook`, why: /loopback name/, loopback: true },
  { url: () => 'http://10.0.0.1/hook', why: /private \(RFC 1918\)/ },
  { url: () => 'http://172.16.5.4/hook', why: /private \(RFC 1918\)/ },
  { url: () => 'http://192.168.1.1/hook', why: /private \(RFC 1918\)/ },
  { url: () => 'http://169.254.169.254/latest/meta-data/', why: /link-local address/ },
  { url: () => 'http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/', why: /169\.254\.169\.254 is a link-local/ },
  { url: () => 'http://2852039166/latest/meta-data/', why: /169\.254\.169\.254 is a link-local/ },
  { url: () => 'http://[fd00:ec2::254]/latest/meta-data/', why: /unique-local address/ },
  { url: () => 'http://100.64.0.1/hook', why: /carrier-grade NAT/ },
  { url: () => 'http://224.0.0.1/hook', why: /multicast/ },
  { url: () => 'http://239.255.255.250:1900/hook', why: /multicast/ },
  { url: () => 'http://240.0.0.1/hook', why: /reserved/ },
  { url: () => 'http://255.255.255.255/hook', why: /broadcast/ },
  { url: () => 'http://192.0.2.10/hook', why: /reserved/ },
  { url: () => 'http://198.18.0.1/hook', why: /reserved/ },
  { url: () => 'http://[fc00::1]/hook', why: /unique-local/ },
  { url: () => 'http://[fe80::1]/hook', why: /link-local/ },
  { url: () => 'http://[ff02::1]/hook', why: /multicast/ },
  { url: () => 'http://[::ffff:10.0.0.1]/hook', why: /private \(RFC 1918\)/ },
  { url: () => 'http://[::ffff:169.254.169.254]/hook', why: /link-local/ },
  { url: () => 'http://[64:ff9b::7f00:1]/hook', why: /NAT64/ },
  { url: () => 'http://[64:ff9b:1::a9fe:a9fe]/hook', why: /NAT64/ },
  { url: () => 'http://[2002:7f00:1::]/hook', why: /6to4/ },
  { url: () => 'http://[2001::1]/hook', why: /Teredo/ },
  { url: () => 'http://[2001:db8::1]/hook', why: /reserved/ },
]

// Refused by the URL rules, before any address question.
const REFUSED_BY_RULE: Row[] = [
  { url: () => 'file:///etc/passwd', why: /scheme file is not allowed/ },
  { url: () => 'gopher://127.0.0.1:70/', why: /scheme gopher is not allowed/ },
  { url: () => 'ftp://example.com/', why: /scheme ftp is not allowed/ },
  { url: (p) => `http://user:pass@127.0.0.1:${p}/`, why: /credentials in the URL/ },
  { url: () => 'not a url', why: /url: must be an absolute/ },
]

const transportRequest = (url: string) => ({
  url,
  headers: { 'content-type': 'application/json' },
  body: '{}',
  signal: AbortSignal.timeout(5_000),
  maxResponseBytes: 1_024,
})

describe(`SSRF: ${REFUSED.length + REFUSED_BY_RULE.length} refused URLs, none reached`, () => {
  it.each(REFUSED.map((row) => [row.url(1234), row] as const))('%s is refused at create and by the transport', async (_, row) => {
    const url = row.url(port)
    const before = { connections, undiciConnects }
    const hooks = createWebhooks({ onError: () => {} })
    const transport = nodeTransport({ connections: 1 })
    try {
      const create = hooks.registry.create(COMPANY, { name: 'x', code: 'x', trigger: 'logout-user', url })
      await expect(create).rejects.toThrow(UnsafeUrlError)
      await expect(create).rejects.toThrow(row.why)
      expect((await hooks.registry.list(COMPANY)).count).toBe(0)
      // The transport alone (what a stored URL meets at delivery) refuses it too, without a connection.
      const error = await transport(transportRequest(url)).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message: string },
      )
      expect(error, 'the transport sent the request').toBeDefined()
      if (!/localhost/i.test(url)) {
        expect(error!.code).toBe('ERR_UNSAFE_DESTINATION')
        expect(error!.message).toMatch(row.why)
      } else {
        // Names are resolved: localhost is refused by address, a name that does not resolve fails to.
        expect(['ERR_UNSAFE_DESTINATION', 'ENOTFOUND', 'EAI_AGAIN']).toContain(error!.code)
      }
    } finally {
      await hooks.close()
      await transport.close()
    }
    expect(connections - before.connections, 'the listener saw a connection').toBe(0)
    expect(undiciConnects - before.undiciConnects, 'undici connected a socket').toBe(0)
  })

  it.each(REFUSED_BY_RULE.map((row) => [row.url(1234), row] as const))('%s is refused by the URL rules', async (_, row) => {
    const before = connections
    const hooks = createWebhooks({ onError: () => {} })
    try {
      await expect(hooks.registry.create(COMPANY, { name: 'x', code: 'x', trigger: 'logout-user', url: row.url(port) })).rejects.toThrow(row.why)
    } finally {
      await hooks.close()
    }
    expect(connections - before).toBe(0)
  })

  it('httpsOnly refuses http URLs and takes https ones', async () => {
    const hooks = createWebhooks({ httpsOnly: true, onError: () => {} })
    try {
      await expect(hooks.registry.create(COMPANY, { name: 'x', code: 'x', trigger: 'logout-user', url: 'http://example.com/hook' })).rejects.toThrow(
        'url: scheme http is not allowed: this sender delivers over https only',
      )
      const { webhook } = await hooks.registry.create(COMPANY, { name: 'x', code: 'y', trigger: 'logout-user', url: 'https://example.com/hook' })
      expect(webhook.url).toBe('https://example.com/hook')
    } finally {
      await hooks.close()
    }
  })

  it('allowCidrs lets one private range through and no other; a bad CIDR fails at start-up', async () => {
    const hooks = createWebhooks({ allowCidrs: ['10.20.0.0/16', 'fd00:1::/64'], onError: () => {} })
    try {
      await hooks.registry.create(COMPANY, { name: 'x', code: 'a', trigger: 'logout-user', url: 'http://10.20.3.4/hook' })
      await hooks.registry.create(COMPANY, { name: 'x', code: 'b', trigger: 'logout-user', url: 'http://[fd00:1::5]/hook' })
      await expect(hooks.registry.create(COMPANY, { name: 'x', code: 'c', trigger: 'logout-user', url: 'http://10.21.0.1/hook' })).rejects.toThrow(/private/)
      await expect(hooks.registry.create(COMPANY, { name: 'x', code: 'd', trigger: 'logout-user', url: `http://127.0.0.1:${port}/` })).rejects.toThrow(/loopback/)
    } finally {
      await hooks.close()
    }
    // Allowing a NAT64 or 6to4 gateway prefix does not allow the private addresses it can carry.
    const gateway = createWebhooks({ allowCidrs: ['64:ff9b::/96', '2002::/16'], onError: () => {} })
    try {
      await gateway.registry.create(COMPANY, { name: 'x', code: 'a', trigger: 'logout-user', url: 'http://[64:ff9b::5db8:d822]/hook' })
      await expect(gateway.registry.create(COMPANY, { name: 'x', code: 'b', trigger: 'logout-user', url: 'http://[64:ff9b::a9fe:a9fe]/' })).rejects.toThrow(/carrying 169\.254\.169\.254, a link-local address/)
      await expect(gateway.registry.create(COMPANY, { name: 'x', code: 'c', trigger: 'logout-user', url: 'http://[2002:7f00:1::]/' })).rejects.toThrow(/carrying 127\.0\.0\.1, a loopback address/)
    } finally {
      await gateway.close()
    }
    expect(() => createWebhooks({ allowCidrs: ['10.0.0.0/33'] })).toThrow('allowCidrs[0]: "10.0.0.0/33" is not a CIDR')
    expect(() => nodeTransport({ allowCidrs: ['nope'] })).toThrow('allowCidrs[0]: "nope" is not a CIDR')
  })

  it('a URL stored before the policy tightened ends failed at delivery, unsent, with the reason in its log', async () => {
    const store: Store = memoryStore()
    const urls = REFUSED.filter((row) => row.loopback).map((row) => row.url(port))
    const ids: string[] = []
    for (const [i, url] of urls.entries()) {
      const webhook: COTWebhook = {
        _id: objectId(), company: COMPANY, isActive: true, trigger: 'logout-user', url, name: 'x', code: `c${i}`,
        context: { survey: '', group: '', taskGroup: '' }, __v: 0, description: '',
      }
      // Written straight into the store: as an older version, or allowPrivateNetworks turned off since, left it.
      expect(await store.insertWebhook({ webhook, secrets: ['whsec_' + Buffer.alloc(32, 1).toString('base64')] })).toBe(true)
      ids.push(webhook._id)
    }
    const before = connections
    const transport = nodeTransport({ connections: 4 })
    const hooks = createWebhooks({ store, transport, onError: () => {} })
    try {
      const { deliveries } = await hooks.emit({ company: COMPANY, type: 'Auth', event: 'logout', data: null })
      expect(deliveries).toHaveLength(urls.length)
      await hooks.drain()
      for (const id of ids) {
        const [log] = await hooks.logs(COMPANY, id)
        expect(log).toMatchObject({ state: 'failed', status: null, attempts: [] })
        expect(log!.response).toMatch(/^not sent: url: .*(loopback|unspecified|IPv4-compatible)/)
      }
    } finally {
      await hooks.close()
      await transport.close()
    }
    expect(connections - before).toBe(0)
  })

  it('the control: with allowPrivateNetworks the same loopback spellings do reach the listener', async () => {
    const transport = nodeTransport({ connections: 1, allowPrivateNetworks: true })
    try {
      const rows = REFUSED.filter((r) => r.loopback && !/localhost|\[::127/i.test(r.url(0)))
      expect(rows.length).toBeGreaterThanOrEqual(14)
      const before = connections
      for (const row of rows) {
        const response = await transport(transportRequest(row.url(port)))
        expect(response.body, row.url(port)).toBe('reached')
      }
      expect(connections - before).toBeGreaterThan(0)
    } finally {
      await transport.close()
    }
  })
})

describe('SSRF: DNS answers are vetted and pinned', () => {
  /** A resolver answering from a table, counting calls; a list of answers is served in turn. */
  function fakeDns(table: Record<string, Array<Array<{ address: string; family: 4 | 6 }>>>) {
    const calls: string[] = []
    const resolver: Resolver = (hostname, _options, callback) => {
      calls.push(hostname)
      const answers = table[hostname]
      if (!answers) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])
      const answer = answers[Math.min(calls.filter((h) => h === hostname).length - 1, answers.length - 1)]!
      setImmediate(() => callback(null, answer))
    }
    return { resolver, calls }
  }

  it('a host name that resolves to 127.0.0.1 is refused at connect, and the listener is not reached', async () => {
    const dns = fakeDns({ 'loopback.example.com': [[{ address: '127.0.0.1', family: 4 }]] })
    const before = connections
    const transport = nodeTransport({ connections: 1, lookup: dns.resolver })
    try {
      await expect(transport(transportRequest(`http://loopback.example.com:${port}/hook`))).rejects.toMatchObject({
        code: 'ERR_UNSAFE_DESTINATION',
        // The log is the tenant's: it says the name points inward, not where (the operator's error has that).
        message: 'loopback.example.com was not connected to: it resolves to no public address',
        reasons: ['127.0.0.1 is a loopback address'],
      })
    } finally {
      await transport.close()
    }
    expect(dns.calls).toEqual(['loopback.example.com'])
    expect(connections - before).toBe(0)
  })

  it('a name answering public and private addresses is connected to a public one only', async () => {
    // Both answers are this machine's: ::1 would reach the listener, 127.0.0.2 (allowed by CIDR) answers via `::`.
    const dns = fakeDns({ 'mixed.example.com': [[{ address: '::1', family: 6 }, { address: '127.0.0.2', family: 4 }]] })
    const transport = nodeTransport({ connections: 1, lookup: dns.resolver, allowCidrs: ['127.0.0.2/32'] })
    const seen: string[] = []
    const onConnection = (socket: { remoteAddress?: string; localAddress?: string }) => seen.push(socket.localAddress ?? '')
    listener.on('connection', onConnection)
    try {
      const response = await transport(transportRequest(`http://mixed.example.com:${port}/hook`))
      expect(response.body).toBe('reached')
    } finally {
      listener.off('connection', onConnection)
      await transport.close()
    }
    // The only connection went to the allowed address, never to ::1.
    expect(seen).toEqual(['::ffff:127.0.0.2'])
  })

  it('DNS rebinding: a name that answers an allowed address first and 127.0.0.1 afterwards never reaches 127.0.0.1', async () => {
    // 127.0.0.2 stands for a public address (allowed by CIDR, and answered by the listener on `::`);
    // every later answer is 127.0.0.1, as a rebinding attacker's name server would give.
    const dns = fakeDns({ 'rebind.example.com': [[{ address: '127.0.0.2', family: 4 }], [{ address: '127.0.0.1', family: 4 }]] })
    const seen: string[] = []
    const onConnection = (socket: { localAddress?: string }) => seen.push(socket.localAddress ?? '')
    listener.on('connection', onConnection)
    const url = `http://rebind.example.com:${port}/hook`
    try {
      // Each transport has its own pool, so each request makes a connection and asks DNS again.
      for (let round = 0; round < 3; round++) {
        const transport = nodeTransport({ connections: 1, lookup: dns.resolver, allowCidrs: ['127.0.0.2/32'] })
        try {
          const outcome = await transport(transportRequest(url)).then(
            (response) => response.body,
            (error: { code?: string; message: string }) => `${error.code}: ${error.message}`,
          )
          expect(outcome).toBe(round === 0 ? 'reached' : 'ERR_UNSAFE_DESTINATION: rebind.example.com was not connected to: it resolves to no public address')
        } finally {
          await transport.close()
        }
      }
    } finally {
      listener.off('connection', onConnection)
    }
    expect(dns.calls).toEqual(['rebind.example.com', 'rebind.example.com', 'rebind.example.com'])
    // The only connection went to the answer that was vetted with it; the rebinding answer was never dialled.
    expect(seen).toEqual(['::ffff:127.0.0.2'])
  })

  it('through the engine: a webhook whose name rebinds inward logs the refusal without the address', async () => {
    const dns = fakeDns({ 'inward.example.com': [[{ address: '10.1.2.3', family: 4 }]] })
    const transport = nodeTransport({ connections: 1, lookup: dns.resolver })
    const hooks = createWebhooks({ transport, retry: { schedule: [] }, onError: () => {} })
    try {
      const { webhook } = await hooks.registry.create(COMPANY, { name: 'in', code: 'in', trigger: 'logout-user', url: `http://inward.example.com:${port}/hook` })
      await hooks.emit({ company: COMPANY, type: 'Auth', event: 'logout', data: null })
      await hooks.drain()
      const [log] = await hooks.logs(COMPANY, webhook._id)
      expect(log!.attempts[0]!.error).toBe('unsafe: inward.example.com was not connected to: it resolves to no public address (ERR_UNSAFE_DESTINATION)')
      expect(JSON.stringify(log)).not.toContain('10.1.2.3')
    } finally {
      await hooks.close()
      await transport.close()
    }
  })

  it('createNodeWebhooks pins with the engine\'s own policy', async () => {
    const { createNodeWebhooks } = await import('cotwebhook/node')
    const dns = fakeDns({ 'inward.example.com': [[{ address: '127.0.0.1', family: 4 }]], 'office.example.com': [[{ address: '127.0.0.2', family: 4 }]] })
    const hooks = createNodeWebhooks({ concurrency: 2, retry: { schedule: [] }, lookup: dns.resolver, allowCidrs: ['127.0.0.2/32'], onError: () => {} })
    const seen: string[] = []
    const onConnection = (socket: { localAddress?: string }) => seen.push(socket.localAddress ?? '')
    listener.on('connection', onConnection)
    try {
      await expect(hooks.registry.create(COMPANY, { name: 'x', code: 'x', trigger: 'logout-user', url: `http://localhost:${port}/` })).rejects.toThrow(/loopback name/)
      const inward = await hooks.registry.create(COMPANY, { name: 'x', code: 'y', trigger: 'logout-user', url: `http://inward.example.com:${port}/` })
      const office = await hooks.registry.create(COMPANY, { name: 'x', code: 'z', trigger: 'logout-user', url: `http://office.example.com:${port}/` })
      await hooks.emit({ company: COMPANY, type: 'Auth', event: 'logout', data: null })
      await hooks.drain()
      expect((await hooks.logs(COMPANY, inward.webhook._id))[0]!.attempts[0]!.error).toMatch(/^unsafe: inward\.example\.com was not connected to/)
      expect((await hooks.logs(COMPANY, office.webhook._id))[0]).toMatchObject({ state: 'succeeded', response: 'reached' })
    } finally {
      listener.off('connection', onConnection)
      await hooks.close()
    }
    // The engine's allowCidrs reached the transport: the allowed name was connected, the inward one never.
    expect(seen).toEqual(['::ffff:127.0.0.2'])
  })
})
