import { describe, expect, it } from 'vitest'
import { sendLanes } from '../src/send-lanes.js'
import { until } from './helpers/receiver.js'

/** A send the test finishes when it wants. */
function deferred() {
  let finish!: (value: string) => void
  const promise = new Promise<string>((resolve) => (finish = resolve))
  return { promise, finish }
}

describe('send lanes', () => {
  it('hold at most `concurrency` sends in the main lane, the rest in line, each started as a slot frees', async () => {
    const lanes = sendLanes({ concurrency: 2, slowAfterMs: Infinity, fullAfterMs: Infinity, slowSlots: 0, moved: () => {} })
    const sends = [deferred(), deferred(), deferred()]
    const started: number[] = []
    const runs = sends.map((d, i) => lanes.run('http://a.example/x', () => (started.push(i), d.promise)))
    await new Promise((r) => setTimeout(r, 5))
    expect(started).toEqual([0, 1])
    expect(lanes.saturated()).toBe(true)
    sends[1]!.finish('one')
    await expect(runs[1]).resolves.toBe('one')
    await until(() => started.length === 3)
    sends[0]!.finish('zero')
    sends[2]!.finish('two')
    await expect(Promise.all(runs)).resolves.toEqual(['zero', 'one', 'two'])
    expect(lanes.saturated()).toBe(false)
  })

  it('let a guest send past a full main lane into a free guest slot, and queue guests once those are taken', async () => {
    const lanes = sendLanes({ concurrency: 1, slowAfterMs: Infinity, fullAfterMs: Infinity, slowSlots: 0, guestSlots: 1, moved: () => {} })
    const sends = [deferred(), deferred(), deferred(), deferred()]
    const started: number[] = []
    const pass = { release: () => {} }
    const run = (i: number, guest: boolean) => lanes.run('http://a.example/x', () => (started.push(i), sends[i]!.promise), guest ? pass : undefined)
    const runs = [run(0, false), run(1, true), run(2, true), run(3, false)]
    await new Promise((r) => setTimeout(r, 5))
    // The main slot and the guest slot; the second guest waits in line like any send.
    expect(started).toEqual([0, 1])
    sends[1]!.finish('guest')
    await expect(runs[1]).resolves.toBe('guest')
    // A freed guest slot is for the next guest that comes, not for the line (which waits for the main slot).
    await new Promise((r) => setTimeout(r, 5))
    expect(started).toEqual([0, 1])
    sends[0]!.finish('zero')
    await until(() => started.length === 3)
    expect(started).toEqual([0, 1, 2])
    sends[2]!.finish('two')
    await until(() => started.length === 4)
    sends[3]!.finish('three')
    await expect(Promise.all(runs)).resolves.toEqual(['zero', 'guest', 'two', 'three'])
    // Without guest slots a guest is one more send in line.
    const plain = sendLanes({ concurrency: 1, slowAfterMs: Infinity, fullAfterMs: Infinity, slowSlots: 0, moved: () => {} })
    const held = deferred()
    const first = plain.run('http://a.example/x', () => held.promise)
    let guestStarted = false
    const guest = plain.run('http://a.example/x', async () => ((guestStarted = true), 'g'), { release: () => {} })
    await new Promise((r) => setTimeout(r, 5))
    expect(guestStarted).toBe(false)
    held.finish('h')
    await expect(Promise.all([first, guest])).resolves.toEqual(['h', 'g'])
  })

  it('give the slot back when a send throws before it starts, or fails', async () => {
    const lanes = sendLanes({ concurrency: 1, slowAfterMs: 1_000, fullAfterMs: 50, slowSlots: 1, moved: () => {} })
    await expect(lanes.run('http://a.example/x', () => { throw new Error('at once') })).rejects.toThrow('at once')
    await expect(lanes.run('http://a.example/x', () => Promise.reject(new Error('later')))).rejects.toThrow('later')
    await expect(lanes.run('http://a.example/x', async () => 'ok')).resolves.toBe('ok')
    expect(lanes.saturated()).toBe(false)
  })

  it('move a slow send to the slow lane, freeing its main slot for the next, and tell when it moves and ends', async () => {
    const moves: number[] = []
    const lanes = sendLanes({ concurrency: 1, slowAfterMs: 30, fullAfterMs: 30, slowSlots: 2, moved: (d) => moves.push(d) })
    const slow = deferred()
    const slowRun = lanes.run('http://dead.example/x', () => slow.promise)
    let nextStarted = false
    const next = lanes.run('http://ok.example/y', async () => ((nextStarted = true), 'next'))
    // The next send waits for the only main slot until the sweep finds the first one slow.
    await until(() => nextStarted, 5_000, 'the queued send to start once the slow one moved')
    expect(moves).toEqual([1])
    await expect(next).resolves.toBe('next')
    expect(lanes.slow()).toBe(1)
    slow.finish('late')
    await expect(slowRun).resolves.toBe('late')
    expect(moves).toEqual([1, -1])
    expect(lanes.slow()).toBe(0)
    expect(lanes.saturated()).toBe(false)
  })
  it('put a guest in its guest slot even with a main slot free, and on its move to the slow lane give its pass back instead of telling of a freed main slot', async () => {
    const moves: number[] = []
    const lanes = sendLanes({ concurrency: 1, slowAfterMs: 30, fullAfterMs: 30, slowSlots: 2, guestSlots: 1, moved: (d) => moves.push(d) })
    let released = 0
    const pass = { release: () => void released++ }
    const hung = deferred()
    const guestRun = lanes.run('http://dead.example/x', () => hung.promise, pass)
    // The main slot stays free for the dispatcher's claims: a send that comes now starts at once.
    let plainStarted = false
    const plain = lanes.run('http://ok.example/y', async () => ((plainStarted = true), 'plain'))
    await new Promise((r) => setTimeout(r, 5))
    expect(plainStarted).toBe(true)
    await expect(plain).resolves.toBe('plain')
    await until(() => lanes.slow() === 1, 5_000, 'the hanging guest to move to the slow lane')
    expect(released).toBe(1)
    expect(moves).toEqual([])
    // Its guest slot is free again: the next guest goes at once while the first still hangs.
    const next = deferred()
    let nextStarted = false
    const nextRun = lanes.run('http://a.example/z', () => ((nextStarted = true), next.promise), { release: () => {} })
    await new Promise((r) => setTimeout(r, 5))
    expect(nextStarted).toBe(true)
    hung.finish('late')
    next.finish('next')
    await expect(Promise.all([guestRun, nextRun])).resolves.toEqual(['late', 'next'])
    expect(moves).toEqual([])
    expect(lanes.slow()).toBe(0)
  })
})
