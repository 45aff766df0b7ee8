/**
 * The trigger table of Cotalker's webhooks: which event `type` and `event` values a trigger answers,
 * and which `context` fields filter it against which field of the event's `data`.
 * Adding a trigger is adding a row here; the model, the matcher and the API read this table.
 */

/** The context fields a COTWebhook carries (all of them, for every trigger). */
export const CONTEXT_FIELDS = ['survey', 'group', 'taskGroup'] as const

/** One context field name. */
export type ContextField = (typeof CONTEXT_FIELDS)[number]

/** What one trigger answers and how its context filters. */
export interface TriggerRow {
  /** The COTEvent `type` this trigger answers. */
  readonly type: string
  /** The COTEvent `event` values this trigger answers. */
  readonly events: readonly string[]
  /** Context field -> the field of the event's `data` it must equal when it is not `""`. */
  readonly context: Partial<Record<ContextField, string>>
}

/**
 * The table. Keys are the trigger names of the COTWebhook model.
 *
 * @example
 * ```ts
 * TRIGGERS['create-edit-delete-task'].context // { taskGroup: 'taskGroup' }
 * ```
 */
export const TRIGGERS = {
  'create-edit-delete-task': {
    type: 'COTTask',
    events: ['create', 'edit', 'delete'],
    context: { taskGroup: 'taskGroup' },
  },
  'create-edit-delete-survey': {
    type: 'COTSurvey',
    events: ['create', 'edit', 'delete'],
    // A survey event's data is a survey execution: { surveyId, group, surveyData }.
    context: { survey: 'surveyId', group: 'group' },
  },
  'create-edit-delete-user': { type: 'COTUser', events: ['create', 'edit', 'delete'], context: {} },
  'create-edit-delete-property': { type: 'COTProperty', events: ['create', 'edit', 'delete'], context: {} },
  'logout-user': { type: 'Auth', events: ['logout'], context: {} },
} as const satisfies Record<string, TriggerRow>

/** A trigger name. */
export type Trigger = keyof typeof TRIGGERS

/** Every trigger name, in table order. */
export const TRIGGER_NAMES = Object.keys(TRIGGERS) as Trigger[]

/** A COTEvent `type`. */
export type EventType = (typeof TRIGGERS)[Trigger]['type']

/** A COTEvent `event`. */
export type EventName = (typeof TRIGGERS)[Trigger]['events'][number]

/** Every COTEvent `type`, in table order. */
export const EVENT_TYPES = [...new Set(TRIGGER_NAMES.map((t) => TRIGGERS[t].type))] as EventType[]

/** Every COTEvent `event`, in table order. */
export const EVENT_NAMES = [
  ...new Set(TRIGGER_NAMES.flatMap((t) => TRIGGERS[t].events as readonly string[])),
] as EventName[]

const byTypeAndEvent = new Map<string, Trigger>()
for (const trigger of TRIGGER_NAMES) {
  for (const event of TRIGGERS[trigger].events) byTypeAndEvent.set(`${TRIGGERS[trigger].type}:${event}`, trigger)
}

/**
 * The trigger that answers an event, or `undefined` when the pair is not in the table.
 *
 * @example
 * ```ts
 * triggerOf('COTTask', 'edit') // 'create-edit-delete-task'
 * triggerOf('Auth', 'create')  // undefined
 * ```
 */
export function triggerOf(type: string, event: string): Trigger | undefined {
  return byTypeAndEvent.get(`${type}:${event}`)
}

/**
 * Whether a context field filters the given trigger (if not, it must be `""`).
 *
 * @example
 * ```ts
 * contextApplies('create-edit-delete-task', 'survey') // false
 * ```
 */
export function contextApplies(trigger: Trigger, field: ContextField): boolean {
  return field in TRIGGERS[trigger].context
}
