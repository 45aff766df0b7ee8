import { whenAborted } from './abort-hub.js'

/**
 * Slots counted per key (a host, a webhook): at most `limit` held at once for one key, the rest waiting
 * in line, first come first served. A key's entry exists only while something holds or waits for it.
 */
export interface KeyedSlots {
  /** A slot of `key` now (call the function to give it back), or `undefined` when the key is full. */
  trySlot(key: string): (() => void) | undefined
  /** Waits in line for a slot of `key`; `undefined` after `maxWaitMs` or on abort. */
  waitSlot(key: string, maxWaitMs: number, signal: AbortSignal): Promise<(() => void) | undefined>
  /** Slots of `key` held now. */
  held(key: string): number
}

interface Entry {
  active: number
  waiters: Array<(release: () => void) => void>
}

/**
 * Makes a set of per-key slots.
 *
 * @example
 * ```ts
 * const hosts = keyedSlots(4)
 * const release = hosts.trySlot('api.example.com') ?? (await hosts.waitSlot('api.example.com', 5_000, signal))
 * if (release) try { await send() } finally { release() }
 * ```
 */
export function keyedSlots(limit: number): KeyedSlots {
  const entries = new Map<string, Entry>()

  const entry = (key: string): Entry => {
    let found = entries.get(key)
    if (!found) entries.set(key, (found = { active: 0, waiters: [] }))
    return found
  }
  const forget = (key: string, found: Entry) => {
    if (found.active === 0 && found.waiters.length === 0) entries.delete(key)
  }

  // A slot's release hands it straight to the next in line, or frees it.
  const releaser = (key: string, found: Entry) => {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = found.waiters.shift()
      if (next) return next(releaser(key, found))
      found.active--
      forget(key, found)
    }
  }

  return {
    trySlot(key) {
      const found = entry(key)
      if (found.active >= limit || found.waiters.length) return undefined
      found.active++
      return releaser(key, found)
    },

    waitSlot(key, maxWaitMs, signal) {
      const found = entry(key)
      return new Promise((resolve) => {
        if (maxWaitMs <= 0 || signal.aborted) {
          forget(key, found)
          return resolve(undefined)
        }
        const leave = () => {
          const at = found.waiters.indexOf(take)
          if (at >= 0) found.waiters.splice(at, 1)
          forget(key, found)
          resolve(undefined)
        }
        const timer = setTimeout(() => {
          off()
          leave()
        }, maxWaitMs)
        const off = whenAborted(signal, () => {
          clearTimeout(timer)
          leave()
        })
        const take = (release: () => void) => {
          clearTimeout(timer)
          off()
          resolve(release)
        }
        found.waiters.push(take)
      })
    },

    held: (key) => entries.get(key)?.active ?? 0,
  }
}
