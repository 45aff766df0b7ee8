/**
 * `npm run demo`: the whole job end to end on the embedded memory store, with no setup.
 * Starts the example host and a verifying receiver on free ports, registers two webhooks through
 * the REST API, acts on the host, waits for every delivery to be final, and prints the table.
 */
import { serve, type ServerType } from '@hono/node-server'
import type { AddressInfo } from 'node:net'
import { createWebhooks, type COTWebhookLog } from 'cotwebhook'
import { createHostApp } from './node/app.js'
import { createReceiverApp, type Arrival } from './receiver/app.js'

const TOKEN = 'demo-token-acme'
const WORK_ORDERS = '6261612a8f1e99002e5c8cce' // the task group the task webhook filters on
const ERRANDS = '6261612a8f1e99002e5c8ccf'

const listen = (fetch: (r: Request) => Response | Promise<Response>) =>
  new Promise<{ server: ServerType; url: string }>((resolve) => {
    const server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}` }),
    )
  })

async function main(): Promise<number> {
  // Loopback receivers need allowPrivateNetworks; retries 1 s apart so the demo is quick.
  const hooks = createWebhooks({ allowPrivateNetworks: true, retry: { schedule: [1_000, 1_000] } })
  const { app } = createHostApp({ hooks })

  const secrets = new Map<string, string>()
  const arrivals: Arrival[] = []
  let refusedOnce = false
  const receiverApp = createReceiverApp({
    secretFor: (code) => secrets.get(code),
    onArrival: (a) => arrivals.push(a),
    // Answer the first edit with 503 to show a retry.
    statusFor: (a) => (a.event?.event === 'edit' && !refusedOnce ? ((refusedOnce = true), 503) : undefined),
  })
  const host = await listen(app.fetch)
  const receiver = await listen(receiverApp.fetch)
  console.log(`host ${host.url}, receiver ${receiver.url}\n`)

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${host.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text ? JSON.parse(text) : undefined
  }

  const register = async (code: string, trigger: string, context: Record<string, string> = {}) => {
    const created = await call('POST', '/api/v3/webhook/subscription', {
      name: code.replace('_', ' '),
      code,
      trigger,
      url: `${receiver.url}/hooks/${code}`,
      context,
    })
    secrets.set(code, created.secret)
    console.log(`registered ${code} (${trigger}${context.taskGroup ? `, taskGroup ${context.taskGroup}` : ''})`)
    return created.data._id as string
  }
  const taskHook = await register('work_orders', 'create-edit-delete-task', { taskGroup: WORK_ORDERS })
  const logoutHook = await register('sessions', 'logout-user')

  const task = await call('POST', '/tasks', { name: 'Replace pump', taskGroup: WORK_ORDERS })
  await call('POST', '/tasks', { name: 'Buy coffee', taskGroup: ERRANDS }) // other task group: not delivered
  await call('PATCH', `/tasks/${task._id}`, { status: 'done' })
  await call('DELETE', `/tasks/${task._id}`)
  const user = await call('POST', '/users', { name: 'Ada' }) // no user webhook: not delivered
  await call('POST', '/auth/logout', { userId: user._id })
  console.log('host actions: 2 task creates (1 in another task group), 1 edit, 1 delete, 1 user, 1 logout\n')

  await hooks.drain()

  const rows: string[][] = [['webhook', 'trigger', 'event', 'status', 'attempts', 'signature']]
  let ok = true
  for (const id of [taskHook, logoutHook]) {
    const webhook = (await call('GET', `/api/v3/webhook/subscription/${id}`)).data
    const logs: COTWebhookLog[] = (await call('GET', `/api/v3/webhook/subscription/logs/${id}`)).data.logs
    for (const log of logs.reverse()) {
      const seen = arrivals.filter((a) => a.webhookId === log._id)
      const verified = seen.length > 0 && seen.every((a) => a.verified)
      ok &&= verified && log.state === 'succeeded'
      rows.push([webhook.code, webhook.trigger, log.event.event, String(log.status), String(log.attempts.length), verified ? 'verified' : 'NOT VERIFIED'])
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const [i, row] of rows.entries()) {
    console.log(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  '))
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  }
  const deliveries = rows.length - 1
  console.log(`\n${deliveries} deliveries, ${arrivals.length} requests received: ${ok ? 'all delivered and verified' : 'SOMETHING FAILED'}`)

  await hooks.close()
  host.server.close()
  receiver.server.close()
  return ok && deliveries === 4 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error)
    process.exit(1)
  },
)
