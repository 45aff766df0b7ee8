/**
 * Resolves in the event loop's check phase: after the I/O callbacks of the current turn, and after
 * the `setImmediate` callbacks queued before it (undici's writes of requests made earlier in the turn,
 * among them), so work that waits here lets those requests go first. Each call queues its own
 * callback: a promise shared between calls could be resolved from another request's context, which
 * workerd refuses. Without `setImmediate` (workerd without Node compatibility) it resolves at once;
 * there each request is its own short context and nothing waits behind a long turn.
 *
 * @example
 * ```ts
 * const response = await send()
 * await nextTurn() // requests made earlier in this turn are written before the follow-up work runs
 * ```
 */
export function nextTurn(): Promise<void> {
  // Looked up at each call, as the other timers are (fake timers installed later apply here too).
  const immediate = (globalThis as { setImmediate?: (run: () => void) => unknown }).setImmediate
  if (!immediate) return Promise.resolve()
  return new Promise<void>((resolve) => void immediate(resolve))
}
