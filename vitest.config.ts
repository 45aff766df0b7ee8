import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Tests import 'cotwebhook' like users do; this condition points it at src/ instead of dist/.
    conditions: ['cotwebhook-source'],
  },
  ssr: { resolve: { conditions: ['cotwebhook-source'] } },
  test: {
    // Two projects: Node (everything) and workerd (test/workerd, inside workerd through miniflare).
    projects: [
      { extends: true, test: { name: 'node', include: ['test/**/*.test.ts'], exclude: ['test/workerd/**'] } },
      './test/workerd/vitest.config.ts',
    ],
    testTimeout: 20_000,
    // The JSON report gives .ci/run its closing "N passed, N failed" line.
    // (npm run test:stress runs several copies at once and gives each its own file.)
    reporters: ['default', ['json', { outputFile: process.env.COTWEBHOOK_REPORT ?? '.tmp/vitest-report.json' }]],
    hookTimeout: 30_000,
  },
})
