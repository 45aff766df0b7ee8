import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import type { COTEvent } from 'cotwebhook'
import { createHostApp } from '../examples/node/app.js'
import { createReceiverApp } from '../examples/receiver/app.js'
import { closeAll, engine } from './helpers/fixtures.js'
import { startReceiver, type Receiver } from './helpers/receiver.js'

const run = promisify(execFile)
let receiver: Receiver
afterEach(async () => {
  await closeAll()
  await receiver?.close()
})

describe('npm run demo', () => {
  it('prints four verified deliveries and exits 0', async () => {
    const { stdout } = await run('npm', ['run', 'demo', '--silent'], { cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 })
    expect(stdout).toMatch(/work_orders\s+create-edit-delete-task\s+create\s+204\s+1\s+verified/)
    expect(stdout).toMatch(/work_orders\s+create-edit-delete-task\s+edit\s+204\s+2\s+verified/)
    expect(stdout).toMatch(/work_orders\s+create-edit-delete-task\s+delete\s+204\s+1\s+verified/)
    expect(stdout).toMatch(/sessions\s+logout-user\s+logout\s+204\s+1\s+verified/)
    expect(stdout).toContain('4 deliveries, 5 requests received: all delivered and verified')
  }, 60_000)
})

describe('the example host', () => {
  it('emits a COTEvent for every change and for logout, scoped by token', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const { app } = createHostApp({ hooks, tokens: { t: '625be93a286ef83c1c0e845f' } })
    const auth = { authorization: 'Bearer t', 'content-type': 'application/json' }
    const json = async (method: string, path: string, body?: unknown) => {
      const res = await app.request(path, { method, headers: auth, ...(body ? { body: JSON.stringify(body) } : {}) })
      return { status: res.status, body: res.status === 204 ? null : await res.json() }
    }
    for (const trigger of ['create-edit-delete-task', 'create-edit-delete-user', 'create-edit-delete-survey', 'create-edit-delete-property', 'logout-user']) {
      const created = await json('POST', '/api/v3/webhook/subscription', { name: trigger, code: trigger.replaceAll('-', '_'), trigger, url: receiver.url })
      expect(created.status).toBe(201)
    }
    const group = '6261612a8f1e99002e5c8cce'
    const task = (await json('POST', '/tasks', { name: 'a', taskGroup: group })).body
    await json('PATCH', `/tasks/${task._id}`, { name: 'b' })
    await json('DELETE', `/tasks/${task._id}`)
    await json('POST', '/users', { name: 'u' })
    await json('POST', '/surveys', { surveyId: group, group, surveyData: [] })
    await json('POST', '/properties', { name: 'p' })
    await json('POST', '/auth/logout', { userId: group })
    expect((await json('PATCH', `/tasks/${task._id}`, { name: 'c' })).status).toBe(404)
    expect((await app.request('/tasks', { method: 'POST', body: '{}' })).status).toBe(401)
    await hooks.drain()
    const events = receiver.requests.map((r) => JSON.parse(r.body) as COTEvent)
    // Different webhooks are delivered concurrently: compare as a set, and the task webhook's in order.
    expect(events.map((e) => `${e.type}:${e.event}`).sort()).toEqual([
      'Auth:logout', 'COTProperty:create', 'COTSurvey:create', 'COTTask:create', 'COTTask:delete', 'COTTask:edit', 'COTUser:create',
    ])
    expect(events.filter((e) => e.type === 'COTTask').map((e) => e.event)).toEqual(['create', 'edit', 'delete'])
    expect(events.find((e) => e.event === 'edit')!.diff).toEqual({ '/name': { previous: 'a', changedTo: 'b' } })
    expect(events.find((e) => e.type === 'Auth')).toMatchObject({ data: null, extraData: { userId: group, timestamp: expect.any(Number) } })
  })
})

describe('the example receiver', () => {
  it('answers 204 to a valid signature and 401 to a wrong one', async () => {
    const hooks = engine({ retry: { schedule: [] } })
    const secrets: Record<string, string> = {}
    const arrivals: boolean[] = []
    const receiverApp = createReceiverApp({ secretFor: (code) => secrets[code], onArrival: (a) => arrivals.push(a.verified) })
    const { serve } = await import('@hono/node-server')
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: receiverApp.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s))
    })
    const port = (server.address() as { port: number }).port
    const company = '625be93a286ef83c1c0e845f'
    const good = await hooks.registry.create(company, { name: 'g', code: 'good', trigger: 'create-edit-delete-user', url: `http://127.0.0.1:${port}/hooks/good` })
    await hooks.registry.create(company, { name: 'b', code: 'bad', trigger: 'create-edit-delete-user', url: `http://127.0.0.1:${port}/hooks/bad` })
    secrets.good = good.secret
    secrets.bad = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
    await hooks.emit({ company, type: 'COTUser', event: 'create', data: { _id: company } })
    await hooks.drain()
    server.close()
    expect((await hooks.logs(company, good.webhook._id))[0]).toMatchObject({ status: 204, state: 'succeeded' })
    const [bad] = (await hooks.registry.list(company)).webhooks.filter((w) => w.code === 'bad')
    expect((await hooks.logs(company, bad!._id))[0]).toMatchObject({ status: 401, state: 'failed' })
    expect(arrivals.sort()).toEqual([false, true])
  })
})

describe('the example host with OpenTelemetry (OTEL=1) and the Prometheus route (METRICS_TOKEN)', () => {
  it('follows one trace from the request to the host into the receiver, and both metric endpoints answer', async () => {
    const { InMemorySpanExporter } = await import('@opentelemetry/sdk-trace-base')
    const { openTelemetry } = await import('cotwebhook/otel')
    const { startTelemetry, traceRequests } = await import('../examples/node/telemetry.js')
    const { createServer } = await import('node:net')
    // A free port for the Prometheus exporter's own server.
    const prometheusPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number }
        probe.close(() => resolve(port))
      })
    })
    const spans = new InMemorySpanExporter()
    const otel = startTelemetry({ spanExporter: spans, prometheusPort })
    try {
      receiver = await startReceiver()
      const hooks = engine({ telemetry: openTelemetry() })
      const { app } = createHostApp({ hooks, tokens: { t: '625be93a286ef83c1c0e845f' }, before: traceRequests(), metricsToken: 'ops-token' })
      const auth = { authorization: 'Bearer t', 'content-type': 'application/json' }
      await app.request('/api/v3/webhook/subscription', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: receiver.url }) })
      // The caller's own trace, continued by the host.
      const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736'
      const created = await app.request('/tasks', { method: 'POST', headers: { ...auth, traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` }, body: JSON.stringify({ name: 'Fix the pump', taskGroup: '6261612a8f1e99002e5c8cce' }) })
      expect(created.status).toBe(201)
      await hooks.drain()
      expect(receiver.requests).toHaveLength(1)
      expect(receiver.requests[0]!.headers.traceparent?.split('-')[1]).toBe(callerTrace)
      await otel.tracerProvider.forceFlush()
      const names = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === callerTrace).map((s) => s.name)
      expect(names).toEqual(expect.arrayContaining(['POST /tasks', 'cotwebhook emit', 'POST']))
      // The SDK's Prometheus exporter, and cotwebhook's own route (operator only).
      const exported = await (await fetch(otel.metricsUrl)).text()
      expect(exported).toMatch(/cotwebhook_attempts_total\{[^}]*cotwebhook_outcome="success"[^}]*\} 1/)
      expect(exported).toMatch(/http_client_request_duration_count\{[^}]*http_response_status_code="200"[^}]*\} 1/)
      expect((await app.request('/ops/metrics')).status).toBe(401)
      const route = await app.request('/ops/metrics', { headers: { authorization: 'Bearer ops-token' } })
      expect(await route.text()).toContain('cotwebhook_attempts_total{outcome="success"} 1')
    } finally {
      await otel.shutdown()
    }
  })
})
