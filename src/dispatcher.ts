import type { ClaimedDelivery, Store } from './store.js'
import type { GuestPass } from './send-lanes.js'

/**
 * The delivery loop: claim due deliveries while there is room to send, run each, and sleep until the
 * store says the next one is due. It keeps no queue of its own: the store is the queue, so whatever
 * is pending survives this process.
 */

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions {
  store: Store
  /** Requests in flight at once, across all webhooks: runs that are not waiting for a retry. */
  concurrency: number
  /** Per-webhook first-in-first-out. */
  ordered: boolean
  /** Lease length of a claim. */
  leaseMs: number
  /** This engine's id in leases. */
  owner: string
  now: () => number
  /**
   * Runs one claimed delivery to its end (or hand-back); `claimedAt` is the `now` its lease was taken
   * at. May answer the webhook's next delivery, already leased (ordered mode): it runs next, in the
   * same run. `guest`: a guest run's pass, for its attempt's send.
   */
  run: (claimed: ClaimedDelivery, claimedAt: number, guest: GuestPass | undefined) => Promise<{ next?: ClaimedDelivery; at?: number }>
  /** How many runs are waiting between attempts right now (they need no send slot meanwhile). */
  waiting: () => number
  /** Where unexpected errors go (a store that failed, a bug); delivery goes on. */
  onError: (error: unknown) => void
  /**
   * Look at the store this often even without a kick, for work other processes enqueued or
   * committed late (a host transaction). 0 turns it off. The timer never keeps a process alive.
   */
  pollIntervalMs: number
  /** `false`: never claim (an emit-only engine); `drain()` then waits for other instances. */
  claiming: boolean
  /**
   * Guest places at once, at most: an emit of a company with no run here may lease one delivery
   * while no send slot is free (its run then sends in a guest slot, beyond `concurrency`, and is not
   * counted in the room to claim). The place is given back when the run ends, or when its attempt
   * moves to the slow lane (through the pass `run` is handed). Default 0.
   */
  guestSlots?: number
}

/** The loop's handle. */
export interface Dispatcher {
  /** Look for due work now (after an enqueue, a notification, a timer). */
  kick(): void
  /** A send slot freed up (a run started waiting between attempts): look again if work was left for want of room. */
  freed(): void
  /** Whether the last look at the store left due work there for want of room. */
  backlogged(): boolean
  /** Free send slots now: how many deliveries a claim (or an emit's own lease) may take. */
  room(): number
  /**
   * How many deliveries an emit of `company` may lease now: the free send slots, or, with none free
   * and nothing of the company running here, one as a guest (while guest slots are free). A guest
   * place is reserved until `adopt(…, true)` takes it up or `cancelGuest` gives it back.
   */
  roomFor(company: string): { room: number; guest: boolean }
  /** Runs deliveries leased to this engine elsewhere (by its own emit), as if it had claimed them at `at`; `guest`: as the reserved guest. */
  adopt(claimed: ClaimedDelivery[], at: number, guest?: boolean): void
  /** Gives back a guest place `roomFor` reserved for `company` and no delivery took up. */
  cancelGuest(company: string): void
  /** Resolves once no delivery is open in the store and none is in flight here. */
  drain(): Promise<void>
  /**
   * Resolves once nothing is in flight here and nothing in the store is due now: what a short-lived
   * worker (a queue consumer) waits for before it ends. Retries waiting in process are waited for.
   */
  flush(): Promise<void>
  /** Stops claiming, then waits for the runs in flight (waiting ones give their delivery back). */
  close(): Promise<void>
}

// When the store says something is due yet nothing could be claimed (another claimer was quicker),
// look again after this long rather than spinning.
const RECHECK_MS = 25
// A failing store is retried after this long.
const STORE_ERROR_BACKOFF_MS = 1_000
// flush() rejects after this many failed rounds in a row.
const MAX_FLUSH_FAILURES = 3
// setTimeout's largest delay.
const MAX_TIMER_MS = 2_147_483_647
// Runs waiting for a retry hold a lease and a little memory each; this many per send slot at most.
const HELD_PER_SLOT = 32
// Claim rounds in one turn of the event loop before it yields: with a store that answers without I/O
// (memory) and runs that end without I/O (a webhook turned off), the loop would otherwise never let
// timers, sockets or the host's own server run.
const ROUNDS_PER_TURN = 4

/**
 * Creates the loop and starts it, so deliveries already pending in the store are resumed.
 *
 * @example
 * ```ts
 * const dispatcher = createDispatcher({ store, concurrency: 32, ordered: true, leaseMs: 60_000,
 *   owner: 'a', now: Date.now, run: (c) => deliver(ctx, c), waiting: () => 0, onError: console.error,
 *   pollIntervalMs: 1_000, claiming: true })
 * ```
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { store, concurrency, ordered, leaseMs, owner, now, run, waiting, onError, pollIntervalMs, claiming } = options
  const minBatch = Math.max(1, Math.floor(concurrency / 4))
  const guestSlots = options.guestSlots ?? 0
  const runs = new Set<Promise<void>>()
  // Runs per company (of the delivery each is on), and guest runs: who may be a guest.
  const byCompany = new Map<string, number>()
  let guests = 0
  // Guest runs under way: they send in guest slots, beyond `concurrency`, so they leave room alone.
  let guestRuns = 0
  const enter = (company: string) => byCompany.set(company, (byCompany.get(company) ?? 0) + 1)
  const leave = (company: string) => {
    const left = byCompany.get(company)! - 1
    if (left > 0) byCompany.set(company, left)
    else byCompany.delete(company)
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  let pumping: Promise<void> | undefined
  let again = false
  let closed = false
  // Due work was left in the store for want of room (a full claim, or none made for want of slots).
  let waitingForRoom = true
  let waiters: (() => void)[] = []
  // After the store fails, kicks wait for the backoff instead of trying again at once.
  let backoffUntil = 0
  let failures = 0
  let lastFailure: unknown

  const notify = () => {
    const current = waiters
    waiters = []
    for (const wake of current) wake()
  }

  // Resolves when there is news for a waiter (a run started or ended, the store failed), or after `ms`
  // at the latest. A round of the loop that found nothing is no news: waking on it would spin.
  const activity = async (ms: number) => {
    let timeout: ReturnType<typeof setTimeout> | undefined
    await new Promise<void>((resolve) => {
      waiters.push(resolve)
      timeout = setTimeout(resolve, ms)
    })
    clearTimeout(timeout)
  }

  const arm = (delay: number) => {
    clearTimeout(timer)
    timer = closed ? undefined : setTimeout(kick, Math.min(Math.max(0, delay), MAX_TIMER_MS))
  }

  // Room to claim: free send slots (waiting runs and guests need none), within the bound on runs held.
  const room = () => {
    const held = runs.size - guestRuns
    return Math.min(concurrency - (held - waiting()), concurrency * HELD_PER_SLOT - held)
  }

  // A guest's place (its company, the guest count) was taken when roomFor reserved it.
  const track = (claimed: ClaimedDelivery, claimedAt: number, guest = false) => {
    let company = claimed.delivery.company
    // A guest's place is given back when its run ends, or sooner when its attempt moves to the slow lane.
    let pass: GuestPass | undefined
    if (guest) {
      guestRuns++
      let held = true
      pass = {
        release: () => {
          if (held) guests--
          held = false
        },
      }
    } else enter(company)
    const chain = async () => {
      // A run goes on with the webhook's next delivery when its settle handed it one (ordered); a
      // guest's settle asks for none.
      let current: ClaimedDelivery | undefined = claimed
      let at = claimedAt
      while (current) {
        if (current.delivery.company !== company) {
          leave(company)
          enter((company = current.delivery.company))
        }
        const { next, at: nextAt }: { next?: ClaimedDelivery; at?: number } = await run(current, at, pass)
        current = next
        at = nextAt ?? now()
      }
    }
    const task: Promise<void> = chain()
      .catch(onError)
      .finally(() => {
        runs.delete(task)
        leave(company)
        notify()
        if (!pass) return freed()
        pass.release()
        guestRuns--
        // A guest's settle asked for no next delivery: look for its webhook's next (and the rest) now.
        kick()
      })
    runs.add(task)
    notify()
  }

  // Rounds since the last turn of the event loop; a macrotask resets it.
  let rounds = 0
  let turnReset: ReturnType<typeof setTimeout> | undefined
  const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0))

  async function pump() {
    // Yield first, so `pumping` is set before this run can end and clear it.
    await null
    // Kicks from here on ask for another pump; earlier ones are answered by this one.
    again = false
    let free = 0
    try {
      while (claiming && !closed) {
        const want = room()
        free = Math.max(0, want)
        // No room, or busy: claim in batches of at least a quarter of the slots (each completion looks
        // again, so the batch comes as soon as there is room for it); one claim per free slot costs the
        // store a round trip per delivery.
        if (want <= 0 || (want < minBatch && runs.size - guestRuns > waiting())) {
          waitingForRoom = true
          break
        }
        if (++rounds > ROUNDS_PER_TURN) {
          await nextTurn()
          rounds = 1
          if (closed) break
        }
        turnReset ??= setTimeout(() => {
          rounds = 0
          turnReset = undefined
        }, 0)
        const claimedAt = now()
        const claimed = await store.claim({ now: claimedAt, limit: want, leaseMs, owner, ordered })
        for (const c of claimed) track(c, claimedAt)
        free = want - claimed.length
        // A full batch may mean more is due; so does a kick that came meanwhile. Less than asked: the
        // store had nothing more due, and slots that free up need not look until something changes.
        waitingForRoom = claimed.length >= want
        if (claimed.length < want && !again) break
        again = false
      }
      // No room: every completion or wait kicks, no timer needed. Otherwise sleep until the next due time.
      if (claiming && !closed && free > 0) {
        const wake = await store.nextWakeAt(now(), ordered)
        if (wake === undefined) clearTimeout(timer)
        else arm(wake > now() ? wake - now() + 1 : RECHECK_MS)
      }
      failures = 0
    } catch (error) {
      failures++
      lastFailure = error
      onError(error)
      backoffUntil = now() + STORE_ERROR_BACKOFF_MS
      arm(STORE_ERROR_BACKOFF_MS)
      notify() // flush() gives up after repeated failures: it must hear of each
    } finally {
      pumping = undefined
      if (again && !closed) kick()
    }
  }

  // A slot freed (a run ended, or started waiting between attempts): look again only if due work was
  // left for want of room. Work that turns up otherwise announces itself (an emit, a notification, the
  // timer at the next due time, the poll).
  function freed() {
    if (waitingForRoom) kick()
  }

  function kick() {
    if (closed) return
    if (now() < backoffUntil) return // the backoff's timer kicks when it is over
    if (pumping) {
      again = true
      return
    }
    pumping = pump()
  }

  const poll = pollIntervalMs > 0 ? setInterval(kick, pollIntervalMs) : undefined
  // A poll is a safety net, not pending work: it must not keep a Node or Bun process alive.
  ;(poll as { unref?: () => void } | undefined)?.unref?.()

  kick()

  return {
    kick,
    freed,

    backlogged: () => waitingForRoom,
    room: () => (claiming && !closed ? Math.max(0, room()) : 0),

    roomFor(company) {
      if (!claiming || closed) return { room: 0, guest: false }
      const free = room()
      if (free > 0) return { room: free, guest: false }
      // A company with nothing running here is not the one keeping the slots busy: its first delivery
      // need not wait for them.
      if (guests >= guestSlots || byCompany.has(company)) return { room: 0, guest: false }
      // Reserved now: emits under way at once (grouped into one store call) must not all be guests.
      guests++
      enter(company)
      return { room: 1, guest: true }
    },

    adopt(claimed, at, guest = false) {
      claimed.forEach((c, i) => track(c, at, guest && i === 0))
    },

    cancelGuest(company) {
      guests--
      leave(company)
    },

    async drain() {
      // Work other processes finish wakes nobody here: look at the store again at least this often.
      const recheck = pollIntervalMs > 0 ? pollIntervalMs : 1_000
      for (;;) {
        if (runs.size) {
          await Promise.allSettled([...runs])
          continue
        }
        if (closed || (await store.openCount()) === 0) {
          if (!runs.size) return
          continue
        }
        // Open work that is not ours to run now: a retry not yet due (the loop's timer claims it when it
        // is), another instance's lease, or work committed that told nobody (a host transaction, no poll).
        // Look again when a run starts or ends, or after `recheck`: never in a tight loop.
        kick()
        await activity(recheck)
      }
    },

    async flush() {
      for (;;) {
        // A claim under way may still hand out deliveries: wait for it, and for every run.
        if (pumping) {
          await pumping
          continue
        }
        if (runs.size) {
          await Promise.allSettled([...runs])
          continue
        }
        // A store that keeps failing: give up, so a short-lived worker can retry later.
        if (failures >= MAX_FLUSH_FAILURES) throw lastFailure
        const wake = await store.nextWakeAt(now(), ordered)
        if (closed || !claiming || wake === undefined || wake > now()) return
        // Something is due: let the loop claim it, and look again when it has.
        kick()
        await activity(RECHECK_MS)
      }
    },

    async close() {
      closed = true
      clearInterval(poll)
      clearTimeout(timer)
      timer = undefined
      // A claim under way when we closed still hands out deliveries: let it finish, then wait for them.
      while (pumping || runs.size) {
        await pumping
        await Promise.allSettled([...runs])
      }
      notify()
    },
  }
}
