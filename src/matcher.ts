import { LRUCache } from 'lru-cache'
import type { COTEvent, COTWebhook } from './model.js'
import type { Store } from './store.js'
import { TRIGGERS, TRIGGER_NAMES, triggerOf, type ContextField, type Trigger } from './triggers.js'

/** Options of {@link createMatcher}. */
export interface MatcherOptions {
  /** Where the active webhooks are read from on a cache miss. */
  store: Store
  /** How many (company, trigger) lists to keep. Default 10 000. */
  cacheSize?: number
  /** Re-read a cached list after this long (other processes may have written webhooks); 0 keeps it until a write. Default 0. */
  cacheTtlMs?: number
}

/** Finds the webhooks an event goes to. */
export interface Matcher {
  /** The company's active webhooks whose trigger answers the event and whose context admits it. */
  match(event: COTEvent): Promise<COTWebhook[]>
  /** Drops what is cached for a company (after any write to its webhooks). */
  invalidate(company: string): void
}

// One precomputed filter per trigger: [context field, data field] pairs.
const FILTERS = Object.fromEntries(
  TRIGGER_NAMES.map((t) => [t, Object.entries(TRIGGERS[t].context) as [ContextField, string][]]),
) as Record<Trigger, [ContextField, string][]>

/**
 * The matcher: an index by (company, trigger) behind an LRU cache, so matching costs the number of
 * webhooks of that company and trigger, not the number of webhooks in the store.
 *
 * @example
 * ```ts
 * const matcher = createMatcher({ store })
 * await matcher.match(event) // [COTWebhook, …]
 * ```
 */
export function createMatcher(options: MatcherOptions): Matcher {
  const { store } = options
  const cache = new LRUCache<string, COTWebhook[]>({
    max: options.cacheSize ?? 10_000,
    ...(options.cacheTtlMs ? { ttl: options.cacheTtlMs } : {}),
  })
  // A write that lands while a list is being read must not leave the old list cached.
  const generation = new Map<string, number>()

  return {
    async match(event) {
      const trigger = triggerOf(event.type, event.event)
      if (!trigger) return []
      const key = `${event.company}\0${trigger}`
      let candidates = cache.get(key)
      if (!candidates) {
        const before = generation.get(event.company) ?? 0
        candidates = await store.activeWebhooks(event.company, trigger)
        if ((generation.get(event.company) ?? 0) === before) cache.set(key, candidates)
      }
      const filter = FILTERS[trigger]
      if (!filter.length) return candidates
      const data = event.data ?? {}
      return candidates.filter((webhook) =>
        filter.every(([field, dataField]) => webhook.context[field] === '' || webhook.context[field] === data[dataField]),
      )
    },

    invalidate(company) {
      generation.set(company, (generation.get(company) ?? 0) + 1)
      for (const trigger of TRIGGER_NAMES) cache.delete(`${company}\0${trigger}`)
    },
  }
}
