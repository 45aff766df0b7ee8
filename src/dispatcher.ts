import pLimit from 'p-limit'
import type { ClaimedDelivery, Store } from './store.js'

/**
 * The delivery loop: claim due deliveries up to the free concurrency, run each under the global
 * limit, and sleep until the store says the next one is due. It keeps no queue of its own: the store
 * is the queue, so whatever is pending survives this process.
 */

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions {
  store: Store
  /** Deliveries in flight at once, across all webhooks. */
  concurrency: number
  /** Per-webhook first-in-first-out. */
  ordered: boolean
  /** Lease length of a claim. */
  leaseMs: number
  /** This engine's id in leases. */
  owner: string
  now: () => number
  /** Runs one claimed delivery to its end (or hand-back). */
  run: (claimed: ClaimedDelivery) => Promise<void>
  /** Where unexpected errors go (a store that failed, a bug); delivery goes on. */
  onError: (error: unknown) => void
  /**
   * Look at the store this often even without a kick, for work other processes enqueued or
   * committed late (a host transaction). 0 turns it off. The timer never keeps a process alive.
   */
  pollIntervalMs: number
  /** `false`: never claim (an emit-only engine); `drain()` then waits for other instances. */
  claiming: boolean
}

/** The loop's handle. */
export interface Dispatcher {
  /** Look for due work now (after an enqueue). */
  kick(): void
  /** Resolves once no delivery is open in the store and none is in flight here. */
  drain(): Promise<void>
  /** Stops claiming and waits for the attempts in flight. */
  close(): Promise<void>
}

// When the store says something is due yet nothing could be claimed (another claimer was quicker),
// look again after this long rather than spinning.
const RECHECK_MS = 25
// A failing store is retried after this long.
const STORE_ERROR_BACKOFF_MS = 1_000
// setTimeout's largest delay.
const MAX_TIMER_MS = 2_147_483_647

/**
 * Creates the loop and starts it, so deliveries already pending in the store are resumed.
 *
 * @example
 * ```ts
 * const dispatcher = createDispatcher({ store, concurrency: 32, ordered: true, leaseMs: 60_000,
 *   owner: 'a', now: Date.now, run: (c) => deliver(ctx, c), onError: console.error })
 * ```
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { store, concurrency, ordered, leaseMs, owner, now, run, onError, pollIntervalMs, claiming } = options
  const limit = pLimit(concurrency)
  const inFlight = new Set<Promise<void>>()
  let timer: ReturnType<typeof setTimeout> | undefined
  let pumping = false
  let again = false
  let closed = false
  let waiters: (() => void)[] = []

  const notify = () => {
    const current = waiters
    waiters = []
    for (const wake of current) wake()
  }

  const arm = (delay: number) => {
    clearTimeout(timer)
    timer = closed ? undefined : setTimeout(kick, Math.min(Math.max(0, delay), MAX_TIMER_MS))
  }

  const track = (claimed: ClaimedDelivery) => {
    const task = limit(() => run(claimed))
      .catch(onError)
      .finally(() => {
        inFlight.delete(task)
        kick()
      })
    inFlight.add(task)
  }

  async function pump() {
    pumping = true
    try {
      let room = 0
      while (claiming && !closed) {
        again = false
        room = concurrency - limit.activeCount - limit.pendingCount
        if (room <= 0) break
        const claimed = await store.claim({ now: now(), limit: room, leaseMs, owner, ordered })
        for (const c of claimed) track(c)
        // A full batch may mean more is due.
        if (claimed.length === room) again = true
        room -= claimed.length
        if (!again) break
      }
      // Saturated: every completion kicks, no timer needed. Otherwise sleep until the next due time.
      if (claiming && !closed && room > 0) {
        const wake = await store.nextWakeAt(now(), ordered)
        if (wake === undefined) clearTimeout(timer)
        else arm(wake > now() ? wake - now() + 1 : RECHECK_MS)
      }
    } catch (error) {
      onError(error)
      arm(STORE_ERROR_BACKOFF_MS)
    } finally {
      pumping = false
      notify()
      if (again && !closed) kick()
    }
  }

  function kick() {
    if (closed) return
    if (pumping) {
      again = true
      return
    }
    void pump()
  }

  const poll = pollIntervalMs > 0 ? setInterval(kick, pollIntervalMs) : undefined
  // A poll is a safety net, not pending work: it must not keep a Node or Bun process alive.
  ;(poll as { unref?: () => void } | undefined)?.unref?.()

  kick()

  return {
    kick,

    async drain() {
      for (;;) {
        if (inFlight.size) await Promise.allSettled([...inFlight])
        else if (closed || (await store.openCount()) === 0) {
          if (!inFlight.size) return
        } else await new Promise<void>((resolve) => waiters.push(resolve))
      }
    },

    async close() {
      closed = true
      clearInterval(poll)
      clearTimeout(timer)
      timer = undefined
      await Promise.allSettled([...inFlight])
      notify()
    },
  }
}
