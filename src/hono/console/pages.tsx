import { raw } from 'hono/html'
import type { Child } from 'hono/jsx'
import type { HealthReport } from '../../endpoint-guard.js'
import type { COTWebhook, COTWebhookLog } from '../../model.js'
import { CONTEXT_FIELDS, TRIGGERS, TRIGGER_NAMES, contextApplies, type ContextField } from '../../triggers.js'
import { DeliveryChart } from './chart.js'
import { CONSOLE_CSS } from './styles.js'

/**
 * The console's pages, server-rendered with hono/jsx. Everything shown is text or an attribute
 * value, which hono/jsx escapes; the only raw HTML is the constant stylesheet.
 */

/** What every page knows. */
export interface PageContext {
  /** Where the console is mounted, without a trailing slash. */
  base: string
  /** The CSRF token for this page's forms. */
  csrf: string
  /** The title in the header. */
  title: string
  /** A link to the OpenAPI document, if the host gave one. */
  openApiUrl?: string
  /** Where the sign-out form posts, if the host gave it. */
  logoutUrl?: string
}

/** The page frame; `bare` (for a visitor not signed in) leaves out the links and the sign-out button. */
export function Layout({ ctx, heading, children, bare = false }: { ctx: Pick<PageContext, 'base' | 'title' | 'openApiUrl' | 'logoutUrl'>; heading: string; children?: Child; bare?: boolean }) {
  return (
    <>
    {raw('<!DOCTYPE html>')}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${heading} · ${ctx.title}`}</title>
        <style>{raw(CONSOLE_CSS)}</style>
      </head>
      <body>
        <header>
          <strong>{ctx.title}</strong>
          {bare ? null : <a href={ctx.base || "/"}>Webhooks</a>}
          {bare ? null : <a href={`${ctx.base}/overview`}>Overview</a>}
          {bare ? null : <a href={`${ctx.base}/new`}>New webhook</a>}
          {!bare && ctx.openApiUrl ? <a href={ctx.openApiUrl}>API (OpenAPI)</a> : null}
          {!bare && ctx.logoutUrl ? (
            <form method="post" action={ctx.logoutUrl} style="margin-left:auto">
              <button type="submit" class="secondary">Sign out</button>
            </form>
          ) : null}
        </header>
        <main>
          <h1>{heading}</h1>
          {children}
        </main>
      </body>
    </html>
    </>
  )
}

/** A hidden CSRF field and a submit button: a one-action form. */
export function ActionForm({ ctx, action, label, fields = {}, kind = 'secondary' }: { ctx: PageContext; action: string; label: string; fields?: Record<string, string>; kind?: string }) {
  return (
    <form class="inline" method="post" action={action}>
      <input type="hidden" name="_csrf" value={ctx.csrf} />
      {Object.entries(fields).map(([name, value]) => (
        <input type="hidden" name={name} value={value} />
      ))}
      <button type="submit" class={kind}>{label}</button>
    </form>
  )
}

export function StateBadge({ state }: { state: string }) {
  const kind = state === 'succeeded' ? 'ok' : state === 'failed' ? 'bad' : 'wait'
  return <span class={`badge ${kind}`}>{state}</span>
}

/** Marks a delivery of a test event (sent from the console or `sendTest`), so it is not taken for a real one. */
export function TestBadge({ log }: { log: COTWebhookLog }) {
  const extra = log.event.extraData as { test?: unknown } | null
  return extra?.test === true ? <> <span class="badge off" title="A test event, not a real change">test</span></> : null
}

/**
 * When a pending delivery goes next. Due already but still pending: it is in line (behind the delivery
 * ahead of it on an ordered webhook, or waiting for a send slot), not late.
 */
export function NextAttempt({ log, now = Date.now() }: { log: COTWebhookLog; now?: number }) {
  if (log.state === 'pending' && log.nextAttemptAt && Date.parse(log.nextAttemptAt) <= now) {
    return <span title={`Due since ${time(log.nextAttemptAt)}; it goes once the delivery ahead of it is done`}>due, in line</span>
  }
  return <>{time(log.nextAttemptAt)}</>
}

export function ActiveBadge({ active }: { active: boolean }) {
  return <span class={`badge ${active ? 'ok' : 'off'}`}>{active ? 'active' : 'inactive'}</span>
}

const time = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—')
const contextText = (webhook: COTWebhook) =>
  CONTEXT_FIELDS.filter((f) => webhook.context[f]).map((f) => `${f}: ${webhook.context[f]}`).join(', ') || 'any'

/** One row of the list: the webhook and what its recent deliveries say. */
export interface ListRow {
  webhook: COTWebhook
  health: HealthReport
  /** Succeeded share of the recent final deliveries, or null without any. */
  successRate: number | null
  lastStatus: number | null
}

export function ListPage(props: { ctx: PageContext; rows: ListRow[]; count: number; page: number; pages: number; trigger: string; active: string; notice?: string }) {
  const { ctx, rows } = props
  const link = (page: number) => `${ctx.base}?${new URLSearchParams({ trigger: props.trigger, active: props.active, page: String(page) })}`
  return (
    <Layout ctx={ctx} heading="Webhooks">
      {props.notice ? <p class="notice" role="status">{props.notice}</p> : null}
      <form class="bar" method="get" action={ctx.base || "/"}>
        <div class="field" style="margin:0">
          <label for="f-trigger">Trigger</label>
          <select id="f-trigger" name="trigger">
            <option value="" selected={props.trigger === ''}>all triggers</option>
            {TRIGGER_NAMES.map((t) => (
              <option value={t} selected={props.trigger === t}>{t}</option>
            ))}
          </select>
        </div>
        <div class="field" style="margin:0">
          <label for="f-active">Active</label>
          <select id="f-active" name="active">
            {['all', 'true', 'false'].map((a) => (
              <option value={a} selected={props.active === a}>{a === 'all' ? 'all' : a === 'true' ? 'active' : 'inactive'}</option>
            ))}
          </select>
        </div>
        <button type="submit" class="secondary">Filter</button>
        <a class="button" href={`${ctx.base}/new`}>New webhook</a>
      </form>
      {rows.length === 0 ? (
        <p class="muted">No webhooks match. <a href={`${ctx.base}/new`}>Create one</a>.</p>
      ) : (
        <table>
          <thead>
            <tr><th>Name</th><th>Code</th><th>Trigger</th><th>Context</th><th>URL</th><th>Active</th><th>Success</th><th>Last status</th><th title="Deliveries that ran out of attempts, in a row (a delivery still retrying is not counted yet)">Deliveries failed in a row</th></tr>
          </thead>
          <tbody>
            {rows.map(({ webhook, health, successRate, lastStatus }) => (
              <tr>
                <td><a href={`${ctx.base}/w/${webhook._id}`}>{webhook.name}</a></td>
                <td><code>{webhook.code}</code></td>
                <td>{webhook.trigger}</td>
                <td>{contextText(webhook)}</td>
                <td class="url"><code>{webhook.url}</code></td>
                <td><ActiveBadge active={webhook.isActive} /></td>
                <td class="num">{successRate === null ? '—' : `${Math.round(successRate * 100)}%`}</td>
                <td class="num">{lastStatus ?? '—'}</td>
                <td class="num">{health.consecutiveFailures}{health.circuit !== 'closed' ? ` (circuit ${health.circuit})` : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="pages">
        <span class="muted">{props.count} webhook{props.count === 1 ? '' : 's'}</span>
        {props.page > 1 ? <a href={link(props.page - 1)}>← newer page</a> : null}
        {props.page < props.pages ? <a href={link(props.page + 1)}>next page →</a> : null}
      </div>
    </Layout>
  )
}

/** Values of the form as typed (strings), to show back after an error. */
export interface FormValues {
  name: string
  code: string
  trigger: string
  url: string
  description: string
  isActive: boolean
  context: Record<ContextField, string>
  __v?: string
  /** At creation only: how requests are signed. */
  signature?: string
}

function Field({ id, label, error, hint, children }: { id: string; label: string; error?: string[] | undefined; hint?: string; children?: Child }) {
  return (
    <div class={error ? 'field invalid' : 'field'}>
      <label for={id}>{label}</label>
      {children}
      {hint ? <div class="hint">{hint}</div> : null}
      {error?.map((message) => <div class="err" id={`${id}-error`} role="alert">{message}</div>)}
    </div>
  )
}

export function WebhookFormPage(props: { ctx: PageContext; mode: 'create' | 'edit'; action: string; values: FormValues; errors: Record<string, string[]>; message?: string | undefined }) {
  const { ctx, values, errors } = props
  const err = (field: string) => errors[field]
  const general = Object.entries(errors).filter(([field]) => !['name', 'code', 'trigger', 'url', 'description', 'isActive', 'signature', ...CONTEXT_FIELDS.map((f) => `context.${f}`), 'context'].includes(field))
  return (
    <Layout ctx={ctx} heading={props.mode === 'create' ? 'New webhook' : `Edit ${values.name}`}>
      {props.message ? <p class="error-box" role="alert">{props.message}</p> : null}
      {general.map(([, messages]) => messages.map((m) => <p class="error-box" role="alert">{m}</p>))}
      <form method="post" action={props.action} class="card">
        <input type="hidden" name="_csrf" value={ctx.csrf} />
        {values.__v !== undefined ? <input type="hidden" name="__v" value={values.__v} /> : null}
        <Field id="name" label="Name" error={err('name')}>
          <input type="text" id="name" name="name" value={values.name} />
        </Field>
        <Field id="code" label="Code" error={err('code')} hint="Lowercase letters, digits and underscores; unique in your company; cannot change once saved.">
          <input type="text" id="code" name="code" value={values.code} readonly={props.mode === 'edit'} />
        </Field>
        <Field id="trigger" label="Trigger" error={err('trigger')}>
          <select id="trigger" name="trigger">
            {TRIGGER_NAMES.map((t) => (
              <option value={t} selected={values.trigger === t}>{`${t} (${TRIGGERS[t].type}: ${TRIGGERS[t].events.join(', ')})`}</option>
            ))}
          </select>
        </Field>
        <Field id="url" label="URL" error={err('url')} hint="Where the COTEvent is POSTed, signed per Standard Webhooks.">
          <input type="text" id="url" name="url" value={values.url} />
        </Field>
        {CONTEXT_FIELDS.map((field) => {
          const users = TRIGGER_NAMES.filter((t) => contextApplies(t, field))
          return (
            <Field id={`context.${field}`} label={`Context: ${field}`} error={err(`context.${field}`) ?? (field === 'taskGroup' ? err('context') : undefined)} hint={`Optional ObjectId; filters ${users.join(', ') || 'no trigger'} only. Empty matches everything.`}>
              <input type="text" id={`context.${field}`} name={`context.${field}`} value={values.context[field]} />
            </Field>
          )
        })}
        <Field id="description" label="Description" error={err('description')}>
          <textarea id="description" name="description" rows={2}>{values.description}</textarea>
        </Field>
        <Field id="isActive" label="Active" error={err('isActive')}>
          <input type="checkbox" id="isActive" name="isActive" value="true" checked={values.isActive} />
        </Field>
        {props.mode === 'create' ? (
          <Field id="signature" label="Signature" error={err('signature')} hint="Ed25519 gives receivers a public key (whpk_) that cannot sign; HMAC gives them the shared secret (whsec_).">
            <select id="signature" name="signature">
              <option value="hmac-sha256" selected={values.signature !== 'ed25519'}>HMAC-SHA256 (v1, shared secret)</option>
              <option value="ed25519" selected={values.signature === 'ed25519'}>Ed25519 (v1a, public key)</option>
            </select>
          </Field>
        ) : null}
        <button type="submit">{props.mode === 'create' ? 'Create webhook' : 'Save changes'}</button>
      </form>
    </Layout>
  )
}

export function WebhookPage(props: {
  ctx: PageContext
  webhook: COTWebhook
  health: HealthReport
  logs: COTWebhookLog[]
  chartLogs: COTWebhookLog[]
  count: number
  page: number
  pages: number
  notice?: string | undefined
  secret?: string | undefined
  /** Asking to confirm a secret rotation. */
  confirmRotate?: boolean
  recoverSince: string
  /** Where a recover that stopped at its limit goes on from. */
  recoverNext?: { since: string; until: string } | undefined
}) {
  const { ctx, webhook, health } = props
  const self = `${ctx.base}/w/${webhook._id}`
  return (
    <Layout ctx={ctx} heading={webhook.name}>
      {props.notice ? <p class="notice" role="status">{props.notice}</p> : null}
      {props.confirmRotate ? (
        <div class="error-box" role="alert" id="confirm-rotate">
          <p style="margin:0 0 8px">
            Rotate the signing secret? Receivers must switch to the new one: the old one keeps signing beside it
            for the overlap (24 h by default), then stops.
          </p>
          <ActionForm ctx={ctx} action={`${self}/rotate`} label="Rotate the secret now" kind="danger" /> <a href={self}>Cancel</a>
        </div>
      ) : null}
      {props.secret ? (
        <div class="secret" role="status">
          {props.secret.startsWith('whpk_') ? 'Public key (Ed25519)' : 'Signing secret'}: <code id="secret">{props.secret}</code>
          <div class="muted">
            Verify the <code>webhook-signature</code> header with it (Standard Webhooks{props.secret.startsWith('whpk_') ? ', v1a; it cannot sign, so it need not be kept secret' : ''}).
          </div>
        </div>
      ) : null}
      <div class="card">
        <dl>
          <dt>Code</dt><dd><code>{webhook.code}</code></dd>
          <dt>Trigger</dt><dd>{webhook.trigger}</dd>
          <dt>Context</dt><dd>{contextText(webhook)}</dd>
          <dt>URL</dt><dd><code>{webhook.url}</code></dd>
          <dt>Description</dt><dd>{webhook.description || '—'}</dd>
          <dt>State</dt><dd><ActiveBadge active={webhook.isActive} /> <span class="muted">version {webhook.__v}</span></dd>
          <dt>Health</dt>
          <dd>
            {health.consecutiveFailures} failed {health.consecutiveFailures === 1 ? 'delivery' : 'deliveries'} in a row · last success {health.lastSuccessAt ? time(new Date(health.lastSuccessAt).toISOString()) : 'none seen'} · circuit {health.circuit}
          </dd>
        </dl>
      </div>
      <div class="bar actions">
        <a class="button secondary" href={`${self}/edit`}>Edit</a>
        <ActionForm ctx={ctx} action={`${self}/active`} label={webhook.isActive ? 'Deactivate' : 'Activate'} fields={{ isActive: String(!webhook.isActive) }} />
        <a class="button secondary" href={`${self}?show=secret`}>Show secret</a>
        <a class="button danger" href={`${self}?confirm=rotate`}>Rotate secret</a>
        {webhook.isActive ? <ActionForm ctx={ctx} action={`${self}/test`} label="Send test event" /> : null}
      </div>
      <h2>Deliveries over time</h2>
      <DeliveryChart logs={props.chartLogs} />
      <h2>Deliveries</h2>
      {webhook.isActive && props.recoverNext ? (
        <form class="bar" method="post" action={`${self}/recover`}>
          <input type="hidden" name="_csrf" value={ctx.csrf} />
          <input type="hidden" name="since" value={props.recoverNext.since} />
          <input type="hidden" name="until" value={props.recoverNext.until} />
          <button type="submit">Recover the next ones</button>
        </form>
      ) : null}
      {webhook.isActive ? (
        <form class="bar" method="post" action={`${self}/recover`}>
          <input type="hidden" name="_csrf" value={ctx.csrf} />
          <div class="field" style="margin:0">
            <label for="since">Recover failed deliveries since (UTC)</label>
            <input type="datetime-local" id="since" name="since" value={props.recoverSince} />
          </div>
          <button type="submit" class="secondary">Recover</button>
        </form>
      ) : null}
      {props.logs.length === 0 ? (
        <p class="muted">No deliveries yet.</p>
      ) : (
        <table id="deliveries">
          <thead>
            <tr><th>Created</th><th>Event</th><th>State</th><th>Status</th><th>Attempts</th><th>Next attempt</th><th>Duration</th><th>Response</th><th></th></tr>
          </thead>
          <tbody>
            {props.logs.map((log) => (
              <tr data-delivery={log._id}>
                <td><a href={`${self}/d/${log._id}`}>{time(log.createdAt)}</a></td>
                <td>{`${log.event.type} ${log.event.event}`}<TestBadge log={log} /></td>
                <td><StateBadge state={log.state} /></td>
                <td class="num">{log.status ?? '—'}</td>
                <td class="num">{log.attempts.length}</td>
                <td><NextAttempt log={log} /></td>
                <td class="num">{log.durationMs === null ? '—' : `${log.durationMs} ms`}</td>
                <td><code>{log.response.length > 80 ? `${log.response.slice(0, 80)}…` : log.response}</code></td>
                <td>{webhook.isActive && log.state !== 'pending' ? <ActionForm ctx={ctx} action={`${self}/d/${log._id}/resend`} label="Resend" /> : null}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="pages">
        <span class="muted">{props.count} deliver{props.count === 1 ? 'y' : 'ies'}</span>
        {props.page > 1 ? <a href={`${self}?page=${props.page - 1}`}>← newer</a> : null}
        {props.page < props.pages ? <a href={`${self}?page=${props.page + 1}`}>older →</a> : null}
      </div>
    </Layout>
  )
}

/**
 * One delivery. `copies` are the webhook's other recent deliveries of the same event: resends of this
 * one (later) and the one this resends (earlier), linked both ways.
 */
export function DeliveryPage({ ctx, webhook, log, notice, copies = [] }: { ctx: PageContext; webhook: COTWebhook; log: COTWebhookLog; notice?: string | undefined; copies?: COTWebhookLog[] }) {
  const self = `${ctx.base}/w/${webhook._id}`
  return (
    <Layout ctx={ctx} heading={`Delivery ${log._id}`}>
      {notice ? <p class="notice" role="status">{notice}</p> : null}
      <p><a href={self}>← {webhook.name}</a></p>
      <div class="card">
        <dl>
          <dt>State</dt><dd><StateBadge state={log.state} /></dd>
          <dt>Status</dt><dd>{log.status ?? '—'}</dd>
          <dt>Created</dt><dd>{time(log.createdAt)}</dd>
          <dt>Next attempt</dt><dd><NextAttempt log={log} /></dd>
          <dt>Event</dt><dd>{`${log.event.type} ${log.event.event}`}<TestBadge log={log} /></dd>
          {copies.some((c) => c.createdAt < log.createdAt) ? (
            <><dt>A resend of</dt><dd id="resend-of">{copies.filter((c) => c.createdAt < log.createdAt).map((c) => <a href={`${self}/d/${c._id}`}>{time(c.createdAt)} </a>)}</dd></>
          ) : null}
          {copies.some((c) => c.createdAt > log.createdAt) ? (
            <><dt>Sent again as</dt><dd id="resent-as">{copies.filter((c) => c.createdAt > log.createdAt).map((c) => <a href={`${self}/d/${c._id}`}>{time(c.createdAt)} </a>)}</dd></>
          ) : null}
        </dl>
      </div>
      <div class="bar actions">{webhook.isActive && log.state !== 'pending' ? <ActionForm ctx={ctx} action={`${self}/d/${log._id}/resend`} label="Resend" kind="" /> : null}</div>
      <h2>Attempts</h2>
      {log.attempts.length === 0 ? (
        <p class="muted">No attempt made.</p>
      ) : (
        <table id="attempts">
          <thead><tr><th>#</th><th>At</th><th>Status</th><th>Duration</th><th>Error</th></tr></thead>
          <tbody>
            {log.attempts.map((a, i) => (
              <tr><td class="num">{i + 1}</td><td>{time(a.at)}</td><td class="num">{a.status}</td><td class="num">{`${a.durationMs} ms`}</td><td>{a.error ?? ''}</td></tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Response (last attempt, truncated)</h2>
      <pre id="response">{log.response || '(empty)'}</pre>
      <h2>Event</h2>
      <pre id="event">{JSON.stringify(log.event, null, 2)}</pre>
    </Layout>
  )
}

export function MessagePage({ ctx, heading, message, link, bare = false }: { ctx: Pick<PageContext, 'base' | 'title' | 'openApiUrl' | 'logoutUrl'>; heading: string; message: string; link?: { href: string; label: string } | undefined; bare?: boolean }) {
  return (
    <Layout ctx={ctx} heading={heading} bare={bare}>
      <p class="error-box" role="alert">{message}</p>
      {link ? <p><a href={link.href}>{link.label}</a></p> : null}
    </Layout>
  )
}
