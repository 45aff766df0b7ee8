import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'

const source = (path: string) => new URL(`../../${path}`, import.meta.url).pathname

// Test files here run inside workerd (through miniflare), with a D1 database bound as env.DB.
export default defineConfig({
  plugins: [cloudflareTest({ miniflare: { compatibilityDate: '2025-01-01', d1Databases: ['DB'] } })],
  // The pool resolves packages itself: point the package's own subpaths at the sources.
  resolve: {
    alias: [
      { find: /^cotwebhook$/, replacement: source('src/index.ts') },
      { find: /^cotwebhook\/hono$/, replacement: source('src/hono/index.ts') },
      { find: /^cotwebhook\/testing$/, replacement: source('src/testing/index.ts') },
      { find: /^cotwebhook\/cloudflare$/, replacement: source('adapters/cloudflare/index.ts') },
    ],
  },
  // Paths are relative to this folder, the project's root.
  test: { name: 'workerd', include: ['**/*.test.ts'] },
})
