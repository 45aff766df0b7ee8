/**
 * `npm run test:stress`: runs the whole vitest suite several times while the machine is busy, and
 * lists every failure by its test name. Not part of `npm test`: it proves the suite holds when other
 * work shares the cores, which an idle run cannot show.
 *
 *   npm run test:stress                      3 runs, a CPU hog on every core
 *   npm run test:stress -- --runs 5          more runs
 *   npm run test:stress -- --load twin       a second copy of the suite at once instead of hogs
 *   npm run test:stress -- --load both       both at once (the heaviest)
 *   npm run test:stress -- test/retry.test.ts   only these files (passed on to vitest)
 *
 * Reports and logs land in .tmp/stress/. Exits 1 if any run had a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outDir = `${root}.tmp/stress`

interface Options {
  runs: number
  load: 'hogs' | 'twin' | 'both'
  files: string[]
}

function parseArgs(argv: string[]): Options {
  const options: Options = { runs: 3, load: 'hogs', files: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--runs') {
      options.runs = Number(argv[++i])
      if (!Number.isInteger(options.runs) || options.runs < 1) throw new RangeError('--runs takes a positive integer')
    } else if (arg === '--load') {
      const load = argv[++i]
      if (load !== 'hogs' && load !== 'twin' && load !== 'both') throw new RangeError("--load takes 'hogs', 'twin' or 'both'")
      options.load = load
    } else options.files.push(arg)
  }
  return options
}

/** One busy loop per core, each in its own process, at normal priority: real contention for the suite. */
function startHogs(): ChildProcess[] {
  return cpus().map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }))
}

interface VitestReport {
  numPassedTests: number
  numFailedTests: number
  numPendingTests: number
  testResults: { name: string; message?: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[]
}

interface Failure {
  file: string
  test: string
  message: string
}

/** Runs vitest once with a JSON report of its own; resolves to the failures it reported. */
function runSuite(label: string, files: string[], exclude: string[] = []): Promise<{ passed: number; failures: Failure[]; seconds: number }> {
  const report = `${outDir}/${label}.json`
  const started = performance.now()
  const args = ['vitest', 'run', ...exclude.map((e) => `--exclude=${e}`), ...files]
  const child = spawn('npx', args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, COTWEBHOOK_REPORT: report } })
  let log = ''
  child.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()))
  return new Promise((resolve) => {
    child.on('exit', () => {
      writeFileSync(`${outDir}/${label}.log`, log)
      const seconds = (performance.now() - started) / 1000
      let parsed: VitestReport
      try {
        parsed = JSON.parse(readFileSync(report, 'utf8')) as VitestReport
      } catch {
        resolve({ passed: 0, failures: [{ file: '(vitest)', test: `${label}: no report`, message: log.slice(-2_000) }], seconds })
        return
      }
      const failures: Failure[] = []
      for (const file of parsed.testResults) {
        const name = file.name.replace(root, '')
        const failed = file.assertionResults.filter((a) => a.status === 'failed')
        for (const a of failed) failures.push({ file: name, test: a.fullName, message: firstLine(a.failureMessages.join('\n')) })
        // A file that failed to load (or a hook that threw) has no failed test of its own.
        if (!failed.length && file.message) failures.push({ file: name, test: '(file)', message: firstLine(file.message) })
      }
      resolve({ passed: parsed.numPassedTests, failures, seconds })
    })
  })
}

const firstLine = (text: string) => text.split('\n').find((line) => line.trim())?.trim().slice(0, 300) ?? ''

const options = parseArgs(process.argv.slice(2))
rmSync(outDir, { recursive: true, force: true })
mkdirSync(outDir, { recursive: true })
console.log(`test:stress: ${options.runs} run(s), load '${options.load}', ${cpus().length} cores${options.files.length ? `, files: ${options.files.join(' ')}` : ''}`)

// The suite reads dist/ (the pack test rebuilds it, the others import the source): build it once, as npm test does.
await new Promise<void>((resolve, reject) =>
  spawn('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' }).on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build exited with ${code}`)))),
)

let failedRuns = 0
const everyFailure = new Map<string, number>()
for (let run = 1; run <= options.runs; run++) {
  const hogs = options.load === 'twin' ? [] : startHogs()
  const suites = [runSuite(`run-${run}`, options.files)]
  // The twin shares this tree's dist/, which the pack test deletes and rebuilds: only one copy runs it.
  if (options.load !== 'hogs') suites.push(runSuite(`run-${run}-twin`, options.files, ['test/pack.test.ts']))
  const sampler = setInterval(() => (peak = Math.max(peak, loadavg()[0]!)), 1_000)
  let peak = 0
  const results = await Promise.all(suites)
  clearInterval(sampler)
  for (const hog of hogs) hog.kill('SIGKILL')
  const failures = results.flatMap((r) => r.failures)
  const passed = results.reduce((n, r) => n + r.passed, 0)
  const seconds = Math.max(...results.map((r) => r.seconds))
  console.log(`run ${run}: ${passed} passed, ${failures.length} failed, ${seconds.toFixed(0)} s, peak 1-min load ${peak.toFixed(1)}`)
  for (const f of failures) {
    console.log(`  ✗ ${f.file} › ${f.test}\n      ${f.message}`)
    const key = `${f.file} › ${f.test}`
    everyFailure.set(key, (everyFailure.get(key) ?? 0) + 1)
  }
  if (failures.length) failedRuns++
}

console.log(`\n${options.runs - failedRuns} of ${options.runs} stressed runs passed${everyFailure.size ? '; failures by test:' : ''}`)
for (const [test, times] of everyFailure) console.log(`  ${times}× ${test}`)
process.exitCode = failedRuns ? 1 : 0
