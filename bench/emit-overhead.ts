import { Pool } from 'undici'
import { round, size, startChild, startReceiver, type Result } from './lib.js'

/**
 * Requests per second of a Hono app (another process) whose handler emits one event, deliveries going
 * to a loopback receiver (a third process), against the same app without emit, under the same load
 * generator: 32 connections, keep-alive, for a fixed time.
 */
export async function emitOverheadBench(): Promise<Result> {
  const receiver = await startReceiver()
  const seconds = size(4, 1)
  try {
    let without = 0
    let withEmit = 0
    let emitOnly = 0
    // Two interleaved rounds, best of each.
    for (let round = 0; round < 2; round++) {
      without = Math.max(without, await load(receiver.url, '0', seconds))
      withEmit = Math.max(withEmit, await load(receiver.url, '1', seconds))
      emitOnly = Math.max(emitOnly, await load(receiver.url, 'store', seconds))
    }
    return {
      name: 'emit-overhead',
      value: Math.round(withEmit),
      unit: 'requests/s',
      baseline: Math.round(without),
      ratio: round(withEmit / without),
      detail:
        `Hono on @hono/node-server, handler emits 1 event (memory store, delivered to a loopback receiver) vs the same app without emit; 32 connections, ${seconds} s; ` +
        `overhead ${round((1 - withEmit / without) * 100, 1)}% with the deliveries sent by the same process, ${round((1 - emitOnly / without) * 100, 1)}% for emit() alone (${Math.round(emitOnly)} requests/s, delivery left to another instance)`,
    }
  } finally {
    await receiver.stop()
  }
}

async function load(receiverUrl: string, emit: '0' | '1' | 'store', seconds: number): Promise<number> {
  const app = await startChild('./app-process.ts', { EMIT: emit, RECEIVER: receiverUrl })
  const pool = new Pool(`http://127.0.0.1:${app.port}`, { connections: 32 })
  const body = JSON.stringify({ name: 'Replace the pump', notes: 'x'.repeat(600) })
  const fire = async (until: number, counter: { n: number }) => {
    while (performance.now() < until) {
      const res = await pool.request({ path: '/tasks', method: 'POST', headers: { 'content-type': 'application/json' }, body })
      await res.body.dump()
      counter.n++
    }
  }
  // Warm up, then measure.
  await Promise.all(Array.from({ length: 32 }, () => fire(performance.now() + 500, { n: 0 })))
  const counter = { n: 0 }
  const start = performance.now()
  await Promise.all(Array.from({ length: 32 }, () => fire(start + seconds * 1000, counter)))
  const rate = counter.n / ((performance.now() - start) / 1000)
  await pool.close()
  await app.stop()
  return rate
}
