// A webhook receiver in its own process for the benchmarks: answers 204 at once (503 under /fail, a
// failing endpoint; never under /hang, a hanging one), counts requests and, when asked, records when
// each request (by webhook-id or x-seq) arrived, on a clock comparable across processes
// (performance.timeOrigin + performance.now()).
import { createServer } from 'node:http'

let count = 0
let record = false
let arrivals = {}
const now = () => performance.timeOrigin + performance.now()

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ count, arrivals }))
    return
  }
  if (req.method === 'POST' && req.url?.startsWith('/control/')) {
    record = req.url === '/control/record'
    count = 0
    arrivals = {}
    req.resume()
    req.on('end', () => res.end('ok'))
    return
  }
  // A dead endpoint that never answers: the request is read and left open.
  if (req.url?.startsWith('/hang')) {
    req.resume()
    return
  }
  const at = record ? now() : 0
  req.resume()
  req.on('end', () => {
    count++
    if (record) arrivals[req.headers['x-seq'] ?? req.headers['webhook-id']] = at
    res.writeHead(req.url?.startsWith('/fail') ? 503 : 204)
    res.end()
  })
})
server.keepAliveTimeout = 30_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
