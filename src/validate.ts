import * as v from 'valibot'
import { ValidationError } from './errors.js'

/**
 * Parses `input` with a valibot schema, or throws a {@link ValidationError} whose message names each
 * offending field and rule (`code: only lowercase letters, digits and underscores`) and whose
 * `fields` maps dotted paths to messages (the `fields` of a 400 body).
 *
 * @example
 * ```ts
 * const input = parse(WebhookInputSchema, body, 'webhook')
 * ```
 */
export function parse<TSchema extends v.GenericSchema>(
  schema: TSchema,
  input: unknown,
  what: string,
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, input)
  if (result.success) return result.output
  throw issuesToError(result.issues, what)
}

/**
 * Turns valibot issues into one {@link ValidationError}.
 *
 * @example
 * ```ts
 * const r = v.safeParse(schema, x); if (!r.success) throw issuesToError(r.issues, 'event')
 * ```
 */
export function issuesToError(issues: readonly v.BaseIssue<unknown>[], what: string): ValidationError {
  // A Map, not an object: a client's key may be "__proto__" (a JSON body's own property).
  const fields = new Map<string, string[]>()
  const lines: string[] = []
  for (const issue of issues) {
    const path = issue.path?.map((item) => String(item.key)).join('.') ?? ''
    const rule = ruleOf(issue)
    const line = path ? `${path}: ${rule}` : `${what}: ${rule}`
    const list = fields.get(path)
    if (list) list.push(line)
    else fields.set(path, [line])
    lines.push(line)
  }
  return new ValidationError(`invalid ${what}: ${lines.join('; ')}`, Object.fromEntries(fields))
}

function ruleOf(issue: v.BaseIssue<unknown>): string {
  // valibot reports a missing key and an unknown key with generic wording; say it plainly.
  if (issue.kind === 'schema' && issue.received === 'undefined' && issue.path?.length) return 'is required'
  if (issue.type === 'strict_object' && issue.expected === 'never') return 'unknown field'
  return issue.message
}
