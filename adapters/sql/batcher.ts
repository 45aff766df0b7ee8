/**
 * Groups concurrent calls into one round trip: a call made while a flush is under way waits for the
 * next flush, which takes every call queued meanwhile. There is no timer: a lone call goes at once,
 * and under load batches form by themselves (as a database's group commit does).
 */

/** Options of {@link batcher}. */
export interface BatcherOptions<I> {
  /** Most items in one flush. */
  maxBatch: number
  /** Flushes under way at once, per lane (with `keyOf`, two lanes). Default 1. */
  concurrency?: number
  /** Whether an item may join a batch holding these (say, not two with one idempotency key). Default: always. */
  fits?: (item: I, batch: I[]) => boolean
  /**
   * Schedules a flush instead of starting it at once. A store whose flush never waits for I/O (SQLite)
   * would otherwise flush every call alone; `setImmediate` gathers the calls of one turn of the event
   * loop (say, the settles of every response that arrived in it). Default: at once.
   */
  defer?: (flush: () => void) => void
  /**
   * Whose an item is (say, the company of the delivery a settle is for); `undefined`: nobody's. An item
   * whose key has nothing else queued or in a flush here goes in a second lane, flushed beside the
   * main one, so a quiet company's lone settle waits neither for a busy one's batch in flight nor in
   * the next. Two lanes, never more: when every key is quiet, the second batches as the first would.
   * Only for calls whose order does not matter within a key: a key's second item may go in the main
   * lane while its first is still queued in the other. Default: one lane.
   */
  keyOf?: (item: I) => string | undefined
}

/**
 * Makes a function that queues an item and resolves with its own result: `flush` gets the items of
 * one batch and answers, in the same order, a result or an `Error` for each (an error thrown by
 * `flush` fails every item of its batch).
 *
 * @example
 * ```ts
 * const settle = batcher((items) => settleMany(items), { maxBatch: 256 })
 * await settle(item) // this item's result, or it rejects with its own error
 * ```
 */
export function batcher<I, O>(flush: (items: I[]) => Promise<Array<O | Error>>, options: BatcherOptions<I>): (item: I) => Promise<O> {
  const main = lane(flush, options)
  const { keyOf } = options
  if (!keyOf) return main
  const aside = lane(flush, options)
  // Items queued or in a flush, by key.
  const held = new Map<string, number>()
  return (item) => {
    const key = keyOf(item)
    if (key === undefined) return main(item)
    const count = held.get(key) ?? 0
    held.set(key, count + 1)
    const result = (count === 0 ? aside : main)(item)
    const done = () => {
      const left = held.get(key)! - 1
      if (left > 0) held.set(key, left)
      else held.delete(key)
    }
    result.then(done, done)
    return result
  }
}

/** One lane: a queue of items flushed in batches, `concurrency` flushes at once. */
function lane<I, O>(flush: (items: I[]) => Promise<Array<O | Error>>, options: BatcherOptions<I>): (item: I) => Promise<O> {
  const queued: Array<{ item: I; resolve: (value: O) => void; reject: (error: unknown) => void }> = []
  const concurrency = options.concurrency ?? 1
  let running = 0

  const take = () => {
    if (!options.fits) return queued.splice(0, options.maxBatch)
    const batch: typeof queued = []
    const items: I[] = []
    for (let i = 0; i < queued.length && batch.length < options.maxBatch; ) {
      const entry = queued[i]!
      if (options.fits(entry.item, items)) {
        batch.push(entry)
        items.push(entry.item)
        queued.splice(i, 1)
      } else i++
    }
    return batch
  }

  let scheduled = false
  const schedule = () => {
    if (!options.defer) return pump()
    if (scheduled) return
    scheduled = true
    options.defer(() => {
      scheduled = false
      pump()
    })
  }

  const pump = () => {
    while (running < concurrency && queued.length) {
      const batch = take()
      running++
      flush(batch.map((entry) => entry.item))
        .then(
          (results) => {
            batch.forEach((entry, i) => {
              const result = results[i]
              if (result instanceof Error) entry.reject(result)
              else entry.resolve(result as O)
            })
          },
          (error: unknown) => {
            for (const entry of batch) entry.reject(error)
          },
        )
        .finally(() => {
          running--
          // Deferred: the callers just answered may call again in this turn and join the next batch.
          if (queued.length) schedule()
        })
    }
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queued.push({ item, resolve, reject })
      schedule()
    })
}
