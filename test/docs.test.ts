import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { objectId } from 'cotwebhook'
import { postgresAvailable, withDatabase } from './helpers/postgres.js'

/**
 * The README and the pages of docs/ as a reader meets them: every relative link leads to a file (and
 * a heading, when it names one), and every code block marked `runnable` runs as pasted and prints what
 * it says it prints.
 */

const run = promisify(execFile)
const root = resolve(new URL('..', import.meta.url).pathname)
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
const pgUp = await postgresAvailable('docs runnable blocks marked postgres')

/** GitHub's anchor of a heading. */
const slug = (heading: string) =>
  heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')

/** The text of a page outside its code blocks. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, '')

const headingsOf = (file: string) =>
  new Set(prose(readFileSync(file, 'utf8')).split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => slug(l.replace(/^#+ /, ''))))

/** Code blocks whose info string says `runnable` (and `postgres` when they need a database). */
function runnableBlocks(page: string): Array<{ page: string; n: number; code: string; postgres: boolean }> {
  const text = readFileSync(join(root, page), 'utf8')
  const blocks = [...text.matchAll(/^```(\w+) runnable( postgres)?\n([\s\S]*?)^```/gm)]
  return blocks.map((m, n) => ({ page, n, code: m[3]!, postgres: Boolean(m[2]) }))
}

describe('the README and docs/', () => {
  it('link only to files and headings that exist', () => {
    const broken: string[] = []
    for (const page of pages) {
      const file = join(root, page)
      for (const [, target] of prose(readFileSync(file, 'utf8')).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue // http:, https:, mailto:
        const [path, anchor] = target!.split('#') as [string, string | undefined]
        const dest = path ? resolve(dirname(file), path) : file
        if (!existsSync(dest)) broken.push(`${page}: ${target} (no such file)`)
        else if (anchor && dest.endsWith('.md') && !headingsOf(dest).has(anchor)) broken.push(`${page}: ${target} (no such heading)`)
      }
    }
    expect(broken).toEqual([])
  })

  it('keep the README a front door: at most 300 lines, a quickstart under 30', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    expect(readme.split('\n').length).toBeLessThanOrEqual(300)
    const [quickstart] = runnableBlocks('README.md')
    expect(quickstart).toBeDefined()
    expect(quickstart!.code.trim().split('\n').length).toBeLessThan(30)
  })

  const blocks = pages.flatMap(runnableBlocks)
  it('have runnable blocks to run', () => {
    expect(blocks.map((b) => `${b.page}#${b.n}`)).toEqual(['README.md#0', 'docs/getting-started.md#0', 'docs/getting-started.md#1'])
  })

  it.each(blocks.map((b) => [`${b.page} block ${b.n}`, b] as const))('runs %s as pasted', async (_, block) => {
    if (block.postgres && !pgUp) return
    // In a directory of its own inside the repository: `cotwebhook` resolves to this package, as it
    // would from a project that installed it, and files the block writes land there.
    const dir = join(root, '.tmp', `docs-${objectId()}`)
    mkdirSync(dir, { recursive: true })
    const script = join(dir, 'block.mjs')
    writeFileSync(script, block.code)
    const runBlock = async (env: NodeJS.ProcessEnv) => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', script], { cwd: dir, env, timeout: 30_000 })
      // Each block receives its event, verified, and logs the delivery as succeeded.
      expect(stdout).toMatch(/^received /m)
      expect(stdout).toMatch(/^logged .*succeeded/m)
      if (block.page === 'README.md') {
        // What the README says the quickstart prints.
        expect(stdout.trim().split('\n')).toEqual(['received COTUser create Ada', 'logged 204 succeeded 1 attempt(s)'])
      }
    }
    try {
      if (block.postgres) await withDatabase((url) => runBlock({ ...process.env, DATABASE_URL: url }))
      else await runBlock(process.env)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
