import { serve } from '@hono/node-server'
import { createReceiverApp } from './app.js'

// `npm run receiver`: prints every webhook that arrives and whether its signature is valid.
// WEBHOOK_SECRETS="code=whsec_…,other_code=whsec_…" (or WEBHOOK_SECRET for every code). PORT 4000.
const port = Number(process.env.PORT ?? 4000)
const secrets = new Map(
  (process.env.WEBHOOK_SECRETS ?? '').split(',').filter(Boolean).map((pair) => pair.split('=', 2) as [string, string]),
)
const app = createReceiverApp({
  secretFor: (code) => secrets.get(code) ?? process.env.WEBHOOK_SECRET,
  onArrival: (a) =>
    console.log(
      a.verified
        ? `${a.path} ${a.webhookId} verified: ${a.event?.type} ${a.event?.event} ${JSON.stringify(a.event?.data)}`
        : `${a.path} ${a.webhookId} REFUSED: ${a.error}`,
    ),
})
serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => console.log(`receiver on http://127.0.0.1:${info.port}/hooks/<code>`))
