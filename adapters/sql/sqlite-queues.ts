import { LeaseLostError, type ClaimOptions, type ClaimedDelivery, type EndpointState, type Lease, type RateLimit, type SettleResult, type Settlement, type WebhookStats } from 'cotwebhook'
import { applyQueueSettle, gateOf, queueAvailability, takeFromQueue, type QueueState } from './queue-rules.js'
import { toDelivery, type DeliveryRow, type Tables } from './schema.js'
import { queueSql } from './sqlite-queue-sql.js'
import { columns, fromRow, num, toEndpoint, type QueueRow } from './queue-row.js'
import { statsSql } from './stats-sql.js'

/**
 * The per-webhook queues on SQLite, shared by the better-sqlite3/`bun:sqlite` store and the D1 store:
 * the same statements, the same rules (`queue-rules.ts`, which the memory store's behaviour defines).
 *
 * Every write that reads a queue row first is a compare-and-set on the row's `version`, and every
 * lease is taken by an `UPDATE` that checks the delivery is still free. On better-sqlite3 each
 * operation runs inside one transaction, so those checks always pass; D1 has no interactive
 * transactions, so there they are what keeps two Workers from taking the same delivery or undoing
 * each other's writes.
 */

/** How the queue logic reaches the database. */
export interface SqlExecutor {
  all<T>(sql: string, params: unknown[]): Promise<T[]>
  get<T>(sql: string, params: unknown[]): Promise<T | undefined>
  /** Runs a write; resolves to the number of rows it changed. */
  run(sql: string, params: unknown[]): Promise<number>
  /** Whether each operation runs in one transaction (then `next` can be leased in the settle). */
  readonly transactional: boolean
}


/** A delivery a claim may take, as selected. */
interface Candidate {
  seq: number
  id: string
  next_attempt_at: number
  lease_until: number | null
}

// Attempts at a compare-and-set before giving up (only D1 can lose one, to another Worker).
const CAS_ROUNDS = 8
// Queues looked at per claim beyond the limit, for those that turn out to have nothing to give.
const CANDIDATE_SLACK = 16

/**
 * The queue operations of the SQLite-dialect stores over an executor.
 *
 * @example
 * ```ts
 * const queues = sqliteQueues(executor, tables('cotwebhook_'))
 * const claimed = await queues.claim({ now: Date.now(), limit: 10, leaseMs: 60_000, owner: 'a', ordered: true })
 * ```
 */
export function sqliteQueues(x: SqlExecutor, t: Tables, maxParams = 100) {
  const q = queueSql(t)
  // Company turns: the company after which the next claim starts (the last one a claim served).
  let turnAfter = ''

  const read = async (webhookId: string): Promise<QueueState | undefined> => {
    const row = await x.get<QueueRow>(q.queue, [webhookId])
    return row && fromRow(row)
  }

  // Writes a queue's new state if nobody else wrote it since it was read.
  const write = async (state: QueueState): Promise<boolean> =>
    (await x.run(q.write, [...columns(state), state.webhookId, state.version])) === 1

  // Reads, changes and writes a queue until the write lands (at once, inside a transaction).
  const update = async <T>(webhookId: string, company: string, change: (state: QueueState) => Promise<T>): Promise<T> => {
    for (let round = 0; ; round++) {
      let state = await read(webhookId)
      if (!state) {
        await x.run(q.ensure, [webhookId, company])
        state = (await read(webhookId))!
      }
      const result = await change(state)
      if (await write(state)) return result
      if (round >= CAS_ROUNDS) throw new Error(`cotwebhook: queue ${webhookId} kept changing under this write; try again`)
    }
  }

  const head = async (webhookId: string) => x.get<Candidate>(q.head, [webhookId])

  // Leases the given deliveries if still free; answers those it got (with their events).
  const lease = async (candidates: Candidate[], token: string, until: number, now: number): Promise<ClaimedDelivery[]> => {
    const rows: Array<DeliveryRow & { seq: number; lease_token: string }> = []
    for (const { seq } of candidates) {
      const row = await x.get<DeliveryRow & { seq: number; lease_token: string }>(q.lease, [`${token}:${seq}`, until, seq, now])
      if (row) rows.push(row)
    }
    return withEvents(rows)
  }

  const withEvents = async (rows: Array<DeliveryRow & { seq: number; lease_token: string }>): Promise<ClaimedDelivery[]> => {
    const bodies = new Map<string, string>()
    const eventIds = [...new Set(rows.map((r) => r.event_id))]
    for (let i = 0; i < eventIds.length; i += maxParams) {
      const chunk = eventIds.slice(i, i + maxParams)
      for (const e of await x.all<{ id: string; body: string }>(q.eventBodies(chunk.length), chunk)) bodies.set(e.id, e.body)
    }
    return rows.map((row) => ({ delivery: toDelivery({ ...row, event: bodies.get(row.event_id) }), lease: { deliveryId: row.id, token: row.lease_token } }))
  }

  // What one queue hands out now, under the rules; the queue's new state is left in `state`, and
  // `record` applies the same take to a fresh read of the queue (when another writer got there first).
  const takeFrom = async (state: QueueState, options: ClaimOptions, max: number, token: string) => {
    const { now, leaseMs, ordered } = options
    const plan = takeFromQueue(state, now, max, ordered)
    let candidates: Candidate[] = []
    if (plan.count > 0 && ordered) {
      const first = await head(state.webhookId)
      if (first && queueAvailability(state, { due: first.next_attempt_at, leaseUntil: first.lease_until }, now, true) <= now) candidates = [first]
    } else if (plan.count > 0) {
      // One more than may go: it tells whether more is due, and which delivery comes next.
      candidates = await x.all<Candidate>(q.ready, [state.webhookId, now, now, plan.count + 1])
    }
    const following = !ordered && candidates.length > plan.count ? candidates.pop() : undefined
    const claimed = await lease(candidates, token, now + leaseMs, now)
    const wasLeased = new Set(candidates.filter((c) => c.lease_until !== null).map((c) => c.id))
    const fresh = claimed.filter((c) => !wasLeased.has(c.delivery.id)).length
    const record = async (target: QueueState, replan: boolean) => {
      target.ordered = ordered
      if (!claimed.length) return fixHint(target, now, ordered)
      ;(replan ? takeFromQueue(target, now, claimed.length, ordered) : plan).commit(claimed.length, fresh, now + leaseMs, claimed[0]!.lease.token)
      if (ordered) {
        // Out until its lease ends, unless a settle hands it on sooner.
        target.hint = Math.max(now + leaseMs + 1, gateOf(target))
        target.hintSeq = candidates[0]!.seq
      } else if (following) {
        target.hint = Math.max(now, gateOf(target))
        target.hintSeq = following.seq
      } else await fixHint(target, now, false)
    }
    await record(state, false)
    for (const c of claimed) {
      if (plan.probe) c.probe = true
      c.rate = state.endpoint.rate ? { ...state.endpoint.rate } : null
    }
    return { claimed, probe: plan.probe, record, collided: claimed.length < candidates.length }
  }

  // Sets a queue's hint to when it may next hand something out, from its head or its next due one.
  const fixHint = async (state: QueueState, now: number, ordered: boolean) => {
    if (state.open <= 0) {
      state.open = 0
      state.hint = null
      state.hintSeq = null
      return
    }
    if (ordered) {
      const first = await head(state.webhookId)
      if (!first) {
        state.open = 0 // the count drifted (a write cut off between two statements on D1): nothing is open
        state.hint = null
        state.hintSeq = null
        return
      }
      const at = queueAvailability(state, { due: first.next_attempt_at, leaseUntil: first.lease_until }, now, true)
      state.hint = at
      state.hintSeq = first.seq
      return
    }
    const next = await x.get<{ next_attempt_at: number; seq: number }>(q.nextDue, [state.webhookId, now])
    const leaseEnd = state.out > 0 && state.outUntil !== null ? state.outUntil + 1 : null
    const due = next ? next.next_attempt_at : null
    const earliest = due === null ? leaseEnd : leaseEnd === null ? due : Math.min(due, leaseEnd)
    state.hint = earliest === null ? now + 1 : queueAvailability(state, { due: earliest, leaseUntil: null }, now, false)
    state.hintSeq = next?.seq ?? state.hintSeq
  }

  /**
   * Hands out due deliveries: first the earliest due queue of each company with due work, company after
   * company from `after` on (so one company's flood costs another one turn, not the flood), then the
   * queues in the order of their hints; one from each queue in turn (so one webhook's backlog does not
   * take the whole claim), round after round.
   */
  const claim = async (options: ClaimOptions, after: string): Promise<ClaimedDelivery[]> => {
    const { now, limit, owner } = options
    if (limit <= 0) return []
    const token = `${owner}:${crypto.randomUUID()}`
    type Take = Awaited<ReturnType<typeof takeFrom>>
    const entries = new Map<string, { state: QueueState; takes: Take[]; looked: boolean }>()
    const turnOrder: string[] = []
    let count = 0
    // One from each due queue in turn, then round after round. Concurrent claimers (D1) may reach a
    // delivery first: that queue is passed over, and the queues are read again for the rest.
    for (let reads = 0; reads < 3 && count < limit; reads++) {
      const turns = await x.all<QueueRow>(q.turns, [after, now, limit, now, after, limit, now, limit])
      const byHint = await x.all<QueueRow>(q.candidates, [now, limit + CANDIDATE_SLACK])
      const first = new Set(turns.map((row) => row.webhook_id))
      const rows = [...turns, ...byHint.filter((row) => !first.has(row.webhook_id))]
      for (const row of turns) turnOrder.push(row.webhook_id)
      let turn = rows.map((row) => {
        let entry = entries.get(row.webhook_id)
        // A queue this claim took nothing from is read afresh; one it took from keeps its own state.
        if (!entry?.takes.some((take) => take.claimed.length)) entries.set(row.webhook_id, (entry = { state: fromRow(row), takes: [], looked: false }))
        return entry!
      })
      let collided = false
      while (count < limit && turn.length) {
        const again: typeof turn = []
        for (const entry of turn) {
          if (count >= limit) break
          if (entry.state.hint === null || entry.state.hint > now) continue
          const take = await takeFrom(entry.state, options, 1, token)
          entry.looked = true
          entry.takes.push(take)
          count += take.claimed.length
          collided ||= take.collided
          if (take.claimed.length && !take.collided && !options.ordered && entry.state.hint !== null && entry.state.hint <= now) again.push(entry)
        }
        turn = again
      }
      if (!collided) break
    }
    const claimed: ClaimedDelivery[] = []
    for (const { state, takes, looked } of entries.values()) {
      if (!looked) continue
      const taken = takes.flatMap((take) => take.claimed)
      if (await write(state)) {
        claimed.push(...taken)
        continue
      }
      if (!taken.length) continue // only its hint was set; whoever wrote it since knows better
      // Another writer changed the queue since it was read (D1): the leases stand (each was
      // checked); apply them to the queue as it is now. A second probe is given back.
      let kept = false
      for (let round = 0; round < CAS_ROUNDS && !kept; round++) {
        const current = await read(state.webhookId)
        if (!current) break
        if (takes.some((take) => take.probe) && current.probeToken !== null) break
        for (const take of takes) await take.record(current, true)
        kept = await write(current)
      }
      if (kept) claimed.push(...taken)
      else for (const c of taken) await x.run(q.release, [c.lease.deliveryId, c.lease.token, now])
    }
    // The next claim starts after the last company whose turn gave something.
    const served = new Set(claimed.map((c) => c.delivery.webhookId))
    for (let i = turnOrder.length - 1; i >= 0; i--) {
      const entry = entries.get(turnOrder[i]!)
      if (served.has(turnOrder[i]!) && entry) {
        turnAfter = entry.state.company
        break
      }
    }
    return claimed
  }

  const othersDue = async (company: string, now: number) =>
    Boolean((await x.get<{ due: number }>(q.othersDue, [company, now, company, now]))?.due)

  return {
    /** Hands out due deliveries, company by company in turns (see `claim` above). */
    async claim(options: ClaimOptions): Promise<ClaimedDelivery[]> {
      return claim(options, turnAfter)
    },

    /** Records a settle in the delivery, then in its queue; the answer carries endpoint changes and `next`. */
    async settle(lease: Lease, s: Settlement): Promise<SettleResult> {
      const attempt = s.attempt === undefined ? null : JSON.stringify(s.attempt)
      const final = s.state !== 'pending'
      const held = !final && s.holdUntil !== undefined
      const row = await x.get<{ webhook_id: string; company: string; seq: number; next_attempt_at: number | null }>(q.settle, [
        attempt, attempt, s.attempt?.status ?? null, s.response, s.now, s.state,
        final ? null : (s.nextAttemptAt ?? s.now),
        held ? lease.token : null, held ? s.holdUntil! : null,
        lease.deliveryId, lease.token, s.now,
      ])
      if (!row) throw new LeaseLostError(lease.deliveryId)
      // Only inside a transaction: without one, a delivery leased here could be lost with its queue's write.
      const next = x.transactional ? s.next : undefined
      // Ordered, the queue passes straight on unless another company has due work: then the next
      // delivery is claimed by turns.
      const byTurns = next?.ordered && final && (await othersDue(row.company, s.now))
      const result = await update(row.webhook_id, row.company, async (state) => {
        const answer = applyQueueSettle(state, lease.token, s, row.next_attempt_at ?? s.now)
        if (next?.ordered && final && state.ordered && !byTurns) {
          const { claimed: [taken] } = await takeFrom(state, { now: s.now, limit: 1, leaseMs: next.leaseMs, owner: next.owner, ordered: true }, 1, `${next.owner}:${crypto.randomUUID()}`)
          if (taken) {
            answer.next = taken
            turnAfter = row.company // passed straight on, it served its company: turns go on after it
          }
        } else if (state.ordered && final) await fixHint(state, s.now, true)
        return answer
      })
      if (next && (byTurns || (!next.ordered && !held))) {
        // Turns go on from this store's last, so the rotation may come round to the settling company
        // again; they start after the settling company before this store served any.
        const [taken] = await claim({ now: s.now, limit: 1, leaseMs: next.leaseMs, owner: next.owner, ordered: next.ordered }, turnAfter || row.company)
        if (taken) result.next = taken
      }
      return result
    },

    /** Gives a delivery back without an attempt. */
    async release(lease: Lease, now: number): Promise<void> {
      const row = await x.get<{ webhook_id: string; company: string; seq: number; next_attempt_at: number }>(q.release, [lease.deliveryId, lease.token, now])
      if (!row) throw new LeaseLostError(lease.deliveryId)
      await update(row.webhook_id, row.company, async (state) => {
        applyQueueSettle(state, lease.token, { now, state: 'pending', response: '', nextAttemptAt: row.next_attempt_at }, row.next_attempt_at)
      })
    },

    async nextWakeAt(): Promise<number | undefined> {
      const row = await x.get<{ wake: number | null }>(q.nextWake, [])
      return row?.wake ?? undefined
    },

    async openCount(): Promise<number> {
      return (await x.get<{ n: number }>(q.openCount, []))?.n ?? 0
    },

    async endpoint(webhookId: string): Promise<EndpointState> {
      const state = await read(webhookId)
      return toEndpoint(state)
    },

    async stats(company?: string): Promise<WebhookStats[]> {
      const rows = await x.all<QueueRow & { pending: number | string; oldest: number | string | null }>(statsSql('sqlite', t, company !== undefined), company === undefined ? [] : [company])
      return rows.map((row) => ({ webhookId: row.webhook_id, company: row.company, ...toEndpoint(fromRow(row)), open: Number(row.pending), oldestOpenAt: num(row.oldest) }))
    },

    async resetEndpoint(webhookId: string): Promise<void> {
      await x.run(q.reset, [webhookId])
    },

    async setRate(webhookId: string, company: string, rate: RateLimit | null): Promise<void> {
      await x.run(q.ensure, [webhookId, company])
      await x.run(q.setRate, [rate?.perSecond ?? null, rate?.burst ?? null, rate?.burst ?? null, webhookId])
    },

    /** The statement an enqueue runs once per webhook it wrote to: (webhookId, company, n, now, firstSeq). */
    arrive: q.arrive,
  }
}

/**
 * How many of an event's deliveries go to each webhook (what each queue's `arrive` adds).
 *
 * @example
 * ```ts
 * countBy([{ webhookId: 'a' }, { webhookId: 'a' }]) // Map { 'a' => 2 }
 * ```
 */
export function countBy(deliveries: Array<{ webhookId: string }>): Map<string, number> {
  const counts = new Map<string, number>()
  for (const { webhookId } of deliveries) counts.set(webhookId, (counts.get(webhookId) ?? 0) + 1)
  return counts
}
