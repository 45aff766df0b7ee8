// The smoke scenario on Bun: Bun.serve, SQLite through bun:sqlite (the store opens it from the path).
import { sqliteStore } from 'cotwebhook/sqlite'
import { smoke } from './scenario.js'

declare const Bun: {
  version: string
  serve(options: { fetch: (request: Request) => Response | Promise<Response>; port: number; hostname: string }): { port: number; stop(force?: boolean): void }
}

const store = sqliteStore(':memory:')
await store.migrate()
const result = await smoke(`bun ${Bun.version}`, store, async (app) => {
  const server = Bun.serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  return { url: `http://127.0.0.1:${server.port}`, close: () => server.stop(true) }
})
await store.close()
console.log(JSON.stringify(result))
process.exit(0)
