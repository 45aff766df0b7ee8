import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresAvailable, withDatabase } from './helpers/postgres.js'

const run = promisify(execFile)
const root = new URL('..', import.meta.url).pathname
const pgUp = await postgresAvailable('npm pack: the PostgreSQL guide from the tarball')
let dir = ''
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

// What a new project does with the published package: plain Node, no TypeScript loader.
const consumer = `
import { createServer } from 'node:http'
import { createWebhooks, memoryStore, verifyWebhook } from 'cotwebhook'
import { webhooks, webhookApi } from 'cotwebhook/hono'
import { sqliteStore } from 'cotwebhook/sqlite'
import { postgresStore } from 'cotwebhook/postgres'
import { d1Store, workerWebhooks } from 'cotwebhook/cloudflare'

const bodies = []
const server = createServer((req, res) => {
  let body = ''
  req.on('data', (c) => (body += c))
  req.on('end', () => { bodies.push({ headers: req.headers, body }); res.end('ok') })
}).listen(0, '127.0.0.1')
await new Promise((r) => server.once('listening', r))
const hooks = createWebhooks({ store: memoryStore(), allowPrivateNetworks: true })
const company = '625be93a286ef83c1c0e845f'
const { webhook, secret } = await hooks.registry.create(company, {
  name: 'Users', code: 'users', trigger: 'create-edit-delete-user', url: 'http://127.0.0.1:' + server.address().port + '/',
})
await hooks.emit({ company, type: 'COTUser', event: 'create', data: { _id: company } })
await hooks.drain()
const event = await verifyWebhook(secret, bodies[0].headers, bodies[0].body)
const [log] = await hooks.logs(company, webhook._id)
await hooks.close()
server.close()
console.log(JSON.stringify({ type: event.type, state: log.state, hono: [typeof webhooks, typeof webhookApi], stores: [typeof sqliteStore, typeof postgresStore, typeof d1Store, typeof workerWebhooks] }))
`

const typed = `
import { createWebhooks, type COTWebhook, type Store } from 'cotwebhook'
import { webhookApi, type WebhooksVariables } from 'cotwebhook/hono'
import type { ConformanceOptions } from 'cotwebhook/testing'
const hooks = createWebhooks()
const api = webhookApi(hooks, { company: () => '625be93a286ef83c1c0e845f' })
// The input types are real: a wrong trigger is a type error (this line fails the check if they decay to unknown).
// @ts-expect-error 'nope' is not a trigger
void hooks.registry.create('625be93a286ef83c1c0e845f', { name: 'n', code: 'c', trigger: 'nope', url: 'https://example.com' })
export const names: [typeof api, COTWebhook | undefined, Store | undefined, WebhooksVariables | undefined, ConformanceOptions | undefined] = [api, undefined, undefined, undefined, undefined]
`

describe('npm pack', () => {
  it('gives a tarball that an empty project installs and runs from plain Node, with types', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cotwebhook-pack-'))
    const { stdout: packed } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: root })
    const [{ filename, files }] = JSON.parse(packed) as [{ filename: string; files: { path: string }[] }]
    const paths = files.map((f) => f.path)
    expect(paths).toContain('dist/src/index.js')
    expect(paths).toContain('dist/src/index.d.ts')
    expect(paths).toContain('dist/src/hono/index.js')
    expect(paths).toContain('dist/src/testing/index.js')
    expect(paths).toContain('dist/adapters/sqlite/index.js')
    expect(paths).toContain('dist/adapters/postgres/index.d.ts')
    expect(paths).toContain('dist/adapters/node/index.js') // needs undici, an optional peer, when imported
    expect(paths).toContain('dist/adapters/cloudflare/index.js')
    expect(paths.some((p) => p.startsWith('src/') || p.startsWith('test/'))).toBe(false)

    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    await run('npm', ['install', join(dir, filename), '--no-audit', '--no-fund', '--prefer-offline'], { cwd: dir })
    await writeFile(join(dir, 'check.mjs'), consumer)
    const { stdout } = await run(process.execPath, ['check.mjs'], { cwd: dir, timeout: 30_000 })
    // The adapters load without their drivers installed: they import them only when used.
    expect(JSON.parse(stdout)).toEqual({ type: 'COTUser', state: 'succeeded', hono: ['function', 'function'], stores: ['function', 'function', 'function', 'function'] })

    // The README's quickstart, pasted into the new project as it says: it prints what it says it prints.
    const readme = await readFile(join(root, 'README.md'), 'utf8')
    const quickstart = readme.match(/^```js runnable\n([\s\S]*?)^```/m)![1]!
    await writeFile(join(dir, 'quickstart.mjs'), quickstart)
    const { stdout: printed } = await run(process.execPath, ['quickstart.mjs'], { cwd: dir, timeout: 30_000 })
    expect(printed.trim().split('\n')).toEqual(['received COTUser create Ada', 'logged 204 succeeded 1 attempt(s)'])

    // Then the durable stores, as docs/getting-started.md shows them, with their drivers installed beside
    // (linked from this checkout's node_modules: better-sqlite3 is already built there).
    // --ignore-scripts: npm links a folder, and would otherwise rebuild better-sqlite3 inside this
    // checkout's node_modules while other suites use it.
    await run('npm', ['install', join(root, 'node_modules/pg'), join(root, 'node_modules/better-sqlite3'), '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: dir })
    const guide = await readFile(join(root, 'docs/getting-started.md'), 'utf8')
    const blocks = [...guide.matchAll(/^```js runnable( postgres)?\n([\s\S]*?)^```/gm)].map((m) => ({ postgres: Boolean(m[1]), code: m[2]! }))
    expect(blocks.map((b) => b.postgres)).toEqual([true, false])
    for (const [i, block] of blocks.entries()) {
      if (block.postgres && !pgUp) continue
      await writeFile(join(dir, `guide${i}.mjs`), block.code)
      const runGuide = async (env: NodeJS.ProcessEnv) => {
        const { stdout: out } = await run(process.execPath, [`guide${i}.mjs`], { cwd: dir, env, timeout: 30_000 })
        expect(out).toMatch(/^received /m)
        expect(out).toMatch(/^logged succeeded$/m)
      }
      if (block.postgres) await withDatabase((url) => runGuide({ ...process.env, DATABASE_URL: url }))
      else await runGuide(process.env)
    }

    await writeFile(join(dir, 'typed.ts'), typed)
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'DOM'], types: [] }, files: ['typed.ts'] }),
    )
    const tsc = join(root, 'node_modules/typescript/bin/tsc')
    const result = await run(process.execPath, [tsc, '-p', dir], { cwd: dir }).catch((e: { stdout: string }) => e)
    expect(result.stdout).toBe('')
  }, 180_000)
})
