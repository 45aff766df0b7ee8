// The smoke scenario on Node: @hono/node-server, SQLite through better-sqlite3.
import { serve } from '@hono/node-server'
import type { AddressInfo } from 'node:net'
import { sqliteStore } from 'cotwebhook/sqlite'
import { smoke } from './scenario.js'

const store = sqliteStore(':memory:')
await store.migrate()
const result = await smoke(`node ${process.version}`, store, (app) =>
  new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
      resolve({ url: `http://127.0.0.1:${info.port}`, close: () => void server.close() }),
    )
  }),
)
await store.close()
console.log(JSON.stringify(result))
process.exit(0)
