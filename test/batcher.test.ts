import { describe, expect, it } from 'vitest'
import { batcher } from '../adapters/sql/batcher.js'

/**
 * The SQL stores' batcher: calls made while a flush is under way go in the next one; with `keyOf`, a
 * key with nothing else here goes in a second lane beside the main one. Every flush is held until the
 * test lets it go, so what runs at once is counted, never timed.
 */

type Item = { key?: string; n: number }

/** A flush the test answers: each call is recorded with the items it got and held until `release`. */
function heldFlush(fail?: (items: Item[]) => boolean) {
  const calls: Array<{ items: number[]; release: () => void }> = []
  let running = 0
  let most = 0
  const flush = (items: Item[]) => {
    running++
    most = Math.max(most, running)
    return new Promise<Array<string | Error>>((resolve, reject) => {
      calls.push({
        items: items.map((item) => item.n),
        release: () => {
          running--
          if (fail?.(items)) reject(new Error(`flush of ${items.map((item) => item.n).join(',')} failed`))
          else resolve(items.map((item) => `done ${item.n}`))
        },
      })
    })
  }
  return { flush, calls, most: () => most }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

describe('batcher', () => {
  it('gathers the calls made during a flush into the next one, one flush at a time', async () => {
    const { flush, calls, most } = heldFlush()
    const call = batcher(flush, { maxBatch: 10 })
    const first = call({ n: 1 })
    const rest = [call({ n: 2 }), call({ n: 3 })]
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1]])
    calls[0]!.release()
    await expect(first).resolves.toBe('done 1')
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3]])
    calls[1]!.release()
    await expect(Promise.all(rest)).resolves.toEqual(['done 2', 'done 3'])
    expect(most()).toBe(1)
  })

  it('flushes a quiet key’s lone item beside a busy key’s batch instead of after it', async () => {
    const { flush, calls, most } = heldFlush()
    const call = batcher(flush, { maxBatch: 10, defer: setImmediate, keyOf: (item) => item.key })
    // The busy key's first item takes the second lane, its next ones the main lane.
    const busy = [call({ key: 'busy', n: 1 }), call({ key: 'busy', n: 2 }), call({ key: 'busy', n: 3 })]
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3]])
    // Both lanes are flushing: the quiet item waits in the second lane, the busy one in the main lane.
    const quiet = call({ key: 'quiet', n: 4 })
    const alsoBusy = call({ key: 'busy', n: 5 })
    await turn()
    expect(calls).toHaveLength(2)
    calls[0]!.release()
    await turn()
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3], [4]])
    calls[2]!.release()
    await expect(quiet).resolves.toBe('done 4')
    // Item 5 still waits for the main lane's flush of 2 and 3.
    expect(calls).toHaveLength(3)
    calls[1]!.release()
    await turn()
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3], [4], [5]])
    calls[3]!.release()
    await expect(Promise.all([...busy, alsoBusy])).resolves.toEqual(['done 1', 'done 2', 'done 3', 'done 5'])
    expect(most()).toBe(2)
  })

  it('puts items without a key in the main lane, behind its flush', async () => {
    const { flush, calls } = heldFlush()
    const call = batcher(flush, { maxBatch: 10, defer: setImmediate, keyOf: (item) => item.key })
    const main = [call({ n: 1 }), call({ n: 2 })]
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1, 2]])
    const keyless = call({ n: 3 })
    const keyed = call({ key: 'quiet', n: 4 })
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1, 2], [4]])
    calls[1]!.release()
    calls[0]!.release()
    await turn()
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[1, 2], [4], [3]])
    calls[2]!.release()
    await expect(Promise.all([...main, keyless, keyed])).resolves.toEqual(['done 1', 'done 2', 'done 3', 'done 4'])
  })

  it('never runs more than two flushes, however many keys are quiet', async () => {
    const { flush, calls, most } = heldFlush()
    const call = batcher(flush, { maxBatch: 10, defer: setImmediate, keyOf: (item) => item.key })
    // Every key is quiet: the second lane batches them as the main one would.
    const all = Array.from({ length: 6 }, (_, n) => call({ key: `k${n}`, n }))
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[0, 1, 2, 3, 4, 5]])
    // Keys with an item held go in the main lane; new quiet keys wait for the second lane.
    const more = Array.from({ length: 3 }, (_, n) => call({ key: `k${n}`, n: 10 + n }))
    const others = Array.from({ length: 3 }, (_, n) => call({ key: `j${n}`, n: 20 + n }))
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[0, 1, 2, 3, 4, 5], [10, 11, 12]])
    calls[0]!.release()
    await turn()
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[0, 1, 2, 3, 4, 5], [10, 11, 12], [20, 21, 22]])
    calls[1]!.release()
    calls[2]!.release()
    await expect(Promise.all([...all, ...more, ...others])).resolves.toHaveLength(12)
    expect(most()).toBe(2)
  })

  it('rejects the items of a failed flush and forgets them: the key is quiet again after', async () => {
    const { flush, calls } = heldFlush((items) => items.some((item) => item.n === 1))
    const call = batcher(flush, { maxBatch: 10, defer: setImmediate, keyOf: (item) => item.key })
    const first = call({ key: 'busy', n: 0 })
    const failing = call({ key: 'busy', n: 1 })
    await turn()
    expect(calls.map((c) => c.items)).toEqual([[0], [1]])
    calls[1]!.release()
    await expect(failing).rejects.toThrow('flush of 1 failed')
    calls[0]!.release()
    await expect(first).resolves.toBe('done 0')
    // Both lanes busy with another key; the first key has nothing held, so its item waits for the
    // second lane: the main lane's flush ending does not send it.
    const other = [call({ key: 'other', n: 2 }), call({ key: 'other', n: 3 })]
    await turn()
    expect(calls.slice(2).map((c) => c.items)).toEqual([[2], [3]])
    const again = call({ key: 'busy', n: 4 })
    calls[3]!.release()
    await turn()
    await turn()
    expect(calls).toHaveLength(4)
    calls[2]!.release()
    await turn()
    await turn()
    expect(calls.slice(2).map((c) => c.items)).toEqual([[2], [3], [4]])
    calls[4]!.release()
    await expect(Promise.all([...other, again])).resolves.toEqual(['done 2', 'done 3', 'done 4'])
  })
})
