import type { ContextField, Trigger, TRIGGERS } from './triggers.js'

/**
 * The inputs of `emit()`, `registry.create` and `registry.update`, typed as strictly as they are
 * checked at run time: an event's `event` and `data` follow its `type`, a webhook's `context` its
 * `trigger`. Written from the trigger table, so a trigger added there is typed here too. (The valibot
 * schemas in `model.ts` check the same at run time, with messages naming each field.)
 */

type Row<T extends Trigger> = (typeof TRIGGERS)[T]
/** The context fields that filter webhooks of trigger `T` (`'taskGroup'` for tasks). */
type Filters<T extends Trigger> = keyof Row<T>['context'] & ContextField
/** The fields of an event's `data` those filters compare with (`'taskGroup'`; `'surveyId' | 'group'`). */
type FilteredData<T extends Trigger> = Row<T>['context'][Filters<T>] & string

/**
 * An object with these string fields and any others: object literals may carry more fields, and
 * interfaces (which have no index signature) are accepted too.
 */
type DataWith<F extends string> = ({ [K in F]: string } & Record<string, unknown>) | ({ [K in F]: string } & object)

/** One `diff` entry of an edit: JSON pointer -> the value before and after. */
export type EventDiff = Record<string, { previous: unknown; changedTo: unknown }>

interface EmitCommon {
  /** The company's ObjectId. */
  company: string
  /** What changed, for an edit. Default `{}`. */
  diff?: EventDiff
  /** When it happened. Default: now. */
  createdAt?: string | Date
}

type EmitFor<T extends Trigger> = Row<T>['type'] extends 'Auth'
  ? EmitCommon & {
      type: 'Auth'
      event: Row<T>['events'][number]
      /** A logout carries no object. */
      data: null
      /** Who logged out, and when (epoch milliseconds). */
      extraData?: { userId: string; timestamp: number } | null
    }
  : EmitCommon & {
      type: Row<T>['type']
      event: Row<T>['events'][number]
      /** The object, with the fields webhook contexts filter on (a task's `taskGroup`, …). */
      data: DataWith<FilteredData<T>>
      /** Only a logout carries extra data. */
      extraData?: null
    }

/**
 * What `emit()` accepts: a COTEvent whose `diff`, `extraData` and `createdAt` may be left out, with
 * `event` and `data` as its `type` requires.
 *
 * @example
 * ```ts
 * const input: EmitInput = { company, type: 'COTTask', event: 'edit', data: { _id, taskGroup } }
 * // { type: 'COTTask', event: 'logout' } or a task without `taskGroup` does not compile
 * ```
 */
export type EmitInput = { [T in Trigger]: EmitFor<T> }[Trigger]

/**
 * A webhook's `context` for trigger `T`: the fields that filter it, as ObjectIds (or `""` for none);
 * the others may only be `""`.
 */
export type ContextInput<T extends Trigger> = { [K in Filters<T>]?: string } & { [K in Exclude<ContextField, Filters<T>>]?: '' }

interface WebhookInputFor<T extends Trigger> {
  name: string
  /** Unique within the company: lowercase letters, digits and underscores. */
  code: string
  trigger: T
  url: string
  context?: ContextInput<T>
  /** Default `''`. */
  description?: string
  /** Default `true`. */
  isActive?: boolean
  /** `'ed25519'` signs `v1a` with a `whsk_` key and gives receivers its `whpk_` public key. Default `'hmac-sha256'` (`v1`, a `whsec_` secret). */
  signature?: 'hmac-sha256' | 'ed25519'
}

/**
 * What `registry.create` accepts, `context` typed by `trigger`.
 *
 * @example
 * ```ts
 * const input: WebhookInput = { name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url, context: { taskGroup } }
 * // context: { survey } on a task webhook, or a misspelt field, does not compile
 * ```
 */
export type WebhookInput = { [T in Trigger]: WebhookInputFor<T> }[Trigger]

/**
 * What `registry.update` accepts: any subset of the editable fields, plus `__v` to guard against lost
 * updates. With `trigger`, `context` is typed by it; without, by the stored trigger (checked at run time).
 *
 * @example
 * ```ts
 * const patch: WebhookPatch = { isActive: false, __v: 0 }
 * ```
 */
export type WebhookPatch =
  | ({ [T in Trigger]: Partial<WebhookInputFor<T>> & { trigger: T; __v?: number } }[Trigger])
  | (Partial<Omit<WebhookInputFor<Trigger>, 'trigger' | 'context'>> & {
      trigger?: undefined
      context?: { [K in ContextField]?: string }
      __v?: number
    })
