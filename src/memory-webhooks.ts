import type { COTWebhook } from './model.js'
import type { Page, Store, StoredWebhook, WebhookListQuery } from './store.js'
import type { Trigger } from './triggers.js'

type WebhookMethods = Pick<Store, 'insertWebhook' | 'getWebhook' | 'listWebhooks' | 'activeWebhooks' | 'updateWebhook'>

/**
 * The memory store's webhooks: records by id, each company's in creation order, codes unique per
 * company. `clone` copies what goes in and out (the store's `copy` option).
 *
 * @example
 * ```ts
 * const { methods, companyOf } = memoryWebhooks(structuredClone)
 * await methods.insertWebhook(record)
 * ```
 */
export function memoryWebhooks(clone: <T>(value: T) => T): { methods: WebhookMethods; companyOf: (id: string) => string | undefined } {
  const webhooks = new Map<string, StoredWebhook>()
  const companyWebhooks = new Map<string, string[]>() // creation order
  const codes = new Set<string>()
  const owned = (company: string, id: string) => {
    const record = webhooks.get(id)
    return record && record.webhook.company === company ? record : undefined
  }

  const methods: WebhookMethods = {
    async insertWebhook(record) {
      const { webhook } = record
      const codeKey = `${webhook.company}\0${webhook.code}`
      if (codes.has(codeKey) || webhooks.has(webhook._id)) return false
      codes.add(codeKey)
      webhooks.set(webhook._id, clone(record))
      const list = companyWebhooks.get(webhook.company) ?? []
      list.push(webhook._id)
      companyWebhooks.set(webhook.company, list)
      return true
    },

    async getWebhook(company, id) {
      const record = owned(company, id)
      return record && clone(record)
    },

    async listWebhooks(company, query: WebhookListQuery): Promise<Page<COTWebhook>> {
      const ids = companyWebhooks.get(company) ?? []
      const matching: COTWebhook[] = []
      for (const id of ids) {
        const webhook = webhooks.get(id)!.webhook
        if (query.isActive === undefined || webhook.isActive === query.isActive) matching.push(webhook)
      }
      return { items: clone(matching.slice(query.offset, query.offset + query.limit)), count: matching.length }
    },

    async activeWebhooks(company, trigger: Trigger) {
      const out: COTWebhook[] = []
      for (const id of companyWebhooks.get(company) ?? []) {
        const webhook = webhooks.get(id)!.webhook
        if (webhook.isActive && webhook.trigger === trigger) out.push(webhook)
      }
      return clone(out)
    },

    async updateWebhook(record, expectedVersion) {
      const current = owned(record.webhook.company, record.webhook._id)
      if (!current || current.webhook.__v !== expectedVersion) return false
      // code is immutable; a store still refuses to break its uniqueness if a caller tries.
      if (current.webhook.code !== record.webhook.code) return false
      webhooks.set(record.webhook._id, clone(record))
      return true
    },
  }
  return { methods, companyOf: (id) => webhooks.get(id)?.webhook.company }
}
