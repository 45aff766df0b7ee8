import pLimit from 'p-limit'
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
 */

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
  /** Told when an attempt moves to the slow lane (+1) and when it ends there (-1): its main slot is free. */
  moved: (delta: 1 | -1) => void
}

/** The lanes' handle. */
export interface SendLanes {
  /** Runs one attempt's request (to `url`) in a slot. */
  run<T>(url: string, send: () => Promise<T>): Promise<T>
  /** Whether every main-lane slot is taken or queued for. */
  saturated(): boolean
  /** Attempts in the slow lane now. */
  slow(): number
}

const SLOW = Symbol('slow')

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
  const full = () => main.activeCount + main.pendingCount >= concurrency
  const wanted = options.wanted ?? (() => false)
  const main = pLimit(concurrency)
  const slowHosts = keyedSlots(Math.max(1, Math.ceil(slowSlots / 2)))
  const lanes = Number.isFinite(slowAfterMs) && slowSlots >= 1
  let slow = 0

  // Attempts in a main slot, watched by one sweep a few times per threshold instead of a timer each
  // (two timer-list operations per request on the hot path): an attempt counts as slow within a
  // quarter of the short threshold after crossing it.
  const watched = new Set<{ since: number; late: () => void }>()
  const tickMs = Math.max(5, Math.floor(fullAfterMs / 4))
  let sweeper: ReturnType<typeof setInterval> | undefined
  const sweep = () => {
    const now = performance.now()
    const crowded = full() || wanted()
    for (const attempt of watched) {
      const age = now - attempt.since
      if (age >= slowAfterMs || (crowded && age >= fullAfterMs)) {
        watched.delete(attempt)
        attempt.late()
      }
    }
    if (!watched.size) {
      clearInterval(sweeper)
      sweeper = undefined
    }
  }

  async function run<T>(url: string, send: () => Promise<T>): Promise<T> {
    let sendingSlowly: Promise<T> | undefined
    let releaseHost: (() => void) | undefined
    const value = await main(async (): Promise<T | undefined> => {
      const sending = send()
      if (!lanes) return sending
      let late!: () => void
      const slowNow = new Promise<typeof SLOW>((resolve) => (late = () => resolve(SLOW)))
      const attempt = { since: performance.now(), late }
      watched.add(attempt)
      if (!sweeper) {
        sweeper = setInterval(sweep, tickMs)
        // Attempts in flight keep the process alive through their sockets, not through this.
        ;(sweeper as { unref?: () => void }).unref?.()
      }
      try {
        const first = await Promise.race([sending, slowNow])
        if (first !== SLOW) return first as T
      } finally {
        watched.delete(attempt)
      }
      // The host is parsed only here: most attempts never get slow.
      if (slow >= slowSlots || !(releaseHost = slowHosts.trySlot(hostOf(url)))) return sending
      slow++
      sendingSlowly = sending
      return undefined
    })
    if (!sendingSlowly) return value as T
    moved(1)
    try {
      return await sendingSlowly
    } finally {
      slow--
      releaseHost!()
      moved(-1)
    }
  }

  return {
    run,
    saturated: full,
    slow: () => slow,
  }
}
