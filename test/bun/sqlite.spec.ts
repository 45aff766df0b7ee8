// The storage contract's suite on Bun, against bun:sqlite: `bun test` runs it (Bun maps vitest's API
// onto its own runner). Started from test/runtime-matrix.test.ts, so it is part of npm test.
import { runStoreConformance } from 'cotwebhook/testing'
import { sqliteStore, type SqliteStore } from 'cotwebhook/sqlite'

runStoreConformance({
  name: 'sqlite (bun:sqlite)',
  create: async () => {
    const store = sqliteStore(':memory:')
    await store.migrate()
    return store
  },
  cleanup: (store) => (store as SqliteStore).close(),
})
