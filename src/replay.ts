import * as v from 'valibot'
import { ConflictError, NotFoundError, ValidationError } from './errors.js'
import { plainObject, type COTEvent, type COTWebhook } from './model.js'
import { objectId } from './object-id.js'
import { objectIdArgument, type RegistryInternals } from './registry.js'
import type { Delivery, NewDelivery, Store } from './store.js'
import { TRIGGERS } from './triggers.js'
import { parse } from './validate.js'

/**
 * Replay: send a delivery's event again, recover every failed delivery of a webhook since a time,
 * and send a test event. Each makes new deliveries (new ids, new logs) of the stored COTEvent to the
 * one webhook, queued behind its open deliveries; the old logs stay as they were.
 */

/** What replay needs from the engine. */
export interface ReplayContext {
  store: Store
  registry: RegistryInternals
  now: () => number
  /** Refuses an event whose JSON is over the size limit. */
  checkSize: (event: COTEvent) => void
  /** Tells the delivery loop there is work. */
  kick: () => void
}

/** What a replay queued. */
export interface ReplayResult {
  /** One per event queued, oldest first. */
  deliveries: Array<NewDelivery & { eventId: string; replayOf?: string }>
}

/** Options of `recover`. */
export interface RecoverOptions {
  /** Failed deliveries created at or after this time (a Date, ISO 8601 text or epoch ms) are sent again. */
  since: Date | string | number
  /**
   * ...and before this time. Default: now. Pass back the `until` a first call answered, so the
   * deliveries that call queued (themselves new, and perhaps failing) are not recovered again.
   */
  until?: Date | string | number
  /** At most this many per call, oldest first (1–1000). Default 1000. */
  limit?: number
}

/** What `recover` queued, and where to start the next call if it stopped at `limit`. */
export interface RecoverResult extends ReplayResult {
  /** The end of the window this call looked at (ISO 8601): pass it back as `until` with `nextSince`. */
  until: string
  /** Set when more failed deliveries remain: call again with it as `since` (and the same `until`). */
  nextSince?: string
}

/** Options of `sendTest`. */
export interface TestEventOptions {
  /** The test event's `data`. Default: a sample object carrying the webhook's context values. */
  data?: Record<string, unknown> | null
}

export const TimeSchema = v.union(
  [
    v.pipe(
      v.string(),
      v.isoTimestamp('must be an ISO 8601 timestamp'),
      // isoTimestamp accepts offsets such as +05 that Date cannot read.
      v.check((text) => Number.isFinite(Date.parse(text)), 'must be an ISO 8601 timestamp with a full offset (Z or +hh:mm)'),
    ),
    v.pipe(v.number(), v.integer('must be an integer (epoch ms)'), v.minValue(0, 'must be at least 0')),
    v.pipe(v.date(), v.check((date) => Number.isFinite(date.getTime()), 'must be a valid Date')),
  ],
  'must be an ISO 8601 timestamp, epoch milliseconds or a Date',
)

export const RecoverSchema = plainObject(v.object({
  since: TimeSchema,
  until: v.optional(TimeSchema),
  limit: v.optional(v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(1, 'must be at least 1'), v.maxValue(1000, 'must be at most 1000')), 1000),
}), 'must be an object { since, limit? }')

export const TestSchema = plainObject(
  v.object({ data: v.optional(v.nullable(plainObject(v.record(v.string(), v.unknown()), 'must be an object or null'))) }),
  'must be an object { data? }',
)

const PAGE = 100
// Rows one recover call reads at most (the logs are listed newest first, so the window is read whole).
const MAX_SCANNED = 20_000

async function activeWebhook(ctx: ReplayContext, company: string, webhookId: string): Promise<COTWebhook> {
  const webhook = await ctx.registry.get(company, webhookId)
  if (!webhook.isActive) {
    throw new ConflictError(`isActive: webhook ${webhookId} is inactive; turn it on (isActive: true) before sending to it`, 'isActive')
  }
  return webhook
}

async function queue(ctx: ReplayContext, webhookId: string, event: COTEvent, replayOf?: string) {
  const at = ctx.now()
  const eventId = objectId(at)
  const delivery = { id: objectId(at), webhookId }
  await ctx.store.enqueue({ eventId, event, deliveries: [delivery], now: at })
  return { ...delivery, eventId, ...(replayOf ? { replayOf } : {}) }
}

/**
 * Sends one delivery's event again to its webhook, as a new delivery.
 *
 * @example
 * ```ts
 * const { deliveries } = await resend(ctx, company, logId) // deliveries[0].replayOf === logId
 * ```
 */
export async function resend(ctx: ReplayContext, company: string, deliveryId: string): Promise<ReplayResult> {
  objectIdArgument(company, 'company')
  objectIdArgument(deliveryId, 'logId')
  const original = await ctx.store.getDelivery(company, deliveryId)
  if (!original) throw new NotFoundError('log', deliveryId)
  await activeWebhook(ctx, company, original.webhookId)
  const delivery = await queue(ctx, original.webhookId, original.event, original.id)
  ctx.kick()
  return { deliveries: [delivery] }
}

/**
 * Sends again every failed delivery of a webhook created since a time, oldest first.
 *
 * @example
 * ```ts
 * await recover(ctx, company, webhookId, { since: '2026-11-27T00:00:00Z' })
 * ```
 */
export async function recover(ctx: ReplayContext, company: string, webhookId: string, options: RecoverOptions): Promise<RecoverResult> {
  const { since, until, limit } = parse(RecoverSchema, options, 'recover options')
  const from = epoch(since)
  const to = until === undefined ? ctx.now() : epoch(until)
  await activeWebhook(ctx, company, webhookId)
  // Pages are newest first: read back to `since`, then send oldest first. A delivery written while
  // paging shifts the pages, so one may be read twice: keep each id once.
  const failed = new Map<string, Delivery>()
  let scanned = 0
  for (let offset = 0; ; offset += PAGE) {
    const page = await ctx.store.listDeliveries(company, webhookId, { limit: PAGE, offset })
    scanned += page.items.length
    for (const d of page.items) if (d.state === 'failed' && d.createdAt >= from && d.createdAt < to) failed.set(d.id, d)
    if (page.items.length < PAGE || page.items.some((d) => d.createdAt < from)) break
    if (scanned >= MAX_SCANNED) {
      throw ValidationError.field('since', `since: the window holds more than ${MAX_SCANNED} deliveries; recover a shorter one (a later since, or an until)`)
    }
  }
  const ordered = [...failed.values()].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  let chosen = ordered.slice(0, limit)
  const next = ordered[chosen.length]
  // `nextSince` is a millisecond: never split one between two calls, or its deliveries would be sent twice.
  if (next && chosen.length && chosen.at(-1)!.createdAt === next.createdAt) {
    const trimmed = chosen.filter((d) => d.createdAt !== next.createdAt)
    chosen = trimmed.length ? trimmed : ordered.filter((d) => d.createdAt === next.createdAt)
  }
  const deliveries: ReplayResult['deliveries'] = []
  for (const original of chosen) deliveries.push(await queue(ctx, webhookId, original.event, original.id))
  if (deliveries.length) ctx.kick()
  const rest = ordered[chosen.length]
  const window = new Date(to).toISOString()
  return rest ? { deliveries, until: window, nextSince: new Date(rest.createdAt).toISOString() } : { deliveries, until: window }
}

function epoch(time: Date | string | number): number {
  return time instanceof Date ? time.getTime() : typeof time === 'number' ? time : Date.parse(time)
}

/**
 * Sends a test event to one webhook: its trigger's type and first event name, `extraData.test`
 * set to `true`, and `data` as given or a sample carrying the webhook's context values.
 *
 * @example
 * ```ts
 * await sendTest(ctx, company, webhookId, {}) // the receiver sees extraData: { test: true }
 * ```
 */
export async function sendTest(ctx: ReplayContext, company: string, webhookId: string, options: TestEventOptions = {}): Promise<ReplayResult> {
  const { data } = parse(TestSchema, options, 'test options')
  const webhook = await activeWebhook(ctx, company, webhookId)
  const row = TRIGGERS[webhook.trigger]
  const event: COTEvent = {
    company,
    type: row.type,
    event: row.events[0],
    data: row.type === 'Auth' ? null : data !== undefined ? data : sample(webhook),
    diff: {},
    extraData: { test: true },
    createdAt: new Date(ctx.now()).toISOString(),
  }
  ctx.checkSize(event)
  const delivery = await queue(ctx, webhookId, event)
  ctx.kick()
  return { deliveries: [delivery] }
}

function sample(webhook: COTWebhook): Record<string, unknown> {
  const data: Record<string, unknown> = { _id: objectId(), company: webhook.company }
  // Carry the context values, so a receiver filtering like the webhook does accepts the sample.
  for (const [field, dataField] of Object.entries(TRIGGERS[webhook.trigger].context)) {
    const value = webhook.context[field as keyof COTWebhook['context']]
    data[dataField as string] = value || objectId()
  }
  return data
}
