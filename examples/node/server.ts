import { serve } from '@hono/node-server'
import { createWebhooks } from 'cotwebhook'
import { openTelemetry } from 'cotwebhook/otel'
import { createHostApp, parseTokens } from './app.js'
import { startTelemetry, traceRequests } from './telemetry.js'

// `npm start`: the example host on PORT (3000). ALLOW_PRIVATE_NETWORKS=1 lets webhooks point at
// 127.0.0.1 and other private addresses (handy with `npm run receiver`; off in production).
// OTEL=1 starts the OpenTelemetry SDK (spans to the console, metrics for Prometheus on :9464);
// METRICS_TOKEN mounts the Prometheus route of cotwebhook itself at /ops/metrics.
const port = Number(process.env.PORT ?? 3000)
const tokens = parseTokens(process.env.COTWEBHOOK_TOKENS)
const otel = process.env.OTEL === '1' ? startTelemetry() : undefined
const hooks = createWebhooks({
  allowPrivateNetworks: process.env.ALLOW_PRIVATE_NETWORKS === '1',
  ...(otel ? { telemetry: openTelemetry() } : {}),
})
const { app } = createHostApp({
  hooks,
  tokens,
  ...(otel ? { before: traceRequests() } : {}),
  ...(process.env.METRICS_TOKEN ? { metricsToken: process.env.METRICS_TOKEN } : {}),
})

const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => {
  console.log(`host on http://127.0.0.1:${info.port}`)
  console.log(`  delivery console: http://127.0.0.1:${info.port}/console (sign in at /login with a token below)`)
  console.log(`  REST API: http://127.0.0.1:${info.port}/api/v3 (OpenAPI: /api/v3/webhook/openapi.json)`)
  for (const [token, company] of Object.entries(tokens)) console.log(`  Authorization: Bearer ${token}  -> company ${company}`)
  if (otel) console.log(`  OpenTelemetry: spans to the console, metrics at ${otel.metricsUrl}`)
  if (process.env.METRICS_TOKEN) console.log(`  Prometheus route: http://127.0.0.1:${info.port}/ops/metrics (Authorization: Bearer $METRICS_TOKEN)`)
})

const stop = async () => {
  server.close()
  await hooks.close()
  await otel?.shutdown()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
