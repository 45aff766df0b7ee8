import * as v from 'valibot'
import { CONTEXT_FIELDS, EVENT_NAMES, EVENT_TYPES, TRIGGERS, TRIGGER_NAMES, contextApplies, triggerOf } from './triggers.js'
import type { ContextField, Trigger } from './triggers.js'
import { ValidationError } from './errors.js'
import { issuesToError, parse } from './validate.js'

/** 24 lowercase hexadecimal characters, as MongoDB writes ObjectIds. */
export const OBJECT_ID = /^[0-9a-f]{24}$/

/** A MongoDB-style ObjectId string. */
export const ObjectIdSchema = v.pipe(
  v.string('must be a string'),
  v.regex(OBJECT_ID, 'must be an ObjectId (24 lowercase hexadecimal characters)'),
)

/** A context value: `""` (matches everything) or an ObjectId. */
export const ContextValueSchema = v.pipe(
  v.string('must be a string'),
  v.regex(/^(?:[0-9a-f]{24})?$/, 'must be "" or an ObjectId (24 lowercase hexadecimal characters)'),
)

/** One of the five triggers. */
export const TriggerSchema = v.picklist(TRIGGER_NAMES, `must be one of: ${TRIGGER_NAMES.join(', ')}`)

/** `code`: lowercase letters, digits and underscores; unique per company; immutable. */
export const CodeSchema = v.pipe(
  v.string('must be a string'),
  v.minLength(1, 'is required'),
  v.maxLength(64, 'must be at most 64 characters'),
  v.regex(/^[a-z0-9_]+$/, 'only lowercase letters, digits and underscores'),
)

const NameSchema = v.pipe(
  v.string('must be a string'),
  v.trim(),
  v.minLength(1, 'must not be empty'),
  v.maxLength(256, 'must be at most 256 characters'),
)

const DescriptionSchema = v.pipe(v.string('must be a string'), v.maxLength(2048, 'must be at most 2048 characters'))

// The URL policy (schemes, private addresses) is url-guard's job; here only the shape.
const UrlSchema = v.pipe(
  v.string('must be a string'),
  v.maxLength(2048, 'must be at most 2048 characters'),
  v.check((s) => URL.canParse(s), 'must be an absolute URL'),
)

const BooleanSchema = v.boolean('must be true or false')

// valibot's object and record schemas accept arrays (they are objects) and output a copy, so the
// shape is checked on the input, before them: a COTWebhook body or an event's data is never an array.
// The pipe's input type is `unknown`; the exported input types come from the wrapped schemas.
export function plainObject<TSchema extends v.GenericSchema>(schema: TSchema, message: string) {
  return v.pipe(
    v.custom<unknown>((value) => typeof value === 'object' && value !== null && !Array.isArray(value), message),
    schema,
  )
}

/** The `context` object of a COTWebhook: every field present, `""` where it does not filter. */
export const ContextSchema = v.strictObject({
  survey: ContextValueSchema,
  group: ContextValueSchema,
  taskGroup: ContextValueSchema,
})

/** A COTWebhook's `context`. */
export type WebhookContext = v.InferOutput<typeof ContextSchema>

const PartialContextSchema = plainObject(
  v.strictObject({
    survey: v.optional(ContextValueSchema),
    group: v.optional(ContextValueSchema),
    taskGroup: v.optional(ContextValueSchema),
  }),
  'must be an object',
)

/** A COTWebhook, exactly as Cotalker's model page describes it. */
export const WebhookSchema = v.object({
  _id: ObjectIdSchema,
  company: ObjectIdSchema,
  isActive: v.boolean(),
  trigger: TriggerSchema,
  url: v.string(),
  name: v.string(),
  code: CodeSchema,
  context: ContextSchema,
  __v: v.pipe(v.number(), v.integer(), v.minValue(0)),
  description: v.string(),
})

/** A COTWebhook subscription. Secrets are never part of it. */
export type COTWebhook = v.InferOutput<typeof WebhookSchema>

/** How a webhook signs: `v1` HMAC-SHA256 under a `whsec_` secret, or `v1a` Ed25519 under a `whsk_` key. */
export const SignatureSchemeSchema = v.picklist(['hmac-sha256', 'ed25519'], 'must be "hmac-sha256" or "ed25519"')

const WebhookInputObject = v.strictObject({
  name: NameSchema,
  code: CodeSchema,
  trigger: TriggerSchema,
  url: UrlSchema,
  context: v.optional(PartialContextSchema),
  description: v.optional(DescriptionSchema, ''),
  isActive: v.optional(BooleanSchema, true),
  // How requests are signed: kept with the secrets, never part of the COTWebhook.
  signature: v.optional(SignatureSchemeSchema, 'hmac-sha256'),
})

/** What `registry.create` accepts. Unknown fields are refused, so typos surface. */
export const WebhookInputSchema = plainObject(WebhookInputObject, 'must be an object')

// The input of `registry.create`: typed by trigger in input-types.ts.
export type { WebhookInput } from './input-types.js'

const WebhookPatchObject = v.strictObject({
  name: v.optional(NameSchema),
  // Accepted only when equal to the stored code: code is immutable once saved.
  code: v.optional(CodeSchema),
  trigger: v.optional(TriggerSchema),
  url: v.optional(UrlSchema),
  context: v.optional(PartialContextSchema),
  description: v.optional(DescriptionSchema),
  isActive: v.optional(BooleanSchema),
  __v: v.optional(v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(0, 'must be 0 or more'))),
})

/** What `registry.update` accepts: any subset of the editable fields, plus `__v` to guard against lost updates. */
export const WebhookPatchSchema = plainObject(WebhookPatchObject, 'must be an object')

// The input of `registry.update`: typed in input-types.ts.
export type { WebhookPatch } from './input-types.js'

/**
 * Checks the context against its trigger: a field that does not filter the trigger must be `""`.
 * Cotalker accepts such a webhook and then never delivers to it; we say so at once.
 *
 * @example
 * ```ts
 * checkContext('create-edit-delete-user', { survey: '', group: '', taskGroup: '6261…' }) // throws
 * ```
 */
export function checkContext(trigger: Trigger, context: WebhookContext): void {
  const fields: Record<string, string[]> = {}
  for (const field of CONTEXT_FIELDS) {
    if (context[field] !== '' && !contextApplies(trigger, field)) {
      fields[`context.${field}`] = [`context.${field}: must be "" for trigger ${trigger} (${describeContext(field)})`]
    }
  }
  const lines = Object.values(fields).flat()
  if (lines.length) throw new ValidationError(`invalid webhook: ${lines.join('; ')}`, fields)
}

function describeContext(field: ContextField): string {
  const users = TRIGGER_NAMES.filter((t) => contextApplies(t, field))
  return users.length ? `it filters ${users.join(', ')} only` : 'no trigger uses it'
}

/** One `diff` entry of an edit: the value before and after. */
export const DiffEntrySchema = v.object(
  { previous: v.unknown(), changedTo: v.unknown() },
  'must be an object { previous, changedTo }',
)

const ObjectOrNullSchema = v.nullable(plainObject(v.record(v.string(), v.unknown()), 'must be an object or null'))
const DataSchema = ObjectOrNullSchema

/** A COTEvent: what a webhook's URL receives as the JSON body. */
export const EventSchema = v.object({
  company: ObjectIdSchema,
  type: v.picklist(EVENT_TYPES, `must be one of: ${EVENT_TYPES.join(', ')}`),
  event: v.picklist(EVENT_NAMES, `must be one of: ${EVENT_NAMES.join(', ')}`),
  data: DataSchema,
  diff: v.record(v.string(), DiffEntrySchema, 'must be an object keyed by JSON pointer'),
  extraData: ObjectOrNullSchema,
  createdAt: v.pipe(v.string('must be a string'), v.isoTimestamp('must be an ISO 8601 timestamp')),
})

/** A COTEvent. */
export type COTEvent = v.InferOutput<typeof EventSchema>

const EmitInputObject = v.object({
  company: ObjectIdSchema,
  type: EventSchema.entries.type,
  event: EventSchema.entries.event,
  data: DataSchema,
  diff: v.optional(EventSchema.entries.diff),
  extraData: v.optional(EventSchema.entries.extraData),
  createdAt: v.optional(
    v.union(
      [v.pipe(v.string(), v.isoTimestamp('must be an ISO 8601 timestamp or a Date')), v.date()],
      'must be an ISO 8601 timestamp or a Date',
    ),
  ),
})

/** What `emit()` accepts: a COTEvent whose `diff`, `extraData` and `createdAt` may be left out. */
export const EmitInputSchema = plainObject(EmitInputObject, 'must be an object')

// The input of `emit()`: a union over `type` in input-types.ts.
export type { EmitInput } from './input-types.js'

const LogoutExtraSchema = v.object({
  extraData: v.object({ userId: ObjectIdSchema, timestamp: v.number('must be a number (epoch time)') }),
})

/**
 * Validates an `emit()` input and returns the COTEvent to deliver.
 * Beyond the shapes: the type/event pair must be in the trigger table, and the data fields that
 * webhook contexts filter on must be present, or a filtered webhook could never match.
 *
 * @example
 * ```ts
 * toEvent({ company, type: 'COTTask', event: 'create', data: { _id, taskGroup } })
 * ```
 */
export function toEvent(input: unknown, now: Date = new Date()): COTEvent {
  const parsed = parse(EmitInputSchema, input, 'event')
  const trigger = triggerOf(parsed.type, parsed.event)
  if (!trigger) {
    const allowed = TRIGGER_NAMES.filter((t) => TRIGGERS[t].type === parsed.type).flatMap((t) => TRIGGERS[t].events)
    throw ValidationError.field('event', `event: ${parsed.type} events are ${allowed.join(', ')}, not ${parsed.event}`)
  }
  const fields: Record<string, string[]> = {}
  if (parsed.type === 'Auth') {
    if (parsed.data !== null) fields.data = ['data: must be null for a logout']
    if (parsed.extraData != null) {
      // Wrapped so the issue paths start at extraData.
      const extra = v.safeParse(LogoutExtraSchema, { extraData: parsed.extraData })
      if (!extra.success) Object.assign(fields, issuesToError(extra.issues, 'event').fields)
    }
  } else {
    // Cotalker sends extraData only with a logout.
    if (parsed.extraData != null) fields.extraData = ['extraData: must be null except on a logout']
    if (parsed.data === null) fields.data = [`data: must be the ${parsed.type} object, not null`]
    else {
      for (const [field, dataField] of Object.entries(TRIGGERS[trigger].context) as [ContextField, string][]) {
        const value = parsed.data[dataField]
        if (typeof value !== 'string' || !OBJECT_ID.test(value)) {
          fields[`data.${dataField}`] = [
            `data.${dataField}: must be an ObjectId (${trigger} webhooks filter on context.${field})`,
          ]
        }
      }
    }
  }
  const lines = Object.values(fields).flat()
  if (lines.length) throw new ValidationError(`invalid event: ${lines.join('; ')}`, fields)
  const createdAt = parsed.createdAt === undefined ? now : new Date(parsed.createdAt)
  return {
    company: parsed.company,
    type: parsed.type,
    event: parsed.event,
    data: parsed.data,
    diff: parsed.diff ?? {},
    extraData: parsed.extraData ?? null,
    createdAt: createdAt.toISOString(),
  }
}

/** A page of a list: `limit` 1–100 (default 10) and `page` from 1 (default 1), as Cotalker's list endpoints take them. */
export const PageSchema = v.object({
  limit: v.optional(
    v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(1, 'must be at least 1'), v.maxValue(100, 'must be at most 100')),
    10,
  ),
  page: v.optional(v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(1, 'must be at least 1')), 1),
})

/** One HTTP attempt of a delivery. */
export const AttemptSchema = v.object({
  /** When the attempt started (ISO 8601). */
  at: v.string(),
  /** The receiver's status; 409 for a network error or timeout, as Cotalker logs it. */
  status: v.number(),
  /** Time from sending to the end of the response (or the failure). */
  durationMs: v.number(),
  /** What went wrong without a response: `timeout`, `refused`, `reset`, `dns`, … and the detail. */
  error: v.optional(v.string()),
})

/** One HTTP attempt of a delivery. */
export type Attempt = v.InferOutput<typeof AttemptSchema>

/** A delivery's state: waiting (first attempt or a retry), or final. */
export const DeliveryStateSchema = v.picklist(['pending', 'succeeded', 'failed'])

/** A delivery's state. */
export type DeliveryState = v.InferOutput<typeof DeliveryStateSchema>

/** A COTWebhookLog: Cotalker's fields, plus `attempts`, `state`, `nextAttemptAt`, `durationMs`, `updatedAt`. */
export const LogSchema = v.object({
  _id: ObjectIdSchema,
  company: ObjectIdSchema,
  createdAt: v.string(),
  /** Status of the last attempt; `null` before the first. */
  status: v.nullable(v.number()),
  /** Retries made: attempts made minus one (0 before the first attempt). */
  retry: v.number(),
  /** The last response body (truncated) or the failure's description. */
  response: v.string(),
  event: EventSchema,
  /** The webhook's `_id`. */
  subscription: ObjectIdSchema,
  __v: v.number(),
  attempts: v.array(AttemptSchema),
  state: DeliveryStateSchema,
  /** When the next attempt is due; `null` once final. */
  nextAttemptAt: v.nullable(v.string()),
  /** Duration of the last attempt; `null` before the first. */
  durationMs: v.nullable(v.number()),
  updatedAt: v.string(),
})

/** A COTWebhookLog: one per delivery of an event to a webhook, updated on every attempt. */
export type COTWebhookLog = v.InferOutput<typeof LogSchema>
