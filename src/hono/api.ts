import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import * as v from 'valibot'
import type { Webhooks } from '../engine.js'
import { CompanyResolverError, InvalidJsonError, PayloadTooLargeError, UnauthorizedError } from '../errors.js'
import { OBJECT_ID } from '../model.js'
import { parse } from '../validate.js'
import { errorResponse } from './errors.js'
import { openApiDocument } from './openapi.js'

/** Options of {@link webhookApi}. */
export interface WebhookApiOptions {
  /**
   * The caller's company (an ObjectId) from the request, e.g. from its bearer token. Returning
   * nothing answers 401; returning something that is not an ObjectId is the host's bug: 500, and a
   * {@link CompanyResolverError} to `onError` (map other tenant keys with `companyIdFor`). Every route is scoped to this company: other companies' ids are 404.
   */
  company: (c: Context) => string | undefined | null | Promise<string | undefined | null>
  /** Largest accepted request body in bytes (413 beyond). Default 65 536. */
  maxBodyBytes?: number
  /** Where unexpected errors go before the 500 is answered. Default `console.error`. */
  onError?: (error: unknown) => void
  /** Where clients reach these routes, for the OpenAPI document's `servers`. Default `/api/v3`. */
  serverUrl?: string
}

type ApiEnv = { Variables: { company: string } }

// Query strings arrive as text; the ranges are checked where the numbers are used.
const Integer = v.pipe(v.string(), v.regex(/^\d{1,9}$/, 'must be a positive integer'), v.transform(Number))

const ListQuerySchema = v.object({
  limit: v.optional(Integer),
  page: v.optional(Integer),
  isActive: v.optional(v.picklist(['all', 'true', 'false'], 'must be all, true or false'), 'all'),
  count: v.optional(v.picklist(['true', 'false'], 'must be true or false')),
})

const PageQuerySchema = v.object({ limit: v.optional(Integer), page: v.optional(Integer) })

const StatsQuerySchema = v.object({ limit: v.optional(Integer) })

/**
 * The REST routes of Cotalker's webhook API, scoped to the caller's company. Mount under `/api/v3`:
 *
 * - `GET /webhook/subscription` — `?limit=10&page=1&isActive=all|true|false&count=true` → `{ data: { webhooks, count } }`
 * - `GET /webhook/subscription/:id` → `{ data: COTWebhook }`
 * - `GET /webhook/subscription/:id/secret` → `{ data: { secret } }`
 * - `GET /webhook/subscription/logs/:id` — `?limit&page` → `{ data: { logs, count } }`, newest first
 * - `POST /webhook/subscription` → 201 `{ data: COTWebhook, secret }`
 * - `PATCH /webhook/subscription/:id` → `{ data: COTWebhook }`
 * - `POST /webhook/subscription/:id/secret/rotate` — `{ overlapMs?, secret? }` → `{ data: { secret, previousExpiresAt } }`
 * - `GET /webhook/subscription/:id/health` → `{ data: HealthReport }`
 * - `GET /webhook/stats` — `?limit=100` → `{ data: EngineStats }`: the company's backlog and circuits
 * - `POST /webhook/subscription/logs/:logId/resend` → 202 `{ data: { deliveries } }`
 * - `POST /webhook/subscription/:id/recover` — `{ since, limit? }` → 202 `{ data: { deliveries, nextSince? } }`
 * - `POST /webhook/subscription/:id/test` — `{ data? }` → 202 `{ data: { deliveries } }`
 * - `GET /webhook/openapi.json` — the OpenAPI 3.1 document of these routes (no company needed)
 *
 * Errors: `{ error: { code, message, fields? } }` with 400, 401, 404, 409 or 413.
 *
 * @param {Webhooks|Function} hooks - the engine, or `(c) => engine` where it is made per request (Workers)
 * @param {Function} options.company - the caller's company from the request; nothing means 401
 * @param {number} [options.maxBodyBytes=65536] - larger bodies get 413
 * @returns {Hono} a sub-app to mount with `app.route()`
 * @example
 * ```ts
 * app.route('/api/v3', webhookApi(hooks, { company: (c) => companies.get(bearerToken(c)) }))
 * ```
 */
export function webhookApi(hooks: Webhooks | ((c: Context) => Webhooks), options: WebhookApiOptions): Hono<ApiEnv> {
  if (typeof options?.company !== 'function') throw new TypeError('webhookApi: options.company must be a function (c) => companyId')
  const maxBodyBytes = options.maxBodyBytes ?? 65_536
  const onError = options.onError ?? ((error: unknown) => console.error('cotwebhook api:', error))
  const app = new Hono<ApiEnv>()
  const engine = (c: Context): Webhooks => (typeof hooks === 'function' ? hooks(c) : hooks)

  app.onError((error, c) => errorResponse(c, error, onError))

  // Scoped to these routes only: the host's other routes under the same mount point stay its own.
  const companyScope: MiddlewareHandler<ApiEnv> = async function companyScope(c, next) {
    const company = await options.company(c)
    if (!company) throw new UnauthorizedError()
    // Not the caller's fault but the host's resolver: a 500, told to onError with what it returned.
    if (typeof company !== 'string' || !OBJECT_ID.test(company)) throw new CompanyResolverError('webhookApi', company)
    c.set('company', company)
    await next()
  }
  app.use('/webhook/subscription', companyScope)
  app.use('/webhook/subscription/*', companyScope)
  app.use('/webhook/stats', companyScope)

  const limitBody = bodyLimit({
    maxSize: maxBodyBytes,
    onError: () => {
      throw new PayloadTooLargeError(maxBodyBytes)
    },
  })

  // Public: describes the routes, holds nothing of any company.
  const openApi = openApiDocument(options.serverUrl === undefined ? {} : { serverUrl: options.serverUrl })
  app.get('/webhook/openapi.json', (c) => c.json(openApi))

  app.get('/webhook/subscription', async (c) => {
    const query = parse(ListQuerySchema, c.req.query(), 'query')
    const { webhooks, count } = await engine(c).registry.list(c.var.company, {
      ...(query.isActive === 'all' ? {} : { isActive: query.isActive === 'true' }),
      ...(query.limit === undefined ? {} : { limit: query.limit }),
      ...(query.page === undefined ? {} : { page: query.page }),
    })
    return c.json({ data: { webhooks, count } })
  })

  app.get('/webhook/subscription/logs/:id', async (c) => {
    const query = parse(PageQuerySchema, c.req.query(), 'query')
    const { logs, count } = await engine(c).listLogs(c.var.company, c.req.param('id'), query)
    return c.json({ data: { logs, count } })
  })

  app.get('/webhook/subscription/:id', async (c) => {
    return c.json({ data: await engine(c).registry.get(c.var.company, c.req.param('id')) })
  })

  app.get('/webhook/subscription/:id/secret', async (c) => {
    return c.json({ data: { secret: await engine(c).registry.secret(c.var.company, c.req.param('id')) } })
  })

  app.post('/webhook/subscription', limitBody, async (c) => {
    const { webhook, secret } = await engine(c).registry.create(c.var.company, await jsonBody(c))
    return c.json({ data: webhook, secret }, 201)
  })

  app.patch('/webhook/subscription/:id', limitBody, async (c) => {
    const webhook = await engine(c).registry.update(c.var.company, c.req.param('id'), await jsonBody(c))
    return c.json({ data: webhook })
  })

  app.post('/webhook/subscription/:id/secret/rotate', limitBody, async (c) => {
    const rotated = await engine(c).registry.rotateSecret(c.var.company, c.req.param('id'), await jsonBody(c, {}))
    return c.json({ data: { secret: rotated.secret, previousExpiresAt: new Date(rotated.previousExpiresAt).toISOString() } })
  })

  app.get('/webhook/subscription/:id/health', async (c) => {
    return c.json({ data: await engine(c).health(c.var.company, c.req.param('id')) })
  })

  app.get('/webhook/stats', async (c) => {
    const { limit } = parse(StatsQuerySchema, c.req.query(), 'query')
    return c.json({ data: await engine(c).stats(c.var.company, limit === undefined ? {} : { limit }) })
  })

  app.post('/webhook/subscription/logs/:logId/resend', limitBody, async (c) => {
    return c.json({ data: await engine(c).resend(c.var.company, c.req.param('logId')) }, 202)
  })

  app.post('/webhook/subscription/:id/recover', limitBody, async (c) => {
    return c.json({ data: await engine(c).recover(c.var.company, c.req.param('id'), await jsonBody(c)) }, 202)
  })

  app.post('/webhook/subscription/:id/test', limitBody, async (c) => {
    return c.json({ data: await engine(c).sendTest(c.var.company, c.req.param('id'), await jsonBody(c, {})) }, 202)
  })

  return app
}

/** The request's JSON body; an empty body is `fallback` where the route has one. */
async function jsonBody(c: Context, fallback?: object): Promise<never> {
  const text = await c.req.text()
  if (fallback !== undefined && text.trim() === '') return fallback as never
  try {
    return JSON.parse(text) as never
  } catch (cause) {
    throw new InvalidJsonError(`request body is not valid JSON: ${(cause as Error).message}`, { cause })
  }
}
