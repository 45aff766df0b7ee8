import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { CONFORMANCE_CASES } from 'cotwebhook/testing'

const run = promisify(execFile)
const root = new URL('..', import.meta.url).pathname
const bun = `${root}node_modules/.bin/bun`

// One scenario (test/runtime/scenario.ts) on each runtime, each in a process of its own.
const expected = { created: 201, emitted: 1, received: 1, verified: true, logStatus: 204, logState: 'succeeded' }
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>

describe('the runtime matrix', () => {
  it('Node: REST create, emit, receive, verify, read the log (SQLite through better-sqlite3)', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', 'test/runtime/node.ts'], { cwd: root, timeout: 60_000 })
    expect(lastJson(stdout)).toEqual({ runtime: `node ${process.version}`, ...expected })
  }, 60_000)

  it('Bun from its npm package: the same scenario (Bun.serve, bun:sqlite)', async () => {
    const { stdout } = await run(bun, ['--conditions=cotwebhook-source', 'test/runtime/bun.ts'], { cwd: root, timeout: 60_000 })
    expect(lastJson(stdout)).toEqual({ runtime: expect.stringMatching(/^bun 1\./), ...expected })
  }, 60_000)

  const ed25519 = { label: 'v1a', verified: true, independent: true, tamperedRefused: true, wrongKeyRefused: true, expiredRefused: true }
  it('Node: Ed25519 (v1a) signs on WebCrypto; verifyWebhook and @noble/ed25519 accept it, and refuse a tampered body, a wrong key, an old timestamp', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', 'test/runtime/ed25519.ts'], { cwd: root, timeout: 60_000 })
    expect(lastJson(stdout)).toEqual({ runtime: `node ${process.version}`, ...ed25519 })
  }, 60_000)

  it('Bun: the same Ed25519 checks on its WebCrypto', async () => {
    const { stdout } = await run(bun, ['--conditions=cotwebhook-source', 'test/runtime/ed25519.ts'], { cwd: root, timeout: 60_000 })
    expect(lastJson(stdout)).toEqual({ runtime: expect.stringMatching(/^bun 1\./), ...ed25519 })
  }, 60_000)

  it('Bun: nodeTransport refuses a name resolving inward and a loopback literal; the listener sees only the control', async () => {
    const { stdout } = await run(bun, ['--conditions=cotwebhook-source', 'test/runtime/bun-ssrf.ts'], { cwd: root, timeout: 60_000 })
    expect(lastJson(stdout)).toEqual({
      runtime: expect.stringMatching(/^bun 1\./),
      name: 'ERR_UNSAFE_DESTINATION',
      literal: 'ERR_UNSAFE_DESTINATION',
      hitsBeforeControl: 0,
      control: 'reached',
    })
  }, 60_000)

  it('Bun: the store conformance suite passes on bun:sqlite', async () => {
    const { stdout, stderr } = await run(bun, ['test', '--conditions=cotwebhook-source', 'test/bun/'], { cwd: root, timeout: 60_000 })
    const output = stdout + stderr
    expect(output).toMatch(new RegExp(`\\b${CONFORMANCE_CASES.length} pass\\b`))
    expect(output).toMatch(/\b0 fail\b/)
  }, 60_000)
})
