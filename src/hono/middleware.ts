import type { Context, MiddlewareHandler } from 'hono'
import type { Webhooks } from '../engine.js'

/** The variables `webhooks()` puts on the context: `c.var.webhooks`. */
export type WebhooksVariables = {
  /** The engine, for `c.var.webhooks.emit(...)` in handlers. */
  webhooks: Webhooks
}

/** Options of {@link webhooks}. */
export interface WebhooksMiddlewareOptions {
  /**
   * On runtimes with an execution context (Cloudflare Workers), hand the delivery work of a request
   * that emitted to `executionCtx.waitUntil`, so it is not cut off when the response is sent.
   * Default `true`; ignored where there is no execution context (Node, Bun).
   */
  waitUntil?: boolean
}

/**
 * Puts the webhook engine on the context as `c.var.webhooks`.
 *
 * @param {Webhooks} hooks - the engine from `createWebhooks()`
 * @param {boolean} [options.waitUntil=true] - on Workers, keep delivery alive past the response
 * @returns {MiddlewareHandler} the middleware
 * @example
 * ```ts
 * const app = new Hono<{ Variables: WebhooksVariables }>()
 * app.use(webhooks(hooks))
 * app.post('/tasks', async (c) => {
 *   const task = await saveTask(await c.req.json())
 *   await c.var.webhooks.emit({ company, type: 'COTTask', event: 'create', data: task })
 *   return c.json(task, 201)
 * })
 * ```
 */
export function webhooks(
  hooks: Webhooks,
  options: WebhooksMiddlewareOptions = {},
): MiddlewareHandler<{ Variables: WebhooksVariables }> {
  const useWaitUntil = options.waitUntil ?? true
  return async function webhooks(c, next) {
    let emitted = false
    const scoped: Webhooks = {
      ...hooks,
      emit: async (event, emitOptions) => {
        const result = await hooks.emit(event, emitOptions)
        if (result.deliveries.length) emitted = true
        return result
      },
    }
    c.set('webhooks', scoped)
    await next()
    if (!emitted || !useWaitUntil) return
    const executionCtx = executionContextOf(c)
    executionCtx?.waitUntil(hooks.drain().catch((error) => console.error('cotwebhook:', error)))
  }
}

// `c.executionCtx` throws where the runtime has none (Node, Bun): that is "no execution context".
function executionContextOf(c: Context): { waitUntil(promise: Promise<unknown>): void } | undefined {
  try {
    return c.executionCtx
  } catch {
    return undefined
  }
}
