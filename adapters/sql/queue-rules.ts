import { applyEndpointReport, endpointGate, refill, type EndpointState, type SettleResult, type Settlement } from 'cotwebhook'

/**
 * The rules of a webhook's queue row in the SQL stores, free of SQL: what a claim may take from it
 * (the circuit's probe, the rate bucket, one out at a time when ordered), what a settle does to its
 * counts, and its `hint`: never later than the first moment one of its deliveries may go, `null`
 * while nothing is open. Claims only look at queues whose hint has come; a hint that is early costs a
 * look, never a delivery.
 */

/** A queue row, as the rules see it. */
export interface QueueState {
  webhookId: string
  company: string
  /** Bumped on every write (compare-and-set on D1). */
  version: number
  /** How the last claim took from it: one out at a time (`true`) or any due. */
  ordered: boolean
  /** Deliveries not final. */
  open: number
  hint: number | null
  /** The delivery the hint was taken from: claims break ties on it (enqueue order). */
  hintSeq: number | null
  /** Deliveries under a lease (live or run out). */
  out: number
  /** The latest lease given out. */
  outUntil: number | null
  /** The lease token of the half-open probe out, if any. */
  probeToken: string | null
  bucket: { tokens: number; at: number | null }
  endpoint: EndpointState
}

/**
 * The earliest the endpoint lets anything go: after an open circuit's cool-down, after a probe out
 * comes back, when the rate bucket has a token.
 *
 * @example
 * ```ts
 * gateOf(state) // -Infinity for a healthy webhook without a rate
 * ```
 */
export function gateOf(state: QueueState): number {
  return endpointGate(state.endpoint, state.bucket)
}

/**
 * When the queue could hand out a delivery that is due at `due` and leased until `leaseUntil`:
 * ordered, not while another of its deliveries is out.
 *
 * @example
 * ```ts
 * queueAvailability(state, { due: 100, leaseUntil: null }, now, true)
 * ```
 */
export function queueAvailability(state: QueueState, candidate: { due: number; leaseUntil: number | null }, now: number, ordered: boolean): number {
  let at = candidate.leaseUntil === null ? candidate.due : Math.max(candidate.due, candidate.leaseUntil + 1)
  const others = state.out - (candidate.leaseUntil === null ? 0 : 1)
  if (ordered && others > 0 && state.outUntil !== null && state.outUntil >= now) at = Math.max(at, state.outUntil + 1)
  return Math.max(at, gateOf(state))
}

/** What a claim may take from a queue, and how to record what it took. */
export interface TakePlan {
  /** How many deliveries may go now (0: none). */
  count: number
  /** Whether the one that goes is the half-open circuit's probe. */
  probe: boolean
  /** Records the take: `taken` leased, `fresh` of them not leased before, leases until `until`, the probe's token. */
  commit(taken: number, fresh: number, until: number, token: string | null): void
}

/**
 * Plans a take from a queue: at most `max`, one when ordered or probing, within the rate bucket.
 *
 * @example
 * ```ts
 * const plan = takeFromQueue(state, now, 10, false)
 * // lease up to plan.count deliveries, then:
 * plan.commit(leased, leased, now + leaseMs, firstToken)
 * ```
 */
export function takeFromQueue(state: QueueState, now: number, max: number, ordered: boolean): TakePlan {
  const e = state.endpoint
  const halfOpen = e.openUntil !== null
  let count = ordered ? Math.min(1, max) : max
  if (halfOpen && (e.openUntil! > now || (e.probeUntil !== null && e.probeUntil >= now))) count = 0
  if (halfOpen) count = Math.min(count, 1)
  if (e.rate && count > 0) count = Math.min(count, refill(state.bucket, e.rate, now).whole)
  return {
    count,
    probe: halfOpen && count > 0,
    commit(taken, fresh, until, token) {
      if (!taken) return
      state.out += fresh
      state.outUntil = state.outUntil === null ? until : Math.max(state.outUntil, until)
      if (halfOpen) {
        state.probeToken = token
        e.probeUntil = until
      }
      if (e.rate) state.bucket.tokens -= taken
    },
  }
}

/**
 * Applies a settle (or, with no attempt and `pending`, a release) to the queue of its delivery: the
 * counts, the probe, the endpoint report, and the hint. An ordered queue whose head just ended gets
 * its hint from its new head afterwards (the caller reads it); here it is set to `now`, which is
 * never too late.
 *
 * @param due - the delivery's due time after the settle (for a hand-back)
 * @example
 * ```ts
 * const result = applyQueueSettle(state, lease.token, settlement, settlement.nextAttemptAt ?? settlement.now)
 * ```
 */
export function applyQueueSettle(state: QueueState, token: string, s: Settlement, due: number): SettleResult {
  const now = s.now
  const final = s.state !== 'pending'
  const held = !final && s.holdUntil !== undefined
  const probe = state.probeToken !== null && state.probeToken === token
  if (probe) {
    state.probeToken = null
    if (!s.attempt) state.endpoint.probeUntil = null
  }
  const result: SettleResult = {}
  if (s.endpoint) result.endpoint = applyEndpointReport(state.endpoint, s.endpoint, now, probe)
  if (final) state.open = Math.max(0, state.open - 1)
  if (held) state.outUntil = state.outUntil === null ? s.holdUntil! : Math.max(state.outUntil, s.holdUntil!)
  else state.out = Math.max(0, state.out - 1)

  const earlier = (at: number, seq: number | null = state.hintSeq) => {
    if (state.hint === null || at < state.hint) {
      state.hint = at
      state.hintSeq = seq
    }
  }
  if (state.open === 0) {
    state.hint = null
    state.hintSeq = null
  } else if (state.ordered) {
    if (final) state.hint = now
    else if (held) state.hint = s.holdUntil! + 1
    else state.hint = Math.max(due, gateOf(state))
  } else if (held) {
    earlier(Math.max(s.holdUntil! + 1, gateOf(state))) // a hold may end sooner than the queue's hint
  } else if (!final) {
    earlier(Math.max(due, gateOf(state)))
  }
  // The probe's claim pushed the hint past its lease; its other deliveries may be due as soon as the
  // gate lets them (a failed probe retries on its own schedule, not the next cool-down's probe).
  if (probe && !state.ordered && state.open > 0) earlier(Math.max(now, gateOf(state)))
  const circuit = result.endpoint?.circuit
  if (state.hint !== null && circuit?.state === 'open') state.hint = Math.max(state.hint, circuit.until)
  if (state.hint !== null && circuit?.state === 'closed') earlier(now)
  state.endpoint.open = state.open
  return result
}
