import type { COTEvent, COTWebhook } from '../model.js'
import { objectId } from '../object-id.js'
import type { StoredWebhook } from '../store.js'

/**
 * Small builders for store tests: valid records with fresh ids, overridable field by field.
 */

/** A valid COTWebhook of `company`. */
export function webhookRecord(company: string, overrides: Partial<COTWebhook> = {}): StoredWebhook {
  const _id = overrides._id ?? objectId()
  return {
    webhook: {
      _id,
      company,
      isActive: true,
      trigger: 'create-edit-delete-task',
      url: 'https://example.com/hook',
      name: `webhook ${_id}`,
      code: `code_${_id}`,
      context: { survey: '', group: '', taskGroup: '' },
      __v: 0,
      description: '',
      ...overrides,
    },
    secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo='],
  }
}

/** A valid task COTEvent of `company`. */
export function taskEvent(company: string, data: Record<string, unknown> = {}): COTEvent {
  return {
    company,
    type: 'COTTask',
    event: 'create',
    data: { _id: objectId(), taskGroup: objectId(), ...data },
    diff: {},
    extraData: null,
    createdAt: new Date(0).toISOString(),
  }
}
