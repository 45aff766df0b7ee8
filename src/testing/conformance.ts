import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { objectId } from '../object-id.js'
import type { COTWebhook } from '../model.js'
import type { ClaimOptions, EnqueueInput, Store } from '../store.js'
import type { ConformanceCase } from './cases.js'
import { outboxCases } from './outbox-cases.js'
import { queueCases } from './queue-cases.js'
import { taskEvent, webhookRecord } from './fixtures.js'

/** Options of {@link runStoreConformance}. */
export interface ConformanceOptions {
  /** Shown in the describe block: `store conformance: <name>`. */
  name: string
  /** A new, empty store for each test. */
  create: () => Store | Promise<Store>
  /** Disposes of a store after its test (close pools, delete files). */
  cleanup?: (store: Store) => void | Promise<void>
  /**
   * Opens the same data again as a new store object, as a restarted process would (the store given
   * stays open). Default: the same object, for stores whose data lives in the object (memory).
   */
  reopen?: (store: Store) => Store | Promise<Store>
  /** Cases to skip, each with the reason printed beside it. */
  skip?: Partial<Record<ConformanceCase, string>>
}

/**
 * Registers the storage contract's test suite with vitest. Call it from a test file of your store:
 * it proves the webhook registry, the outbox (atomic enqueue, leased claims, per-webhook order,
 * settle by the lease holder, lease expiry, idempotency) and the logs, races included.
 *
 * @example
 * ```ts
 * // my-store.test.ts
 * import { runStoreConformance } from 'cotwebhook/testing'
 * runStoreConformance({ name: 'redis', create: () => redisStore(client), cleanup: (s) => flush(s) })
 * ```
 */
export function runStoreConformance(options: ConformanceOptions): void {
  describe(`store conformance: ${options.name}`, () => {
    let store: Store
    const A = objectId()
    const B = objectId()

    beforeEach(async () => {
      store = await options.create()
    })
    afterEach(async () => {
      await options.cleanup?.(store)
    })

    const test = (name: ConformanceCase, body: () => Promise<void>) => {
      const reason = options.skip?.[name]
      if (reason) it.skip(`${name} (skipped: ${reason})`, body)
      else it(name, body)
    }

    const claim = (now: number, extra: Partial<ClaimOptions> = {}) =>
      store.claim({ now, limit: 100, leaseMs: 1_000, owner: 'test', ordered: true, ...extra })

    const enqueue = async (webhookIds: string[], now: number, extra: Partial<EnqueueInput> = {}) => {
      const input: EnqueueInput = {
        eventId: objectId(),
        event: taskEvent(A),
        deliveries: webhookIds.map((webhookId) => ({ id: objectId(), webhookId })),
        now,
        ...extra,
      }
      return store.enqueue(input)
    }

    const hook = async (company = A, overrides: Partial<COTWebhook> = {}) => {
      const record = webhookRecord(company, overrides)
      expect(await store.insertWebhook(record)).toBe(true)
      return record.webhook._id
    }

    test('inserts and reads webhooks, scoped to their company', async () => {
      const record = webhookRecord(A, { name: 'orders' })
      expect(await store.insertWebhook(record)).toBe(true)
      expect(await store.getWebhook(A, record.webhook._id)).toEqual(record)
      expect(await store.getWebhook(B, record.webhook._id)).toBeUndefined()
      expect(await store.getWebhook(A, objectId())).toBeUndefined()
    })

    test('refuses a duplicate code within a company only', async () => {
      await hook(A, { code: 'orders' })
      expect(await store.insertWebhook(webhookRecord(A, { code: 'orders' }))).toBe(false)
      expect(await store.insertWebhook(webhookRecord(B, { code: 'orders' }))).toBe(true)
      expect((await store.listWebhooks(A, { limit: 10, offset: 0 })).count).toBe(1)
    })

    test('lets exactly one of two concurrent inserts of one code win', async () => {
      const results = await Promise.all(
        Array.from({ length: 4 }, () => store.insertWebhook(webhookRecord(A, { code: 'race' }))),
      )
      expect(results.filter(Boolean)).toHaveLength(1)
      expect((await store.listWebhooks(A, { limit: 10, offset: 0 })).count).toBe(1)
    })

    test('lists webhooks in creation order with filters, pages and a count', async () => {
      const ids: string[] = []
      for (let i = 0; i < 5; i++) ids.push(await hook(A, { isActive: i % 2 === 0 }))
      await hook(B)
      const all = await store.listWebhooks(A, { limit: 10, offset: 0 })
      expect(all.items.map((w) => w._id)).toEqual(ids)
      expect(all.count).toBe(5)
      const page = await store.listWebhooks(A, { limit: 2, offset: 2 })
      expect(page.items.map((w) => w._id)).toEqual(ids.slice(2, 4))
      expect(page.count).toBe(5)
      const active = await store.listWebhooks(A, { isActive: true, limit: 10, offset: 0 })
      expect(active.items.map((w) => w._id)).toEqual([ids[0], ids[2], ids[4]])
      expect(active.count).toBe(3)
      const inactive = await store.listWebhooks(A, { isActive: false, limit: 1, offset: 1 })
      expect(inactive.items.map((w) => w._id)).toEqual([ids[3]])
      expect(inactive.count).toBe(2)
    })

    test('indexes active webhooks by company and trigger', async () => {
      const task = await hook(A)
      await hook(A, { isActive: false })
      const user = await hook(A, { trigger: 'create-edit-delete-user' })
      await hook(B)
      expect((await store.activeWebhooks(A, 'create-edit-delete-task')).map((w) => w._id)).toEqual([task])
      expect((await store.activeWebhooks(A, 'create-edit-delete-user')).map((w) => w._id)).toEqual([user])
      expect(await store.activeWebhooks(A, 'logout-user')).toEqual([])
    })

    test('updates only at the expected version', async () => {
      const record = webhookRecord(A)
      await store.insertWebhook(record)
      const next = { ...record, webhook: { ...record.webhook, name: 'renamed', __v: 1 } }
      expect(await store.updateWebhook(next, 1)).toBe(false) // stale
      expect(await store.updateWebhook({ ...next, webhook: { ...next.webhook, company: B } }, 0)).toBe(false)
      expect(await store.updateWebhook(next, 0)).toBe(true)
      expect((await store.getWebhook(A, record.webhook._id))?.webhook).toMatchObject({ name: 'renamed', __v: 1 })
      expect(await store.updateWebhook({ ...next, webhook: { ...next.webhook, __v: 2 } }, 0)).toBe(false)
      const racers = await Promise.all([1, 2, 3].map((n) => store.updateWebhook({ ...next, webhook: { ...next.webhook, name: `r${n}`, __v: 2 } }, 1)))
      expect(racers.filter(Boolean)).toHaveLength(1)
    })

    test('keeps a webhook’s secrets as given, retiring ones included', async () => {
      const record = webhookRecord(A)
      await store.insertWebhook(record)
      // After a rotation: the new current secret, then the old one with its expiry.
      const rotated = {
        webhook: { ...record.webhook, __v: 1 },
        secrets: ['whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', { secret: record.secrets[0] as string, expiresAt: 1_800_000_000_123 }],
      }
      expect(await store.updateWebhook(rotated, 0)).toBe(true)
      expect(await store.getWebhook(A, record.webhook._id)).toEqual(rotated)
    })

    test('keeps stored state apart from the values it is given and returns', async () => {
      const record = webhookRecord(A, { name: 'original' })
      await store.insertWebhook(record)
      record.webhook.name = 'mutated after insert'
      const read = await store.getWebhook(A, record.webhook._id)
      expect(read?.webhook.name).toBe('original')
      read!.webhook.name = 'mutated after read'
      expect((await store.getWebhook(A, record.webhook._id))?.webhook.name).toBe('original')
    })

    const reopen = async () => (options.reopen ? options.reopen(store) : store)
    outboxCases({ test, claim, enqueue, hook, A, B, store: () => store, reopen })
    queueCases({ test, claim, enqueue, hook, A, B, store: () => store, reopen })
  })
}
