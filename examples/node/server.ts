import { serve } from '@hono/node-server'
import { createWebhooks } from 'cotwebhook'
import { createHostApp, parseTokens } from './app.js'

// `npm start`: the example host on PORT (3000). ALLOW_PRIVATE_NETWORKS=1 lets webhooks point at
// 127.0.0.1 and other private addresses (handy with `npm run receiver`; off in production).
const port = Number(process.env.PORT ?? 3000)
const tokens = parseTokens(process.env.COTWEBHOOK_TOKENS)
const hooks = createWebhooks({ allowPrivateNetworks: process.env.ALLOW_PRIVATE_NETWORKS === '1' })
const { app } = createHostApp({ hooks, tokens })

const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => {
  console.log(`host on http://127.0.0.1:${info.port}`)
  console.log(`  delivery console: http://127.0.0.1:${info.port}/console (sign in at /login with a token below)`)
  console.log(`  REST API: http://127.0.0.1:${info.port}/api/v3 (OpenAPI: /api/v3/webhook/openapi.json)`)
  for (const [token, company] of Object.entries(tokens)) console.log(`  Authorization: Bearer ${token}  -> company ${company}`)
})

const stop = async () => {
  server.close()
  await hooks.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
