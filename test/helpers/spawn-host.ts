import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('./host-process.ts', import.meta.url))
const root = fileURLToPath(new URL('../..', import.meta.url))

/** A host child process and the lines it printed. */
export interface Host {
  child: ChildProcess
  lines: string[]
  exited: Promise<number | null>
}

export function spawnHost(env: Record<string, string>): Host {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=cotwebhook-source', script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  let partial = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8')
    const parts = text.split('\n')
    partial = parts.pop()!
    lines.push(...parts)
  })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      if (code && code !== 0) console.error(`host exited with ${code}: ${stderr}`)
      resolve(code)
    }),
  )
  return { child, lines, exited }
}
