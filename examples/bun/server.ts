// `npm run start:bun`: the example host on Bun: Hono on Bun.serve, webhooks and deliveries in SQLite
// through bun:sqlite (./webhooks.db, or DB_PATH). Same routes and tokens as examples/node.
import { createWebhooks } from 'cotwebhook'
import { sqliteStore } from 'cotwebhook/sqlite'
import { createHostApp, parseTokens } from '../node/app.js'

declare const Bun: {
  serve(options: { fetch: (request: Request) => Response | Promise<Response>; port: number; hostname: string }): { port: number; stop(): void }
}

const store = sqliteStore(process.env.DB_PATH ?? './webhooks.db')
await store.migrate()
const tokens = parseTokens(process.env.COTWEBHOOK_TOKENS)
const hooks = createWebhooks({ store, allowPrivateNetworks: process.env.ALLOW_PRIVATE_NETWORKS === '1' })
const { app } = createHostApp({ hooks, tokens })
const server = Bun.serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 3000), hostname: '127.0.0.1' })
console.log(`host on http://127.0.0.1:${server.port} (Bun, SQLite at ${process.env.DB_PATH ?? './webhooks.db'})`)
for (const [token, company] of Object.entries(tokens)) console.log(`  Authorization: Bearer ${token}  -> company ${company}`)

const stop = async () => {
  server.stop()
  await hooks.close()
  await store.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
