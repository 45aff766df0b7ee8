import { hostOf } from './host-of.js'
import { keyedSlots } from './keyed-slots.js'

/**
 * The send slots, in two lanes. Every attempt starts in the main lane (`concurrency` slots); one still
 * waiting for its answer after `slowAfterMs` moves to the slow lane, if that has room, and gives its
 * main slot to the next attempt — sooner, after `fullAfterMs`, while every main slot is taken or due
 * work waits for one: then another company's delivery, say, does not wait out a hanging endpoint. So
 * endpoints that hang (until `timeoutMs`) hold the slow lane, not the slots healthy endpoints answer in
 * a millisecond from. A host may hold at most half the slow lane, so
 * one dead receiver cannot fill it either; an attempt that finds no room stays in its main slot.
 *
 * A guest attempt (the first delivery of a company with nothing in flight, sent because every main
 * slot was taken when it was emitted, see the dispatcher) takes one of a few guest slots instead of
 * waiting in line behind the busy companies' attempts; only if none is free does it go as any send does.
 */

/**
 * A guest attempt's place (see the dispatcher): `release` gives it back, once however often called; the
 * lanes call it when the attempt leaves its guest slot for the slow lane, so a hanging guest does not
 * keep the next quiet company waiting.
 */
export interface GuestPass {
  release(): void
}

/** Options of {@link sendLanes}. */
export interface SendLanesOptions {
  /** Main-lane slots. */
  concurrency: number
  /** When an attempt counts as slow. `Infinity`: never (one lane). */
  slowAfterMs: number
  /** When an attempt counts as slow while every main slot is wanted (at most `slowAfterMs`). */
  fullAfterMs: number
  /** Whether work waits for a main slot beyond those queued here (due deliveries left unclaimed for want of room). */
  wanted?: () => boolean
  /** Slow-lane slots. */
  slowSlots: number
  /** Guest slots: beyond `concurrency`, for guest attempts only. Default 0. */
  guestSlots?: number
  /** Told when an attempt moves from a main slot to the slow lane (+1) and when it ends there (-1): its main slot is free. A guest's move is not told. */
  moved: (delta: 1 | -1) => void
}

/** An attempt in a main slot, as the sweep sees it. */
interface Watched {
  since: number
  url: string
  /** Set once it moved to the slow lane: gives its host's slow-lane share back. */
  releaseHost: (() => void) | undefined
  /** In a guest slot rather than a main one: the guest's pass. */
  guest: GuestPass | undefined
}

/** The lanes' handle. */
export interface SendLanes {
  /** Runs one attempt's request (to `url`) in a slot; a `guest` one takes a guest slot while one is free. */
  run<T>(url: string, send: () => Promise<T>, guest?: GuestPass): Promise<T>
  /** Whether every main-lane slot is taken or queued for. */
  saturated(): boolean
  /** Attempts in the slow lane now. */
  slow(): number
}

/**
 * Makes the lanes.
 *
 * @example
 * ```ts
 * const lanes = sendLanes({ concurrency: 32, slowAfterMs: 1_000, fullAfterMs: 50, slowSlots: 32, moved: () => {} })
 * const response = await lanes.run(url, () => fetch(url, init))
 * ```
 */
export function sendLanes(options: SendLanesOptions): SendLanes {
  const { concurrency, slowAfterMs, slowSlots, moved } = options
  const fullAfterMs = Math.min(options.fullAfterMs, slowAfterMs)
  // The main lane: a count of slots and a line for them. An attempt moved to the slow lane gives its
  // slot back before its answer comes, which a limiter that frees a slot when its function ends (as
  // p-limit does) cannot do without a promise and a race per attempt: measured at 10–15% of a single
  // tenant's throughput, most of it in garbage.
  let active = 0
  const queue: Array<() => void> = []
  const leaveMain = () => {
    const next = queue.shift()
    if (next) next()
    else active--
  }
  const full = () => active + queue.length >= concurrency
  const guestSlots = options.guestSlots ?? 0
  let guests = 0
  const leaveGuest = () => void guests--
  const wanted = options.wanted ?? (() => false)
  const slowHosts = keyedSlots(Math.max(1, Math.ceil(slowSlots / 2)))
  const lanes = Number.isFinite(slowAfterMs) && slowSlots >= 1
  let slow = 0

  // Attempts in a main slot, watched by one sweep a few times per threshold instead of a timer each
  // (two timer-list operations per request on the hot path): an attempt counts as slow within a
  // quarter of the short threshold after crossing it.
  const watched = new Set<Watched>()
  // A slow attempt moves to the slow lane if that has room (and its host its share), giving its main slot on.
  const late = (attempt: Watched) => {
    // The host is parsed only here: most attempts never get slow.
    if (slow >= slowSlots || !(attempt.releaseHost = slowHosts.trySlot(hostOf(attempt.url)))) return
    slow++
    // A guest held no main slot: the dispatcher has nothing to hear of its move.
    if (attempt.guest) {
      guests--
      attempt.guest.release()
    } else {
      moved(1)
      leaveMain()
    }
  }
  const tickMs = Math.max(5, Math.floor(fullAfterMs / 4))
  let sweeper: ReturnType<typeof setInterval> | undefined
  const sweep = () => {
    const now = performance.now()
    const crowded = full() || wanted()
    for (const attempt of watched) {
      const age = now - attempt.since
      if (age >= slowAfterMs || (crowded && age >= fullAfterMs)) {
        watched.delete(attempt)
        late(attempt)
      }
    }
    if (!watched.size) {
      clearInterval(sweeper)
      sweeper = undefined
    }
  }

  async function run<T>(url: string, send: () => Promise<T>, guest?: GuestPass): Promise<T> {
    let inGuestSlot = false
    // A guest takes its guest slot even when a main one is free: the dispatcher counts guests out of
    // the main slots, and claims into those.
    if (guest && guests < guestSlots) {
      guests++
      inGuestSlot = true
    } else if (active < concurrency) active++
    else await new Promise<void>((go) => queue.push(go))
    const leave = inGuestSlot ? leaveGuest : leaveMain
    let sending: Promise<T>
    try {
      sending = send()
    } catch (error) {
      leave()
      throw error
    }
    if (!lanes) {
      try {
        return await sending
      } finally {
        leave()
      }
    }
    // Watched by the sweep: one small object per attempt, and nothing else unless it gets slow.
    const attempt: Watched = { since: performance.now(), url, releaseHost: undefined, guest: inGuestSlot ? guest : undefined }
    watched.add(attempt)
    if (!sweeper) {
      sweeper = setInterval(sweep, tickMs)
      // Attempts in flight keep the process alive through their sockets, not through this.
      ;(sweeper as { unref?: () => void }).unref?.()
    }
    try {
      return await sending
    } finally {
      watched.delete(attempt)
      if (attempt.releaseHost) {
        slow--
        attempt.releaseHost()
        if (!attempt.guest) moved(-1)
      } else {
        leave()
      }
    }
  }

  return {
    run,
    saturated: full,
    slow: () => slow,
  }
}
