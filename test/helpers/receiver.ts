import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
// node:timers/promises is not replaced by vi.useFakeTimers, so it sleeps in real time.
import { setTimeout as realSleep } from 'node:timers/promises'

/** A request as the receiver saw it. */
export interface Received {
  method: string
  path: string
  headers: Record<string, string>
  body: string
  /** Date.now() when the body was complete (fake when the test fakes Date). */
  at: number
}

/** How to answer one request. */
export interface Reply {
  status?: number
  body?: string
  headers?: Record<string, string>
  /** Wait this long (real time) before answering. */
  delayMs?: number
  /** Destroy the connection instead of answering. */
  reset?: boolean
}

export type Responder = (request: Received, index: number) => Reply | Promise<Reply>

/** A real HTTP receiver on 127.0.0.1 with a free port. */
export interface Receiver {
  url: string
  port: number
  requests: Received[]
  /** Requests being handled right now, and the most seen at once. */
  inFlight: number
  maxInFlight: number
  respond(responder: Responder): void
  close(): Promise<void>
}

export async function startReceiver(responder: Responder = () => ({ status: 200, body: 'ok' })): Promise<Receiver> {
  let current = responder
  const receiver: Receiver = {
    url: '',
    port: 0,
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    respond(next) {
      current = next
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    receiver.inFlight++
    receiver.maxInFlight = Math.max(receiver.maxInFlight, receiver.inFlight)
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', async () => {
      const received: Received = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      }
      const index = receiver.requests.push(received) - 1
      const reply = await current(received, index)
      if (reply.delayMs) await realSleep(reply.delayMs)
      receiver.inFlight--
      if (reply.reset) {
        req.socket.destroy()
        return
      }
      res.writeHead(reply.status ?? 200, reply.headers ?? {})
      res.end(reply.body ?? '')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.port = (server.address() as AddressInfo).port
  receiver.url = `http://127.0.0.1:${receiver.port}`
  return receiver
}

export { realSleep }

/**
 * Polls (in real time) until `check` holds, or fails after `timeoutMs`. The bound is a guard against a
 * hang, never a measure of speed: it is long (15 s by default, under vitest's 20 s test timeout) so a
 * machine busy with other work still passes.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await realSleep(5)
  }
}

/** Answers held until the test lets them go, from {@link heldAnswers}. */
export interface HeldAnswers {
  /** Use in a responder: resolves to `reply` once released (at once after `open()`). */
  hold(reply?: Reply): Promise<Reply>
  /** How many answers are held now. */
  readonly held: number
  /** Lets the oldest `n` held answers go. */
  release(n?: number): void
  /** Lets every held answer go, and holds none from now on. */
  open(): void
}

/**
 * A receiver's answers held until the test releases them, so the moment a request completes is
 * decided by the test, not by how busy the machine is.
 *
 * @example
 * ```ts
 * const gate = heldAnswers()
 * const receiver = await startReceiver(() => gate.hold({ status: 200 }))
 * await until(() => gate.held === 3)
 * gate.open()
 * ```
 */
export function heldAnswers(reply: Reply = { status: 200 }): HeldAnswers {
  const waiting: Array<() => void> = []
  let opened = false
  return {
    hold(answer = reply) {
      if (opened) return Promise.resolve(answer)
      return new Promise((resolve) => waiting.push(() => resolve(answer)))
    },
    get held() {
      return waiting.length
    },
    release(n = 1) {
      for (const go of waiting.splice(0, n)) go()
    },
    open() {
      opened = true
      for (const go of waiting.splice(0)) go()
    },
  }
}
