import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { html, raw } from 'hono/html'
import { createWebhooks, type EmitInput, type Webhooks } from 'cotwebhook'
import { consoleStylesheet, errorResponse, webhookApi, webhookConsole, webhookMetrics, webhooks, type WebhooksVariables } from 'cotwebhook/hono'
import { Domain, EVENT_TYPE, type Kind } from './domain.js'

/** Bearer tokens of the demo companies (override with COTWEBHOOK_TOKENS="token=companyId,…"). */
export const DEMO_TOKENS: Record<string, string> = {
  'demo-token-acme': '625be93a286ef83c1c0e845f',
  'demo-token-globex': '625bc5429a54e8868bd89be2',
}

/** Reads `token=companyId,token2=companyId2`. */
export function parseTokens(text: string | undefined): Record<string, string> {
  if (!text) return DEMO_TOKENS
  return Object.fromEntries(text.split(',').map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]))
}

export interface HostOptions {
  hooks?: Webhooks
  tokens?: Record<string, string>
  /** Runs before every route (the telemetry example's request spans). */
  before?: MiddlewareHandler
  /** The operator's token for the Prometheus route at /ops/metrics; without it the route is not mounted. */
  metricsToken?: string
}

const KIND = ':kind{tasks|users|surveys|properties}'

type Env = { Variables: WebhooksVariables & { company: string } }

/**
 * A small host app: it owns tasks, users, survey executions and properties, emits a COTEvent on
 * every change and on logout, and serves the webhook REST API under /api/v3.
 */
export function createHostApp(options: HostOptions = {}) {
  const hooks = options.hooks ?? createWebhooks()
  const tokens = options.tokens ?? DEMO_TOKENS
  const domain = new Domain()
  const companyOf = (c: Context) => tokens[c.req.header('authorization')?.replace(/^Bearer\s+/i, '') ?? '']

  const app = new Hono<Env>()
  app.onError((error, c) => errorResponse(c, error, console.error))
  if (options.before) app.use('*', options.before)
  if (options.metricsToken) app.route('/ops', webhookMetrics(hooks, { token: options.metricsToken }))
  app.get('/', (c) => c.html(html`<!doctype html><title>cotwebhook example host</title>
<p>cotwebhook example host. <a href="/console">Open the delivery console</a> · <a href="/api/v3/webhook/openapi.json">REST API (OpenAPI)</a></p>`))
  app.route('/api/v3', webhookApi(hooks, { company: companyOf }))

  // The delivery console, for browsers. A sign-in page trades a token for an opaque session id in
  // an HttpOnly cookie (a real host has its own sessions; over HTTPS, mark the cookie Secure too).
  const sessions = new Map<string, string>()
  const sameOrigin = (c: Context) => {
    const site = c.req.header('sec-fetch-site')
    const origin = c.req.header('origin')
    return (!site || site === 'same-origin' || site === 'none') && (!origin || origin === new URL(c.req.url).origin)
  }
  app.get('/login', (c) =>
    c.html(html`<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Example host</title><style>${raw(consoleStylesheet)}</style>
<header><strong>Example host · webhooks</strong></header>
<main><h1>Sign in</h1>
<form method="post" action="/login" class="card">
<div class="field"><label for="token">Token</label><input type="text" id="token" name="token" placeholder="demo-token-acme">
<div class="hint">Demo tokens: ${Object.keys(tokens).join(', ')}</div></div>
<button type="submit">Sign in</button></form></main></html>`),
  )
  app.post('/login', async (c) => {
    // A sign-in posted from another site would sign the visitor into someone else's company.
    if (!sameOrigin(c)) return c.text('cross-site sign-in refused', 403)
    const token = String((await c.req.parseBody()).token ?? '')
    if (!Object.hasOwn(tokens, token)) return c.redirect('/login', 303)
    const sid = crypto.randomUUID()
    sessions.set(sid, tokens[token]!)
    setCookie(c, 'console_session', sid, { httpOnly: true, sameSite: 'Lax', path: '/' })
    return c.redirect('/console', 303)
  })
  app.post('/logout', (c) => {
    if (!sameOrigin(c)) return c.text('cross-site sign-out refused', 403)
    sessions.delete(getCookie(c, 'console_session') ?? '')
    deleteCookie(c, 'console_session', { path: '/' })
    return c.redirect('/login', 303)
  })
  app.route(
    '/console',
    webhookConsole(hooks, {
      company: (c) => sessions.get(getCookie(c, 'console_session') ?? ''),
      session: (c) => getCookie(c, 'console_session'),
      basePath: '/console',
      openApiUrl: '/api/v3/webhook/openapi.json',
      loginUrl: '/login',
      logoutUrl: '/logout',
      title: 'Example host · webhooks',
    }),
  )

  // The host's own routes: the caller's company from its token, and the engine on c.var.webhooks.
  const hostRoutes = [`/${KIND}/*`, '/auth/*']
  for (const path of hostRoutes) {
    app.use(path, async function auth(c, next) {
      const company = companyOf(c)
      if (!company) return c.json({ error: { code: 'unauthorized', message: 'unknown bearer token' } }, 401)
      c.set('company', company)
      await next()
    })
    app.use(path, webhooks(hooks))
  }

  app.post(`/${KIND}`, async (c) => {
    const kind = c.req.param('kind') as Kind
    const entity = domain.create(c.var.company, kind, await c.req.json())
    await c.var.webhooks.emit(eventOf({ company: c.var.company, type: EVENT_TYPE[kind], event: 'create', data: entity }))
    return c.json(entity, 201)
  })

  app.patch(`/${KIND}/:id`, async (c) => {
    const kind = c.req.param('kind') as Kind
    const edited = domain.edit(c.var.company, kind, c.req.param('id'), await c.req.json())
    if (!edited) return c.json({ error: { code: 'not_found', message: `${kind} ${c.req.param('id')} not found` } }, 404)
    await c.var.webhooks.emit(eventOf({ company: c.var.company, type: EVENT_TYPE[kind], event: 'edit', data: edited.entity, diff: edited.diff }))
    return c.json(edited.entity)
  })

  app.delete(`/${KIND}/:id`, async (c) => {
    const kind = c.req.param('kind') as Kind
    const entity = domain.delete(c.var.company, kind, c.req.param('id'))
    if (!entity) return c.json({ error: { code: 'not_found', message: `${kind} ${c.req.param('id')} not found` } }, 404)
    await c.var.webhooks.emit(eventOf({ company: c.var.company, type: EVENT_TYPE[kind], event: 'delete', data: entity }))
    return c.body(null, 204)
  })

  app.post('/auth/logout', async (c) => {
    const { userId } = await c.req.json<{ userId: string }>()
    await c.var.webhooks.emit({
      company: c.var.company,
      type: 'Auth',
      event: 'logout',
      data: null,
      extraData: { userId, timestamp: Date.now() },
    })
    return c.body(null, 204)
  })

  return { app, hooks, domain }
}

/**
 * One route serves every kind, so the kind is known only at run time: the event is typed as whichever
 * kind it is. The fields each kind needs (a task's taskGroup, a survey's surveyId and group) come from
 * the request, and emit() checks them at run time, answering 400 with the field when one is missing.
 */
function eventOf(event: { company: string; type: (typeof EVENT_TYPE)[Kind]; event: 'create' | 'edit' | 'delete'; data: Record<string, unknown>; diff?: EmitInput['diff'] }): EmitInput {
  return event as EmitInput
}
