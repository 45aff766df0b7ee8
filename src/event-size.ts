import { EventTooLargeError } from './errors.js'
import type { COTEvent } from './model.js'

const encoder = new TextEncoder()

/**
 * The event's JSON (the bytes its deliveries sign and send), or {@link EventTooLargeError} when it
 * is over `maxBytes` in UTF-8.
 *
 * @example
 * ```ts
 * const body = eventJson(event, 262_144)
 * ```
 */
export function eventJson(event: COTEvent, maxBytes: number): string {
  const json = JSON.stringify(event)
  // Cheap first: a UTF-16 unit is at most 3 bytes in UTF-8, so most events need no encoding.
  const bytes = json.length * 3 <= maxBytes ? json.length : encoder.encode(json).byteLength
  if (bytes > maxBytes) throw new EventTooLargeError(bytes, maxBytes)
  return json
}
