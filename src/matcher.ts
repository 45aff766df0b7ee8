import { LRUCache } from 'lru-cache'
import type { COTEvent, COTWebhook } from './model.js'
import type { Store } from './store.js'
import { TRIGGERS, TRIGGER_NAMES, type ContextField, type Trigger } from './triggers.js'

/** Options of {@link createMatcher}. */
export interface MatcherOptions {
  /** Where the active webhooks are read from on a cache miss. */
  store: Store
  /** How many companies' webhook lists to keep. Default 10 000. */
  cacheSize?: number
  /** Re-read a cached list after this long (other processes may have written webhooks); 0 keeps it until a write. Default 0. */
  cacheTtlMs?: number
}

/** Finds the webhooks an event goes to. */
export interface Matcher {
  /** The company's active webhooks whose trigger answers the event and whose context admits it. */
  match(event: COTEvent): Promise<COTWebhook[]>
  /** Drops what is cached for a company (after any write to its webhooks), or for all of them. */
  invalidate(company?: string): void
}

// type -> event -> trigger, and per trigger its [context field, data field] filter pairs: looked up
// on every emit, so built once, without string keys.
const BY_TYPE: Record<string, Record<string, Trigger>> = {}
const FILTERS = {} as Record<Trigger, readonly (readonly [ContextField, string])[]>
for (const trigger of TRIGGER_NAMES) {
  const row = TRIGGERS[trigger]
  for (const event of row.events) (BY_TYPE[row.type] ??= {})[event] = trigger
  FILTERS[trigger] = Object.entries(row.context) as [ContextField, string][]
}

/** One company's active webhooks per trigger, each loaded on first use. */
type CompanyLists = Partial<Record<Trigger, COTWebhook[]>>

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
  const cache = new LRUCache<string, CompanyLists>({
    max: options.cacheSize ?? 10_000,
    ...(options.cacheTtlMs ? { ttl: options.cacheTtlMs } : {}),
  })
  // A write that lands while a list is being read must not leave the old list cached.
  const generation = new Map<string, number>()
  let epoch = 0

  const load = async (company: string, trigger: Trigger): Promise<COTWebhook[]> => {
    const before = generation.get(company) ?? 0
    const beforeEpoch = epoch
    const list = await store.activeWebhooks(company, trigger)
    if ((generation.get(company) ?? 0) === before && epoch === beforeEpoch) {
      let lists = cache.get(company)
      if (!lists) cache.set(company, (lists = {}))
      lists[trigger] = list
    }
    return list
  }

  return {
    async match(event) {
      const trigger = BY_TYPE[event.type]?.[event.event]
      if (!trigger) return []
      const candidates = cache.get(event.company)?.[trigger] ?? (await load(event.company, trigger))
      const filter = FILTERS[trigger]
      if (!filter.length || !candidates.length) return candidates
      const data = (event.data ?? {}) as Record<string, unknown>
      const out: COTWebhook[] = []
      for (const webhook of candidates) {
        let admitted = true
        for (const [field, dataField] of filter) {
          const wanted = webhook.context[field]
          if (wanted !== '' && wanted !== data[dataField]) {
            admitted = false
            break
          }
        }
        if (admitted) out.push(webhook)
      }
      return out
    },

    invalidate(company) {
      if (company === undefined) {
        epoch++
        cache.clear()
        return
      }
      generation.set(company, (generation.get(company) ?? 0) + 1)
      cache.delete(company)
    },
  }
}
