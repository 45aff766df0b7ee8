import { createWebhooks, memoryStore } from 'cotwebhook'
import { size, type Result } from './lib.js'

/**
 * Heap per registered webhook at 100,000 webhooks on the memory store, created through the registry
 * (validated, with a secret). Run with --expose-gc. The baseline is the webhook's own JSON size.
 */
export async function memoryBench(): Promise<Result> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('memory bench needs node --expose-gc')
  const n = size(100_000, 2_000)
  const collect = () => {
    for (let i = 0; i < 3; i++) gc()
    return process.memoryUsage().heapUsed
  }
  const store = memoryStore()
  const hooks = createWebhooks({ store, pollIntervalMs: 0 })
  const companies = Array.from({ length: 1_000 }, (_, i) => i.toString(16).padStart(24, '0'))
  const before = collect()
  let json = 0
  for (let i = 0; i < n; i++) {
    const { webhook } = await hooks.registry.create(companies[i % 1_000]!, {
      name: `Work orders ${i}`,
      code: `wo_${i}`,
      trigger: 'create-edit-delete-task',
      url: `https://hooks.example.com/cotalker/${i}`,
      context: i % 2 ? { taskGroup: '6261612a8f1e99002e5c8cce' } : {},
    })
    if (i < 1_000) json += JSON.stringify(webhook).length
  }
  const after = collect()
  await hooks.close()
  const perWebhook = (after - before) / n
  const jsonSize = json / 1_000
  return {
    name: 'memory',
    value: Math.round(perWebhook),
    unit: 'bytes/webhook',
    baseline: Math.round(jsonSize),
    ratio: Number((perWebhook / jsonSize).toFixed(2)),
    detail: `heap per webhook at ${n.toLocaleString('en')} webhooks (memory store, with secret and indexes) vs its JSON size`,
  }
}

// Run directly (in a child process with --expose-gc): print the result as JSON.
if (process.argv[1]?.endsWith('memory.ts')) {
  memoryBench().then((r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`)
    process.exit(0)
  })
}
