import { createWebhooks, type Webhooks, type WebhooksOptions } from 'cotwebhook'
import type { Context, MiddlewareHandler } from 'hono'
import type { D1Like } from './d1-types.js'
import { d1Store } from './d1-store.js'

/** A Queue producer binding (`env.QUEUE`). */
export interface QueueLike {
  send(body: unknown, options?: { delaySeconds?: number }): Promise<unknown>
}

/** What a queue consumer receives. */
export interface MessageBatchLike {
  ackAll(): void
  retryAll(options?: { delaySeconds?: number }): void
}

/** What the Worker gives a handler to keep work alive after the response. */
export interface ExecutionContextLike {
  waitUntil(promise: Promise<unknown>): void
}

/** Options of {@link workerWebhooks}. */
export interface WorkerWebhooksOptions<Env> {
  /** The D1 binding holding webhooks, deliveries and logs. */
  database: (env: Env) => D1Like
  /** The Queue producer that carries delivery work to the consumer (`queue` below). */
  queue: (env: Env) => QueueLike
  /** Engine options (retry, timeoutMs, ordering, allowPrivateNetworks, …), per env. */
  engine?: (env: Env) => Omit<WebhooksOptions, 'store' | 'dispatch' | 'pollIntervalMs'>
  /** Table prefix in D1. Default `cotwebhook_`. */
  prefix?: string
}

/** The Worker's entry points, from {@link workerWebhooks}. */
export interface WorkerWebhooks<Env> {
  /** An engine for this request: `emit()` commits to D1, then hands the work to the queue. */
  engine(env: Env, ctx?: ExecutionContextLike): Webhooks
  /** Hono middleware: `c.var.webhooks` is `engine(c.env, c.executionCtx)`. */
  middleware(): MiddlewareHandler
  /** The queue consumer: delivers what is due (retries included), then schedules the next wake-up. */
  queue(batch: MessageBatchLike, env: Env, ctx: ExecutionContextLike): Promise<void>
  /** The Cron Trigger: the same sweep, so nothing depends on a queue message or on waitUntil. */
  scheduled(controller: unknown, env: Env, ctx: ExecutionContextLike): Promise<void>
}

// Cloudflare Queues take delays of at most 12 hours.
const MAX_QUEUE_DELAY_SECONDS = 43_200

/**
 * cotwebhook on Cloudflare Workers: D1 holds the state, a Queue carries the work past the request,
 * and a Cron Trigger sweeps what is due in case a message was lost.
 *
 * - In a request, `emit()` writes the deliveries to D1 before it resolves, then sends a wake-up message
 *   to the queue through `executionCtx.waitUntil`.
 * - The consumer claims due deliveries from D1 (per-webhook order holds: a webhook's next delivery is
 *   claimable only after the previous one is final) and runs their attempts; short retries are waited
 *   in the invocation, longer ones are left in D1 with their due time and a delayed wake-up message.
 * - The cron handler runs the same sweep, so a lost message or a cut-off `waitUntil` only delays; it
 *   also prunes, when the engine options set `retention`.
 * - Tables are created on first use, by whichever request or sweep needs them.
 *
 * @example
 * ```ts
 * const webhooks = workerWebhooks<Env>({ database: (env) => env.DB, queue: (env) => env.WEBHOOK_QUEUE })
 * const app = new Hono<{ Bindings: Env }>()
 * app.use(webhooks.middleware())
 * app.route('/api/v3', webhookApi((c) => c.var.webhooks, { company }))
 * export default { fetch: app.fetch, queue: webhooks.queue, scheduled: webhooks.scheduled }
 * ```
 */
export function workerWebhooks<Env>(options: WorkerWebhooksOptions<Env>): WorkerWebhooks<Env> {
  // Each request's store checks the schema (creating the tables if missing) within that request: a
  // promise shared across requests would belong to one that may already be gone.
  const storeFor = (env: Env) =>
    d1Store(options.database(env), { autoMigrate: true, ...(options.prefix === undefined ? {} : { prefix: options.prefix }) })

  const wakeUp = (env: Env, delayMs = 0) =>
    options.queue(env).send(
      { kind: 'cotwebhook:wake' },
      delayMs > 0 ? { delaySeconds: Math.min(MAX_QUEUE_DELAY_SECONDS, Math.ceil(delayMs / 1000)) } : undefined,
    )

  const engine = (env: Env, ctx?: ExecutionContextLike): Webhooks => {
    const hooks = createWebhooks({ ...options.engine?.(env), store: storeFor(env), dispatch: false, pollIntervalMs: 0 })
    return {
      ...hooks,
      async emit(event, emitOptions) {
        const result = await hooks.emit(event, emitOptions)
        if (result.deliveries.length) {
          // The deliveries are in D1 already; the message only saves waiting for the next sweep.
          const handOff = wakeUp(env).catch((error: unknown) => console.error('cotwebhook: queue hand-off failed; the cron sweep will deliver', error))
          if (ctx) ctx.waitUntil(handOff)
          else await handOff
        }
        return result
      },
    }
  }

  const sweep = async (env: Env, prune: boolean) => {
    const store = storeFor(env)
    const engineOptions = options.engine?.(env) ?? {}
    const hooks = createWebhooks({ ...engineOptions, store, dispatch: true, pollIntervalMs: 0 })
    try {
      await hooks.flush()
      // No timer lives long enough here: the Cron sweep is where retention happens.
      if (prune && engineOptions.retention) await hooks.prune()
    } finally {
      await hooks.close()
    }
    // After close(): runs it cut short have given their deliveries back, so this wake time counts them.
    const next = await store.nextWakeAt(Date.now(), (engineOptions.ordering ?? 'webhook') === 'webhook')
    if (next !== undefined) await wakeUp(env, next - Date.now())
  }

  return {
    engine,

    middleware() {
      return async function cotwebhookWorker(c: Context, next) {
        c.set('webhooks', engine(c.env as Env, executionContextOf(c)))
        await next()
      }
    },

    async queue(batch, env) {
      try {
        await sweep(env, false)
        batch.ackAll()
      } catch (error) {
        batch.retryAll()
        throw error
      }
    },

    async scheduled(_controller, env) {
      await sweep(env, true)
    },
  }
}

function executionContextOf(c: Context): ExecutionContextLike | undefined {
  try {
    return c.executionCtx
  } catch {
    return undefined
  }
}
