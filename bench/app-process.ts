// The host app of the emit-overhead bench, in its own process: Hono on @hono/node-server whose
// POST /tasks handler emits one event (EMIT=1), emits with delivery left to other processes
// (EMIT=store: dispatch off), or does not emit (EMIT=0). Prints its port.
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { createWebhooks, memoryStore, objectId } from 'cotwebhook'
import { webhooks, type WebhooksVariables } from 'cotwebhook/hono'
import { nodeSigner, nodeTransport } from 'cotwebhook/node'

const COMPANY = '625be93a286ef83c1c0e845f'
const emit = process.env.EMIT !== '0'
const transport = nodeTransport({ connections: 32, allowPrivateNetworks: true })
const hooks = createWebhooks({ store: memoryStore(), transport, signer: nodeSigner(), allowPrivateNetworks: true, pollIntervalMs: 0, dispatch: process.env.EMIT !== 'store' })
const groups = Array.from({ length: 8 }, () => objectId())
for (const [i, taskGroup] of groups.entries()) {
  await hooks.registry.create(COMPANY, { name: `g${i}`, code: `g${i}`, trigger: 'create-edit-delete-task', url: `${process.env.RECEIVER}/g${i}`, context: { taskGroup } })
}

let n = 0
const app = new Hono<{ Variables: WebhooksVariables }>()
app.use(webhooks(hooks))
app.post('/tasks', async (c) => {
  const task = { ...(await c.req.json<Record<string, unknown>>()), _id: objectId(), taskGroup: groups[n++ % 8]! }
  if (emit) await c.var.webhooks.emit({ company: COMPANY, type: 'COTTask', event: 'create', data: task })
  return c.json(task, 201)
})
serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => process.stdout.write(`${info.port}\n`))
process.on('SIGTERM', () => process.exit(0))
