import { execFile } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { postgresAvailable } from './helpers/postgres.js'

const run = promisify(execFile)
const root = new URL('..', import.meta.url).pathname
const pgUp = await postgresAvailable('bench smoke run (durable-postgres)')

// A smoke run: the bench scripts still execute and write every figure. No timing is judged here.
describe('npm run bench', () => {
  it('runs every benchmark on a small workload and writes the JSON', async () => {
    const out = join(tmpdir(), `cotwebhook-bench-${process.pid}.json`)
    try {
      // The peer steps install graphile-worker, pg-boss and BullMQ (and a Node 22 binary) on first use:
      // a benchmark's business, not a test's. Every other step runs.
      const steps = ['matcher', 'memory', 'dispatch', 'latency', 'emit-overhead', 'durable', ...(pgUp ? ['backlog', 'dead-endpoint'] : []), 'hanging', 'flood', 'fairness-cost', 'telemetry', ...(pgUp ? ['stats'] : [])]
      await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', 'bench/run.ts', '--quick', '--out', out, ...steps], { cwd: root, timeout: 240_000 })
      const report = JSON.parse(readFileSync(out, 'utf8')) as { machine: string; results: { name: string; value: number; baseline: number; ratio: number; unit: string; detail: string }[] }
      const names = ['matcher', 'memory', 'dispatch', 'dispatch-ordered', 'latency', 'emit-overhead', 'durable-sqlite',
        ...(pgUp ? ['durable-postgres', 'backlog-drain', 'backlog-claim', 'dead-endpoint-writes', 'dead-endpoint-instances'] : []),
        'neighbours-hanging', 'neighbours-hanging-unordered', 'neighbours-flood', 'neighbours-backlog', ...(pgUp ? ['neighbours-flood-postgres', 'neighbours-backlog-postgres'] : []), 'fairness-cost', 'fairness-cost-ordered', 'telemetry-sdk', 'telemetry-api', ...(pgUp ? ['stats-postgres'] : [])]
      // Counts of what should not happen (writes while a circuit is open) may well be 0.
      const counts = new Set(['dead-endpoint-writes'])
      expect(report.results.map((r) => r.name)).toEqual(names)
      expect(report.machine).toMatch(/Node v\d+/)
      for (const r of report.results) {
        expect(Number.isFinite(r.value) && (r.value > 0 || (counts.has(r.name) && r.value === 0)), r.name).toBe(true)
        expect(Number.isFinite(r.baseline) && r.baseline > 0, r.name).toBe(true)
        expect(Number.isFinite(r.ratio), r.name).toBe(true)
        expect(r.unit, r.name).not.toBe('')
      }
      // The flood figures split off the engine's share (emit to the request on the wire, from undici's
      // diagnostics channel): a number on both sides, or the split measured nothing.
      const number = String.raw`\d+(?:\.\d+)?`
      const wire = new RegExp(`on the wire: p50 ${number} ms, p99 ${number} ms \\(alone p50 ${number} ms, p99 ${number} ms\\)`)
      for (const r of report.results.filter((r) => r.name.startsWith('neighbours-flood') || r.name.startsWith('neighbours-backlog'))) {
        expect(r.detail, r.name).toMatch(wire)
      }
    } finally {
      rmSync(out, { force: true })
    }
  }, 270_000)
})
