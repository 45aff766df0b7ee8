/**
 * The runtime matrix's smoke scenario, in Web APIs only so it runs on Node, Bun and workerd alike:
 * create a webhook through the REST API, emit through a host route, receive it, verify the
 * signature, read the COTWebhookLog back through the API.
 */
import { Hono } from 'hono'
import { createWebhooks, verifyWebhook, type Store } from 'cotwebhook'
import { webhookApi, webhooks, type WebhooksVariables } from 'cotwebhook/hono'

const COMPANY = '625be93a286ef83c1c0e845f'
const TOKEN = 'smoke-token'

/** Anything with a fetch handler: a Hono app. */
export interface FetchApp {
  fetch: (request: Request) => Response | Promise<Response>
}

export interface Listener {
  url: string
  close(): Promise<void> | void
}

export interface SmokeResult {
  runtime: string
  created: number
  emitted: number
  received: number
  verified: boolean
  logStatus: number | null
  logState: string
}

export async function smoke(runtime: string, store: Store, listen: (app: FetchApp) => Promise<Listener>): Promise<SmokeResult> {
  const hooks = createWebhooks({ store, allowPrivateNetworks: true, retry: { schedule: [] }, pollIntervalMs: 0 })
  let secret = ''
  const received: boolean[] = []
  const receiver = new Hono()
  receiver.post('/hook', async (c) => {
    try {
      await verifyWebhook(secret, c.req.raw.headers, await c.req.text())
      received.push(true)
      return c.body(null, 204)
    } catch {
      received.push(false)
      return c.body(null, 401)
    }
  })
  const host = new Hono<{ Variables: WebhooksVariables }>()
  host.route('/api/v3', webhookApi(hooks, { company: (c) => (c.req.header('authorization') === `Bearer ${TOKEN}` ? COMPANY : undefined) }))
  host.use('/tasks', webhooks(hooks))
  host.post('/tasks', async (c) => {
    const task = await c.req.json<{ taskGroup: string }>()
    const result = await c.var.webhooks.emit({ company: COMPANY, type: 'COTTask', event: 'create', data: { _id: COMPANY, ...task } })
    return c.json(result, 201)
  })

  const receiverServer = await listen(receiver)
  const hostServer = await listen(host)
  try {
    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
    const create = await fetch(`${hostServer.url}/api/v3/webhook/subscription`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'Smoke', code: 'smoke', trigger: 'create-edit-delete-task', url: `${receiverServer.url}/hook` }),
    })
    const created = (await create.json()) as { data: { _id: string }; secret: string }
    secret = created.secret
    const emit = await fetch(`${hostServer.url}/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ taskGroup: '6261612a8f1e99002e5c8cce' }) })
    const emitted = (await emit.json()) as { deliveries: unknown[] }
    await hooks.drain()
    const logs = (await (await fetch(`${hostServer.url}/api/v3/webhook/subscription/logs/${created.data._id}`, { headers: auth })).json()) as {
      data: { logs: { status: number | null; state: string }[] }
    }
    return {
      runtime,
      created: create.status,
      emitted: emitted.deliveries.length,
      received: received.length,
      verified: received.length > 0 && received.every(Boolean),
      logStatus: logs.data.logs[0]?.status ?? null,
      logState: logs.data.logs[0]?.state ?? 'missing',
    }
  } finally {
    await hooks.close()
    await hostServer.close()
    await receiverServer.close()
  }
}
