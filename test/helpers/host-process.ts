/**
 * A host in a child process, for crash and multi-instance tests. Configured by environment:
 * STORE=sqlite|postgres, DB=<file path | schema>, MODE=emit|work, RECEIVER=<url>, EVENTS, WEBHOOKS,
 * INSTANCE=<name sent as x-instance>. `emit` emits EVENTS task events spread over the WEBHOOKS task
 * groups (printing "accepted <deliveryId>" once each emit resolved) and then delivers; `work` only
 * delivers. Both print "drained" when nothing is open, then exit.
 */
import pg from 'pg'
import { createWebhooks, type Store } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { sqliteStore } from 'cotwebhook/sqlite'
import { PG_URL } from './postgres.js'

const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`host-process: ${name} is not set`)
  return value
}

const pool = env('STORE') === 'postgres' ? new pg.Pool({ connectionString: PG_URL, max: 8 }) : undefined
const store: Store & { migrate(): Promise<void> } = pool ? postgresStore(pool, { schema: env('DB') }) : sqliteStore(env('DB'))
await store.migrate()

const instance = process.env.INSTANCE ?? 'host'
const hooks = createWebhooks({
  store,
  allowPrivateNetworks: true,
  concurrency: 16,
  timeoutMs: 2_000,
  leaseMs: 3_000,
  pollIntervalMs: 200,
  retry: { schedule: [200, 200] },
  dispatch: true,
  fetch: (url, init) => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), 'x-instance': instance } }),
})

const out = (line: string) => process.stdout.write(`${line}\n`)

if (env('MODE') === 'emit') {
  const company = env('COMPANY')
  const groups = env('GROUPS').split(',')
  const events = Number(env('EVENTS'))
  for (let n = 0; n < events; n++) {
    const taskGroup = groups[n % groups.length]!
    const { deliveries } = await hooks.emit({ company, type: 'COTTask', event: 'create', data: { _id: company, n, taskGroup } })
    for (const d of deliveries) out(`accepted ${d.id}`)
  }
  out('emitted')
}

await hooks.drain()
out('drained')
await hooks.close()
await pool?.end()
process.exit(0)
