import { describe, expect, it } from 'vitest'
import { edgeBundle } from '../scripts/edge-bundle.js'

describe('the edge bundle (core + Hono face for Workers, no Node polyfills)', () => {
  it('builds without any node: import and stays small', async () => {
    const bundle = await edgeBundle()
    expect(bundle.inputs.some((input) => input.includes('src/engine.ts'))).toBe(true)
    expect(bundle.inputs.some((input) => input.includes('src/hono/'))).toBe(true)
    expect(bundle.inputs.filter((input) => input.includes('adapters/'))).toEqual([]) // runtime adapters stay out
    expect(bundle.gzipped).toBeLessThan(bundle.minified)
    expect(bundle.minified).toBeGreaterThan(10_000)
  })

  it('fails when a Node module creeps in', async () => {
    await expect(edgeBundle("export * from 'cotwebhook'; export { createHmac } from 'node:crypto'")).rejects.toThrow(
      /imports node:crypto: the edge bundle must not use Node modules/,
    )
    await expect(edgeBundle("export * from 'cotwebhook/node'")).rejects.toThrow(/must not use Node modules/)
  })
})
