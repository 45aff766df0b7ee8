import { Hono } from 'hono'
import type { Webhooks } from 'cotwebhook'
import { webhookApi, type WebhookApiOptions } from 'cotwebhook/hono'
import { COMPANY, OTHER_COMPANY } from './fixtures.js'

/** Bearer tokens of the two test companies. */
export const TOKENS: Record<string, string> = { 'token-a': COMPANY, 'token-b': OTHER_COMPANY }

/** The REST API under /api/v3, companies from bearer tokens, unexpected errors pushed to `errors`. */
export function apiApp(hooks: Webhooks, errors: unknown[], options: Partial<WebhookApiOptions> = {}): Hono {
  const app = new Hono()
  app.route(
    '/api/v3',
    webhookApi(hooks, {
      company: (c) => TOKENS[c.req.header('authorization')?.replace(/^Bearer /, '') ?? ''],
      onError: (e) => errors.push(e),
      ...options,
    }),
  )
  return app
}
