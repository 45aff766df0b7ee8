import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Tests import 'cotwebhook' like users do; this condition points it at src/ instead of dist/.
    conditions: ['cotwebhook-source'],
  },
  ssr: { resolve: { conditions: ['cotwebhook-source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
