import { Hono } from 'hono'
import type { Webhooks } from 'cotwebhook'
import { workerWebhooks, type D1Like, type QueueLike } from 'cotwebhook/cloudflare'
import { webhookApi } from 'cotwebhook/hono'

/** The bindings of wrangler.toml. */
export interface Env {
  DB: D1Like
  WEBHOOK_QUEUE: QueueLike
  TOKENS: string
  RETRY_SCHEDULE: string
  ALLOW_PRIVATE_NETWORKS: string
}

const webhooks = workerWebhooks<Env>({
  database: (env) => env.DB,
  queue: (env) => env.WEBHOOK_QUEUE,
  engine: (env) => ({
    allowPrivateNetworks: env.ALLOW_PRIVATE_NETWORKS === '1',
    retry: { schedule: env.RETRY_SCHEDULE.split(',').map(Number) },
  }),
})

const companyOf = (env: Env, authorization: string | undefined) => {
  const token = authorization?.replace(/^Bearer\s+/i, '')
  for (const pair of env.TOKENS.split(',')) {
    const [t, company] = pair.split('=')
    if (t && t === token) return company
  }
  return undefined
}

const app = new Hono<{ Bindings: Env; Variables: { webhooks: Webhooks } }>()
app.use(webhooks.middleware())

// Cotalker's webhook REST API; the engine is made per request from the bindings.
app.route('/api/v3', webhookApi((c) => c.var.webhooks, { company: (c) => companyOf(c.env as Env, c.req.header('authorization')) }))

// A host route: create a task and emit its COTEvent. D1 has it before the response is sent.
app.post('/tasks', async (c) => {
  const company = companyOf(c.env, c.req.header('authorization'))
  if (!company) return c.json({ error: { code: 'unauthorized', message: 'unknown bearer token' } }, 401)
  // emit() checks the task at run time (its taskGroup included) and answers 400 naming what is wrong.
  const task = { ...(await c.req.json<{ taskGroup: string }>()), _id: crypto.randomUUID().replaceAll('-', '').slice(0, 24) }
  const result = await c.var.webhooks.emit({ company, type: 'COTTask', event: 'create', data: task })
  return c.json({ task, ...result }, 201)
})

export default {
  fetch: app.fetch,
  queue: webhooks.queue,
  scheduled: webhooks.scheduled,
}
