import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { Webhooks } from '../../engine.js'
import { CompanyResolverError, ConflictError, NotFoundError, UnsafeUrlError, ValidationError, WebhookError } from '../../errors.js'
import { OBJECT_ID, type COTWebhook, type COTWebhookLog } from '../../model.js'
import { toLog } from '../../log.js'
import { CONTEXT_FIELDS, TRIGGER_NAMES, type ContextField, type Trigger } from '../../triggers.js'
import { createCsrf } from './csrf.js'
import { DeliveryPage, ListPage, MessagePage, WebhookFormPage, WebhookPage, type FormValues, type ListRow, type PageContext } from './pages.js'
import { OverviewPage } from './overview.js'

/** Options of {@link webhookConsole}. */
export interface ConsoleOptions {
  /**
   * The caller's company (an ObjectId) from the request — a session cookie, say. Nothing answers a
   * 401 page. Every page is scoped to it: other companies' ids are 404, exactly as in the REST API.
   */
  company: (c: Context) => string | undefined | null | Promise<string | undefined | null>
  /** Where the console is mounted (`app.route(basePath, webhookConsole(...))`), for its links. Default `/console`. */
  basePath?: string
  /** Key of the forms' CSRF tokens; give one to share tokens across instances and restarts. Default: random per process. */
  csrfSecret?: string
  /** A link to the OpenAPI document (e.g. `/api/v3/webhook/openapi.json`), shown in the header. */
  openApiUrl?: string
  /** Where a visitor without a company can sign in, linked from the 401 page. */
  loginUrl?: string
  /** The title in every page's header. Default `Webhooks`. */
  title?: string
  /**
   * The signed-in session (a session id, a user id), which form tokens are bound to as well as the
   * company, so one user's token is no good to another or after sign-out. Default: the company alone.
   */
  session?: (c: Context) => string | undefined | null | Promise<string | undefined | null>
  /** Where a sign-out form posts, shown in the header when given. */
  logoutUrl?: string
  /** Largest accepted form body in bytes (413 beyond). Default 65 536. */
  maxBodyBytes?: number
  /** Where unexpected errors go before the 500 page. Default `console.error`. */
  onError?: (error: unknown) => void
}

type ConsoleEnv = { Variables: { company: string; page: PageContext } }

const PAGE_SIZE = 20
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/
const NOTICES: Record<string, string> = {
  created: 'Webhook created. Its signing secret is below; you can show it again at any time.',
  updated: 'Changes saved.',
  activated: 'Webhook activated.',
  deactivated: 'Webhook deactivated: nothing is sent to it until it is activated again.',
  tested: 'Test event queued (extraData.test is true).',
  resent: 'Delivery queued again.',
  rotated: 'Secret rotated. The old one keeps signing beside it for 24 hours, so receivers can switch.',
  recovered: 'Failed deliveries queued again.',
}

// Defence in depth: even if something escaped the escaping, no script may run and no form may post elsewhere.
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
}

/**
 * The delivery console: server-rendered pages (hono/jsx, no script, one inline stylesheet) to list,
 * create, edit, activate and test webhooks, show and rotate their secrets, read their deliveries
 * with a chart, and resend or recover. Every flow is a plain form with a CSRF token; every page is
 * scoped to the caller's company; everything shown is escaped.
 *
 * @param {Webhooks|Function} hooks - the engine, or `(c) => engine` where it is made per request
 * @param {Function} options.company - the caller's company; nothing means a 401 page
 * @param {string} [options.basePath='/console'] - where it is mounted
 * @returns {Hono} a sub-app to mount with `app.route(basePath, ...)`
 * @example
 * ```ts
 * app.route('/console', webhookConsole(hooks, { company: (c) => sessions.get(getCookie(c, 'sid')), openApiUrl: '/api/v3/webhook/openapi.json' }))
 * ```
 */
export function webhookConsole(hooks: Webhooks | ((c: Context) => Webhooks), options: ConsoleOptions): Hono<ConsoleEnv> {
  if (typeof options?.company !== 'function') throw new TypeError('webhookConsole: options.company must be a function (c) => companyId')
  const base = (options.basePath ?? '/console').replace(/\/+$/, '')
  const title = options.title ?? 'Webhooks'
  const onError = options.onError ?? ((error: unknown) => console.error('cotwebhook console:', error))
  const csrf = createCsrf(options.csrfSecret === undefined ? {} : { secret: options.csrfSecret })
  const shell = {
    base,
    title,
    ...(options.openApiUrl ? { openApiUrl: options.openApiUrl } : {}),
    ...(options.logoutUrl ? { logoutUrl: options.logoutUrl } : {}),
  }
  const maxBodyBytes = options.maxBodyBytes ?? 65_536
  // The console's own pages, for the trailing-slash redirect: it never echoes a path it does not know.
  const known = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:/new|/w/[0-9a-f]{24}(?:/edit|/d/[0-9a-f]{24})?)?$`)
  const engine = (c: Context): Webhooks => (typeof hooks === 'function' ? hooks(c) : hooks)
  const app = new Hono<ConsoleEnv>()

  app.use('*', async function headers(c, next) {
    await next()
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(name, value)
  })

  app.onError((error, c) => {
    if (error instanceof WebhookError && error.status < 500) {
      const heading = error instanceof NotFoundError ? 'Not found' : 'Not possible'
      return c.html(<MessagePage ctx={shell} heading={heading} message={error.message} link={{ href: base || '/', label: 'Back to the webhooks' }} />, error.status as 400)
    }
    onError(error)
    return c.html(<MessagePage ctx={shell} heading="Something went wrong" message="The console could not complete this request. It has been reported." />, 500)
  })

  app.use(
    '*',
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) => c.html(<MessagePage ctx={shell} heading="Too large" message={`A form may send at most ${maxBodyBytes} bytes.`} />, 413),
    }),
  )

  const forbidden = (c: Context) =>
    c.html(<MessagePage ctx={shell} heading="Form expired" message="This form is out of date or did not come from the console. Go back, reload the page and try again." />, 403)

  const scope: MiddlewareHandler<ConsoleEnv> = async function consoleScope(c, next) {
    const company = await options.company(c)
    // Not the visitor's fault but the host's resolver: told to onError, a 500 page.
    if (company && (typeof company !== 'string' || !OBJECT_ID.test(company))) throw new CompanyResolverError('webhookConsole', company)
    if (!company) {
      const link = options.loginUrl ? { href: options.loginUrl, label: 'Sign in' } : undefined
      return c.html(<MessagePage ctx={shell} heading="Sign in needed" message="These pages need a signed-in company." link={link} bare />, 401)
    }
    const binding = `${company}|${(options.session ? await options.session(c) : '') ?? ''}`
    c.set('company', company)
    c.set('page', { ...shell, csrf: await csrf.issue(binding) })
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      // A second lock beside the token: browsers say where a form came from.
      const site = c.req.header('sec-fetch-site')
      if (site && site !== 'same-origin' && site !== 'none') return forbidden(c)
      const origin = c.req.header('origin')
      if (origin && origin !== 'null' && origin !== new URL(c.req.url).origin) return forbidden(c)
      let body: Record<string, unknown>
      try {
        body = await c.req.parseBody()
      } catch {
        return c.html(<MessagePage ctx={shell} heading="Unreadable form" message="The form could not be read. Send it from the console's own pages." />, 400)
      }
      if (!(await csrf.check(binding, body._csrf))) return forbidden(c)
    }
    await next()
  }
  app.use('*', scope)

  const form = async (c: Context<ConsoleEnv>) => (await c.req.parseBody()) as Record<string, string | File>
  const text = (value: unknown) => (typeof value === 'string' ? value : '')
  const notice = (c: Context) => {
    const done = c.req.query('done') ?? ''
    const count = Number(c.req.query('n'))
    if (done === 'recovered' && Number.isSafeInteger(count) && count >= 0 && count <= 1_000) {
      return `${count} failed deliver${count === 1 ? 'y' : 'ies'} queued again.${c.req.query('next') ? ' More remain: recover again to queue the next ones.' : ''}`
    }
    return NOTICES[done]
  }

  app.get('/', async (c) => {
    const hooksOf = engine(c)
    const trigger = TRIGGER_NAMES.includes(c.req.query('trigger') as Trigger) ? (c.req.query('trigger') as Trigger) : ''
    const active = ['true', 'false'].includes(c.req.query('active') ?? '') ? c.req.query('active')! : 'all'
    const all: COTWebhook[] = []
    for (let page = 1; ; page++) {
      const { webhooks, count } = await hooksOf.registry.list(c.var.company, { limit: 100, page, ...(active === 'all' ? {} : { isActive: active === 'true' }) })
      all.push(...webhooks)
      if (all.length >= count || webhooks.length === 0) break
    }
    const matching = trigger ? all.filter((w) => w.trigger === trigger) : all
    const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE))
    const page = Math.min(pages, positive(c.req.query('page')))
    const rows: ListRow[] = await Promise.all(
      matching.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map(async (webhook) => {
        const [health, recent] = await Promise.all([hooksOf.health(c.var.company, webhook._id), hooksOf.logs(c.var.company, webhook._id, { limit: 20 })])
        const final = recent.filter((log) => log.state !== 'pending')
        return {
          webhook,
          health,
          successRate: final.length ? final.filter((log) => log.state === 'succeeded').length / final.length : null,
          lastStatus: recent.find((log) => log.status !== null)?.status ?? null,
        }
      }),
    )
    return c.html(<ListPage ctx={c.var.page} rows={rows} count={matching.length} page={page} pages={pages} trigger={trigger} active={active} notice={notice(c)} />)
  })

  app.get('/overview', async (c) => {
    const hooksOf = engine(c)
    const stats = await hooksOf.stats(c.var.company, { limit: 20 })
    const names = new Map<string, COTWebhook>()
    await Promise.all(stats.webhooks.map((w) => hooksOf.registry.get(c.var.company, w.webhookId).then((webhook) => void names.set(w.webhookId, webhook), () => {})))
    return c.html(<OverviewPage ctx={c.var.page} stats={stats} names={names} />)
  })

  app.get('/new', (c) => c.html(<WebhookFormPage ctx={c.var.page} mode="create" action={`${base}/new`} values={emptyValues()} errors={{}} />))

  app.post('/new', async (c) => {
    const values = valuesOf(await form(c), text)
    try {
      const { webhook } = await engine(c).registry.create(c.var.company, toInput(values) as never)
      return c.redirect(`${base}/w/${webhook._id}?done=created&show=secret`, 303)
    } catch (error) {
      const answer = formError(error)
      return c.html(<WebhookFormPage ctx={c.var.page} mode="create" action={`${base}/new`} values={values} errors={answer.errors} message={answer.message} />, answer.status)
    }
  })

  app.get('/w/:id', async (c) => {
    const hooksOf = engine(c)
    const id = c.req.param('id')
    const webhook = await hooksOf.registry.get(c.var.company, id)
    let page = positive(c.req.query('page'))
    let [health, { logs, count }, chart, secret] = await Promise.all([
      hooksOf.health(c.var.company, id),
      hooksOf.listLogs(c.var.company, id, { limit: PAGE_SIZE, page }),
      hooksOf.logs(c.var.company, id, { limit: 100 }),
      c.req.query('show') === 'secret' ? hooksOf.registry.secret(c.var.company, id) : Promise.resolve(undefined),
    ])
    if (!logs.length && count > 0) {
      // Past the last page: show the last one.
      page = Math.ceil(count / PAGE_SIZE)
      ;({ logs } = await hooksOf.listLogs(c.var.company, id, { limit: PAGE_SIZE, page }))
    }
    const next = c.req.query('next')
    const until = c.req.query('until')
    const recoverFrom = next && until && ISO.test(next) && ISO.test(until) ? { since: next, until } : undefined
    const since = new Date(Date.now() - 86_400_000).toISOString().slice(0, 16)
    return c.html(
      <WebhookPage ctx={c.var.page} webhook={webhook} health={health} logs={logs} chartLogs={chart} count={count} page={page} pages={Math.max(1, Math.ceil(count / PAGE_SIZE))} notice={notice(c)} secret={secret} confirmRotate={c.req.query('confirm') === 'rotate'} recoverSince={since} recoverNext={recoverFrom} />,
    )
  })

  app.get('/w/:id/edit', async (c) => {
    const webhook = await engine(c).registry.get(c.var.company, c.req.param('id'))
    return c.html(<WebhookFormPage ctx={c.var.page} mode="edit" action={`${base}/w/${webhook._id}/edit`} values={valuesOfWebhook(webhook)} errors={{}} />)
  })

  app.post('/w/:id/edit', async (c) => {
    const id = c.req.param('id')
    const current = await engine(c).registry.get(c.var.company, id)
    const values = { ...valuesOf(await form(c), text), code: current.code }
    try {
      const { code: _code, ...input } = toInput(values)
      // A version that is not a number is the registry's to refuse, by name.
      const version = /^\d+$/.test(values.__v ?? '') ? Number(values.__v) : values.__v
      await engine(c).registry.update(c.var.company, id, { ...input, ...(values.__v !== undefined && values.__v !== '' ? { __v: version } : {}) } as never)
      return c.redirect(`${base}/w/${id}?done=updated`, 303)
    } catch (error) {
      const answer = formError(error)
      // After a conflict the form carries the version now stored, so saving again (over it) is a choice.
      if (error instanceof ConflictError && error.field === '__v') values.__v = String((await engine(c).registry.get(c.var.company, id)).__v)
      return c.html(<WebhookFormPage ctx={c.var.page} mode="edit" action={`${base}/w/${id}/edit`} values={values} errors={answer.errors} message={answer.message} />, answer.status)
    }
  })

  app.post('/w/:id/active', async (c) => {
    const id = c.req.param('id')
    const isActive = text((await form(c)).isActive) === 'true'
    await engine(c).registry.update(c.var.company, id, { isActive })
    return c.redirect(`${base}/w/${id}?done=${isActive ? 'activated' : 'deactivated'}`, 303)
  })

  app.post('/w/:id/rotate', async (c) => {
    const id = c.req.param('id')
    await engine(c).registry.rotateSecret(c.var.company, id)
    return c.redirect(`${base}/w/${id}?done=rotated&show=secret`, 303)
  })

  app.post('/w/:id/test', async (c) => {
    const id = c.req.param('id')
    await engine(c).sendTest(c.var.company, id)
    return c.redirect(`${base}/w/${id}?done=tested`, 303)
  })

  app.post('/w/:id/recover', async (c) => {
    const id = c.req.param('id')
    const body = await form(c)
    const since = text(body.since)
    const until = text(body.until)
    // datetime-local has no zone: the form says UTC, so read it as UTC. A continuation carries full times.
    const at = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(since) ? `${since}${since.length === 16 ? ':00' : ''}.000Z` : since
    if (!ISO.test(at) || (until && !ISO.test(until))) throw ValidationError.field('since', 'since: pick a date and time')
    const result = await engine(c).recover(c.var.company, id, { since: at, ...(until ? { until } : {}) })
    const more = result.nextSince ? `&next=${encodeURIComponent(result.nextSince)}&until=${encodeURIComponent(result.until)}` : ''
    return c.redirect(`${base}/w/${id}?done=recovered&n=${result.deliveries.length}${more}`, 303)
  })

  app.get('/w/:id/d/:deliveryId', async (c) => {
    const { webhook, log } = await delivery(c)
    // A resend carries the same event (its body, to the millisecond of createdAt): found among the
    // webhook's recent deliveries, so the original and its resends link to each other.
    const body = JSON.stringify(log.event)
    const { logs: recent } = await engine(c).listLogs(c.var.company, webhook._id, { limit: 100, page: 1 })
    const copies = recent.filter((other) => other._id !== log._id && JSON.stringify(other.event) === body)
    return c.html(<DeliveryPage ctx={c.var.page} webhook={webhook} log={log} notice={notice(c)} copies={copies} />)
  })

  app.post('/w/:id/d/:deliveryId/resend', async (c) => {
    const { webhook, log } = await delivery(c)
    const { deliveries } = await engine(c).resend(c.var.company, log._id)
    return c.redirect(`${base}/w/${webhook._id}/d/${deliveries[0]!.id}?done=resent`, 303)
  })

  // Anything else under the console: a trailing slash goes to the page without it, the rest is a 404 page.
  app.get('/*', (c) => {
    const stripped = c.req.path.replace(/\/+$/, '') || '/'
    if (c.req.path.endsWith('/') && known.test(stripped === '/' ? '' : stripped)) return c.redirect(stripped, 301)
    return c.html(<MessagePage ctx={shell} heading="Not found" message="There is no such page in the console." link={{ href: base || '/', label: 'Back to the webhooks' }} />, 404)
  })

  /** The delivery of the URL, only if it belongs to the URL's webhook in the caller's company. */
  const delivery = async (c: Context<ConsoleEnv>): Promise<{ webhook: COTWebhook; log: COTWebhookLog }> => {
    const hooksOf = engine(c)
    const webhook = await hooksOf.registry.get(c.var.company, c.req.param('id')!)
    const deliveryId = c.req.param('deliveryId')!
    const found = OBJECT_ID.test(deliveryId) ? await hooksOf.store.getDelivery(c.var.company, deliveryId) : undefined
    if (!found || found.webhookId !== webhook._id) throw new NotFoundError('delivery', deliveryId)
    return { webhook, log: toLog(found) }
  }

  return app
}

function positive(value: string | undefined): number {
  const n = Number(value)
  return Number.isInteger(n) && n >= 1 && n < 1e9 ? n : 1
}

function emptyValues(): FormValues {
  return { name: '', code: '', trigger: 'create-edit-delete-task', url: '', description: '', isActive: true, context: { survey: '', group: '', taskGroup: '' } }
}

function valuesOfWebhook(webhook: COTWebhook): FormValues {
  return {
    name: webhook.name,
    code: webhook.code,
    trigger: webhook.trigger,
    url: webhook.url,
    description: webhook.description,
    isActive: webhook.isActive,
    context: { ...webhook.context },
    __v: String(webhook.__v),
  }
}

function valuesOf(body: Record<string, string | File>, text: (value: unknown) => string): FormValues {
  const context = Object.fromEntries(CONTEXT_FIELDS.map((field) => [field, text(body[`context.${field}`]).trim()])) as Record<ContextField, string>
  const values: FormValues = {
    name: text(body.name),
    code: text(body.code).trim(),
    trigger: text(body.trigger),
    url: text(body.url).trim(),
    description: text(body.description),
    isActive: text(body.isActive) === 'true',
    context,
  }
  if (typeof body.__v === 'string') values.__v = body.__v
  if (typeof body.signature === 'string') values.signature = body.signature
  return values
}

/** The form as the registry's input: the same validation as the API then applies. */
function toInput(values: FormValues): Record<string, unknown> {
  return {
    name: values.name,
    code: values.code,
    trigger: values.trigger,
    url: values.url,
    description: values.description,
    isActive: values.isActive,
    context: values.context,
    ...(values.signature === undefined ? {} : { signature: values.signature }),
  }
}

/** An error of a form submission, as messages beside the fields. */
function formError(error: unknown): { status: 400 | 409; errors: Record<string, string[]>; message?: string } {
  if (error instanceof ValidationError) return { status: 400, errors: error.fields, message: 'Please correct the fields marked below.' }
  if (error instanceof UnsafeUrlError) return { status: 400, errors: { url: [error.message] }, message: 'Please correct the fields marked below.' }
  if (error instanceof ConflictError) {
    if (error.field === '__v') return { status: 409, errors: {}, message: `${error.message}. Someone else saved this webhook meanwhile: check the fields and save again to replace their changes.` }
    return { status: 409, errors: { [error.field]: [error.message] } }
  }
  throw error
}
