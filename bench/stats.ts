/**
 * `stats()` on PostgreSQL with 1,000,000 deliveries stored: 50 webhooks of 5 companies, 990,000 of the
 * deliveries final (the log) and 10,000 open. Timed against the query an operator would otherwise
 * run on the deliveries table (open count and oldest open per webhook, grouped), same data, same run.
 */
import pg from 'pg'
import { createWebhooks, objectId } from 'cotwebhook'
import { postgresStore } from 'cotwebhook/postgres'
import { percentile, round, size, type Result } from './lib.js'

const PG_URL = process.env.COTWEBHOOK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const WEBHOOKS = 50

export async function statsBench(): Promise<Result> {
  const total = size(1_000_000, 20_000)
  const open = Math.max(1, Math.round(total / 100))
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 })
  const schema = `cw_stats_${objectId()}`
  const store = postgresStore(pool, { schema })
  try {
    await store.migrate()
    const hooks = createWebhooks({ store, dispatch: false, allowPrivateNetworks: true })
    const companies = Array.from({ length: 5 }, () => objectId())
    const ids: string[] = []
    for (let i = 0; i < WEBHOOKS; i++) {
      const { webhook } = await hooks.registry.create(companies[i % 5]!, { name: `w${i}`, code: `w${i}`, trigger: 'create-edit-delete-user', url: `http://127.0.0.1:9/w${i}` })
      ids.push(webhook._id)
    }
    // The open ones through the store (they make the queue records), spread over the webhooks.
    for (let n = 0; n < open / WEBHOOKS; n++) {
      for (const company of companies) await hooks.emit({ company, type: 'COTUser', event: 'edit', data: { _id: company, n } })
    }
    await hooks.close()
    // The log: final deliveries written straight into the table, as years of traffic would leave them.
    const t = `"${schema}".cotwebhook_deliveries`
    const [eventId] = (await pool.query(`SELECT event_id FROM ${t} LIMIT 1`)).rows.map((r) => r.event_id as string)
    // Marked as written with their queues, so the trigger for an older release's inserts leaves them alone.
    const client = await pool.connect()
    await client.query(`BEGIN`)
    await client.query(`SELECT set_config('cotwebhook.queued', '1', true)`)
    await client.query(
      `INSERT INTO ${t} (id, company, webhook_id, event_id, state, attempts, response, created_at, updated_at, next_attempt_at)
       SELECT md5(g::text), ($3::text[])[1 + g % 5], ($1::text[])[1 + g % ${WEBHOOKS}], $4, CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
         '[]', 'ok', g, g, NULL FROM generate_series(1, $2::int) g`,
      [ids, total - open, companies, eventId],
    )
    await client.query(`COMMIT`)
    client.release()
    // As autovacuum leaves a table that has settled: statistics and the visibility map up to date.
    await pool.query(`VACUUM ANALYZE ${t}`)
    const time = async (run: () => Promise<unknown>) => {
      const times: number[] = []
      for (let i = 0; i < 30; i++) {
        const start = performance.now()
        await run()
        times.push(performance.now() - start)
      }
      return percentile(times.sort((a, b) => a - b), 50)
    }
    const checked = await store.stats()
    const counted = checked.reduce((n, s) => n + s.open, 0)
    if (counted !== open) throw new Error(`stats() counted ${counted} open deliveries, not ${open}`)
    const ours = await time(() => store.stats())
    const scan = await time(() =>
      pool.query(`SELECT webhook_id, count(*) FILTER (WHERE state = 'pending') AS open, min(created_at) FILTER (WHERE state = 'pending') AS oldest FROM ${t} GROUP BY webhook_id`),
    )
    return {
      name: 'stats-postgres',
      value: round(ours),
      unit: 'ms (p50)',
      baseline: round(scan),
      ratio: round(ours / scan),
      detail: `store.stats() over ${WEBHOOKS} webhooks with ${total.toLocaleString('en')} deliveries stored (${open.toLocaleString('en')} open), p50 of 30 calls, vs the same figures grouped from the deliveries table`,
    }
  } finally {
    await store.close()
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  }
}
