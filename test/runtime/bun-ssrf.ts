// Run by Bun (test/runtime-matrix.test.ts): what nodeTransport refuses there, proven by a listener.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { nodeTransport } from 'cotwebhook/node'

let hits = 0
const server = createServer((_req, res) => {
  hits++
  res.end('reached')
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
const port = (server.address() as AddressInfo).port
const request = (url: string) => ({ url, headers: {}, body: '{}', signal: AbortSignal.timeout(3_000), maxResponseBytes: 100 })
const outcome = async (transport: ReturnType<typeof nodeTransport>, url: string) => {
  try {
    return (await transport(request(url))).body
  } catch (error) {
    return (error as { code?: string }).code ?? String(error)
  }
}

// A name whose DNS answer is this machine, a literal loopback address, and the control with private networks allowed.
const guarded = nodeTransport({ lookup: (_host, _options, callback) => callback(null, [{ address: '127.0.0.1', family: 4 }]) })
const open = nodeTransport({ allowPrivateNetworks: true })
const result = {
  runtime: `bun ${(process.versions as Record<string, string>).bun}`,
  name: await outcome(guarded, `http://inward.example.com:${port}/`),
  literal: await outcome(guarded, `http://127.0.0.1:${port}/`),
  hitsBeforeControl: hits,
  control: await outcome(open, `http://127.0.0.1:${port}/`),
}
await guarded.close()
await open.close()
server.close()
console.log(JSON.stringify(result))
