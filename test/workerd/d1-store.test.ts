// Runs inside workerd: the storage contract's suite against a real D1 binding.
import { env } from 'cloudflare:workers'
import { runStoreConformance } from 'cotwebhook/testing'
import { d1Store, type D1Like } from 'cotwebhook/cloudflare'

let tables = 0
runStoreConformance({
  name: 'd1 (inside workerd)',
  create: async () => {
    // Tables of their own per test: D1 storage lives as long as the test file.
    const store = d1Store((env as { DB: D1Like }).DB, { prefix: `t${++tables}_` })
    await store.migrate()
    return store
  },
})
