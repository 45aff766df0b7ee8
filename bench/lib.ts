import { spawn, type ChildProcess } from 'node:child_process'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'

/** One line of bench/results.json. */
export interface Result {
  name: string
  value: number
  unit: string
  baseline: number
  ratio: number
  /** What was compared, in words. */
  detail: string
}

export const quick = process.argv.includes('--quick')

/** Scales a workload down for the smoke run (`--quick`). */
export const size = (full: number, small: number) => (quick ? small : full)

export function machine(): string {
  const cpu = cpus()
  return `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, ${process.platform}`
}

export const round = (n: number, digits = 2) => Number(n.toFixed(digits))

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** A process running one of the bench's helper scripts, and the port it printed. */
export interface Child {
  process: ChildProcess
  port: number
  stop(): Promise<void>
}

const root = fileURLToPath(new URL('..', import.meta.url))

/** Starts `bench/<script>` (a .mjs with node, a .ts through tsx) and waits for the port it prints. */
export function startChild(script: string, env: Record<string, string> = {}): Promise<Child> {
  const path = fileURLToPath(new URL(script, import.meta.url))
  const args = path.endsWith('.ts') ? ['--import', 'tsx', '--conditions=cotwebhook-source', path] : [path]
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let text = ''
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before listening`)))
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      const match = /^(\d+)\n/.exec(text)
      if (!match) return
      child.stdout!.removeAllListeners('data')
      child.removeAllListeners('exit')
      resolve({
        process: child,
        port: Number(match[1]),
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done()
            child.once('exit', () => done())
            child.kill('SIGTERM')
          }),
      })
    })
  })
}

/** The receiver process (bench/receiver.mjs). */
export async function startReceiver() {
  const child = await startChild('./receiver.mjs')
  const url = `http://127.0.0.1:${child.port}`
  const control = async (what: 'record' | 'count') => void (await fetch(`${url}/control/${what}`, { method: 'POST' })).text()
  const stats = async () => (await (await fetch(`${url}/stats`)).json()) as { count: number; arrivals: Record<string, number> }
  return { ...child, url, control, stats }
}

/** Waits (polling) until `check` holds. */
export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** A clock comparable with the receiver process's. */
export const wallNow = () => performance.timeOrigin + performance.now()
