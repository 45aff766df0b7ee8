/** An entry of a {@link DueHeap}. */
export interface DueEntry<T> {
  at: number
  seq: number
  value: T
  /** The value's version when pushed: an entry whose value has moved on since is stale. */
  stamp: number
  /** Orders entries of one `at` before `seq` does: a queue moved back keeps its place among those moved with it. */
  after: number
}

/**
 * A binary min-heap of (time, [after,] sequence) keys: the memory store's index of when queues and deliveries
 * become claimable, so a claim costs O(log n) instead of a scan of everything open. Entries are
 * never updated in place: a change pushes a new entry, and readers skip those whose stamp is stale.
 */
export class DueHeap<T> {
  private readonly items: DueEntry<T>[] = []

  /** How many entries (valid or stale) it holds. */
  get size(): number {
    return this.items.length
  }

  push(at: number, seq: number, value: T, stamp = 0, after = Number.NEGATIVE_INFINITY): void {
    const items = this.items
    items.push({ at, seq, value, stamp, after })
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(i, parent)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }

  /** The earliest entry, without removing it. */
  peek(): DueEntry<T> | undefined {
    return this.items[0]
  }

  /** Removes and returns the earliest entry. */
  pop(): DueEntry<T> | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (!top || !last || !items.length) return top
    items[0] = last
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let smallest = i
      if (left < items.length && this.less(left, smallest)) smallest = left
      if (right < items.length && this.less(right, smallest)) smallest = right
      if (smallest === i) break
      ;[items[i], items[smallest]] = [items[smallest]!, items[i]!]
      i = smallest
    }
    return top
  }

  private less(a: number, b: number): boolean {
    const x = this.items[a]!
    const y = this.items[b]!
    return x.at < y.at || (x.at === y.at && (x.after < y.after || (x.after === y.after && x.seq < y.seq)))
  }
}
