/**
 * The latency variant of the fleet job (bench/fleet/job.ts, RATE set): events emitted on a fixed
 * schedule, RATE a second, each emit timed on a wall clock the receiver process shares (bench/lib.ts
 * `wallNow`), so each delivery's latency is its arrival at the receiver minus the moment its emit was
 * called, and minus the moment that emit returned. Every system's worker script calls these two the
 * same way, so the systems differ only in what happens between `emit(n)` and the arrival.
 */
import { percentile, round, wallNow } from '../lib.js'
import { waitForArrivals } from './job.js'

/** When each delivery's emit was called and when it returned, by the delivery's `webhook-id`. */
export interface Stamps {
  called: Map<string, number>
  returned: Map<string, number>
}

/** The p50, p99 and maximum of one set of latencies, in milliseconds. */
export interface Spread {
  p50: number
  p99: number
  max: number
}

/** What a worker reports in latency mode (its result line's `latency`). */
export interface Latency {
  /** From the emit/add call to the receiver getting the request: what the event's subscriber waits. */
  fromCall: Spread
  /** From the emit/add having returned (the event is durable) to the receiver getting it. */
  fromReturn: Spread
  /** The emit/add call itself. */
  emit: Spread
  /** How far behind its schedule the latest emit was started (a busy event loop delays the pacing). */
  maxLagMs: number
}

/**
 * Warms up with `job.warmup` events (connections opened, code compiled: a cold start is not what a
 * running app's events see, and would otherwise be most of the p99), waits for them to arrive, then
 * starts the receiver recording arrivals (by `webhook-id`) and calls `emit(n)` for n = 0…total-1 at
 * `job.rate` a second, each when it is due rather than after the previous one returned (as a busy
 * app's requests would), and stamps each. `emit` resolves to the delivery's `webhook-id` once the
 * event is stored: cotwebhook only knows it then, the peers' scripts fix it before adding the job.
 */
export async function emitPaced(job: { receiver: string; total: number; rate: number; warmup: number }, emit: (n: number) => Promise<string>): Promise<Stamps & { maxLagMs: number }> {
  const { receiver, total, rate } = job
  if (job.warmup > 0) {
    // Counting from zero: the receiver may still hold a previous run's count.
    await (await fetch(`${receiver}/control/count`, { method: 'POST' })).text()
    const warming: Promise<string>[] = []
    await schedule(job.warmup, rate, (n) => void warming.push(emit(n)))
    await Promise.all(warming)
    await waitForArrivals(receiver, job.warmup)
  }
  // Recording resets the receiver's count and arrivals: from here on only the measured events.
  await (await fetch(`${receiver}/control/record`, { method: 'POST' })).text()
  const called = new Map<string, number>()
  const returned = new Map<string, number>()
  const pending: Promise<void>[] = []
  const maxLagMs = await schedule(total, rate, (n) => {
    const calledAt = wallNow()
    pending.push(
      emit(n).then((id) => {
        called.set(id, calledAt)
        returned.set(id, wallNow())
      }),
    )
  })
  await Promise.all(pending)
  return { called, returned, maxLagMs }
}

/** Waits for every delivery to arrive, then reads the receiver's arrival times against the stamps. */
export async function latencyOf(receiver: string, stamps: Stamps & { maxLagMs: number }): Promise<Latency> {
  await waitForArrivals(receiver, stamps.called.size)
  const { arrivals } = (await (await fetch(`${receiver}/stats`)).json()) as { arrivals: Record<string, number> }
  const since = (from: Map<string, number>) =>
    [...from].map(([id, at]) => {
      const arrived = arrivals[id]
      // A duplicate delivery would arrive under an id already counted and leave another one missing.
      if (arrived === undefined) throw new Error(`latency: delivery ${id} never arrived`)
      return arrived - at
    })
  const emitted = [...stamps.called].map(([id, at]) => stamps.returned.get(id)! - at)
  return { fromCall: spread(since(stamps.called)), fromReturn: spread(since(stamps.returned)), emit: spread(emitted), maxLagMs: round(stamps.maxLagMs, 1) }
}

/** Calls `start(n)` for n = 0…count-1, each when due at `perSecond`; resolves to the worst lateness (ms). */
async function schedule(count: number, perSecond: number, start: (n: number) => void): Promise<number> {
  const begin = performance.now()
  let maxLagMs = 0
  for (let n = 0; n < count; n++) {
    const due = begin + (n * 1_000) / perSecond
    // setTimeout fires up to ~1 ms late: within a millisecond of the schedule is on time.
    if (due - performance.now() > 1) await new Promise((resolve) => setTimeout(resolve, due - performance.now()))
    maxLagMs = Math.max(maxLagMs, performance.now() - due)
    start(n)
  }
  return maxLagMs
}

function spread(values: number[]): Spread {
  const sorted = values.sort((a, b) => a - b)
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1)!) }
}
