/**
 * One abort listener per signal, fanning out to every subscriber: hundreds of runs may wait on the
 * engine's shutdown signal at once, and a listener each would trip Node's "possible EventTarget
 * memory leak" warning.
 */

const hubs = new WeakMap<AbortSignal, Set<() => void>>()

/**
 * Calls `callback` once when `signal` aborts; returns a function that unsubscribes.
 *
 * @example
 * ```ts
 * const off = whenAborted(signal, () => clearTimeout(timer))
 * // … later, when done waiting:
 * off()
 * ```
 */
export function whenAborted(signal: AbortSignal, callback: () => void): () => void {
  let hub = hubs.get(signal)
  if (!hub) {
    const set = new Set<() => void>()
    hub = set
    hubs.set(signal, set)
    signal.addEventListener('abort', () => {
      for (const fn of [...set]) fn()
      set.clear()
    }, { once: true })
  }
  const set = hub
  set.add(callback)
  return () => void set.delete(callback)
}
