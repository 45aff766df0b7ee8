import { describe, expect, expectTypeOf, it } from 'vitest'
import { companyIdFor, createWebhooks, memoryStore, type EmitInput, type WebhookInput, type WebhookPatch } from 'cotwebhook'

/**
 * The public input types are as strict as the run-time checks. Each `@ts-expect-error` below is a
 * line that must not compile: `npm test` type-checks this file first (`tsc --noEmit`), and an
 * expected error that no longer happens fails it. The run-time half shows the same inputs refused.
 */

const company = '6261612a8f1e99002e5c8cce'
const id = '6261612a8f1e99002e5c8ccf'
const taskGroup = '6261612a8f1e99002e5c8cd0'
const url = 'https://example.com/hooks'

describe('EmitInput', () => {
  it('narrows event and data by type', () => {
    const task: EmitInput = { company, type: 'COTTask', event: 'edit', data: { _id: id, taskGroup, name: 'Fix pump' } }
    const survey: EmitInput = { company, type: 'COTSurvey', event: 'create', data: { _id: id, surveyId: id, group: id } }
    const user: EmitInput = { company, type: 'COTUser', event: 'delete', data: { _id: id } }
    const logout: EmitInput = { company, type: 'Auth', event: 'logout', data: null, extraData: { userId: id, timestamp: 1 } }
    // An interface (no index signature) is a fine `data`.
    interface Task { _id: string; taskGroup: string; name: string }
    const fromInterface: Task = { _id: id, taskGroup, name: 'x' }
    const typed: EmitInput = { company, type: 'COTTask', event: 'create', data: fromInterface }
    expect([task, survey, user, logout, typed].map((e) => e.type)).toEqual(['COTTask', 'COTSurvey', 'COTUser', 'Auth', 'COTTask'])

    // @ts-expect-error a task has no logout
    const wrongPair: EmitInput = { company, type: 'COTTask', event: 'logout', data: { _id: id, taskGroup } }
    // @ts-expect-error a task event carries its taskGroup (task webhooks filter on it)
    const noGroup: EmitInput = { company, type: 'COTTask', event: 'create', data: { _id: id } }
    // @ts-expect-error a survey execution carries surveyId and group
    const noSurvey: EmitInput = { company, type: 'COTSurvey', event: 'edit', data: { _id: id, group: id } }
    // @ts-expect-error a logout carries no object
    const logoutData: EmitInput = { company, type: 'Auth', event: 'logout', data: { _id: id } }
    // @ts-expect-error extraData is only for a logout
    const extra: EmitInput = { company, type: 'COTUser', event: 'edit', data: { _id: id }, extraData: { userId: id, timestamp: 1 } }
    // @ts-expect-error a logout's timestamp is a number
    const badStamp: EmitInput = { company, type: 'Auth', event: 'logout', data: null, extraData: { userId: id, timestamp: 'now' } }
    expect([wrongPair, noGroup, noSurvey, logoutData, extra, badStamp]).toHaveLength(6)
    expectTypeOf<Extract<EmitInput, { type: 'Auth' }>['event']>().toEqualTypeOf<'logout'>()
    expectTypeOf<Extract<EmitInput, { type: 'COTTask' }>['event']>().toEqualTypeOf<'create' | 'edit' | 'delete'>()
  })

  it('is refused at run time where the types refuse it', async () => {
    const hooks = createWebhooks({ store: memoryStore(), dispatch: false })
    try {
      const refused = async (input: unknown) => (await hooks.emit(input as EmitInput).catch((e: Error) => e)) as Error
      expect((await refused({ company, type: 'COTTask', event: 'logout', data: { _id: id, taskGroup } })).message).toMatch(/COTTask events are create, edit, delete, not logout/)
      expect((await refused({ company, type: 'COTTask', event: 'create', data: { _id: id } })).message).toMatch(/data\.taskGroup: must be an ObjectId/)
      expect((await refused({ company, type: 'Auth', event: 'logout', data: { _id: id } })).message).toMatch(/data: must be null for a logout/)
      expect((await refused({ company, type: 'COTUser', event: 'edit', data: { _id: id }, extraData: { userId: id, timestamp: 1 } })).message).toMatch(/extraData: must be null except on a logout/)
    } finally {
      await hooks.close()
    }
  })
})

describe('WebhookInput and WebhookPatch', () => {
  it('type the context by trigger', () => {
    const task: WebhookInput = { name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url, context: { taskGroup } }
    const survey: WebhookInput = { name: 'S', code: 's', trigger: 'create-edit-delete-survey', url, context: { survey: id, group: '' } }
    const user: WebhookInput = { name: 'U', code: 'u', trigger: 'create-edit-delete-user', url, context: { taskGroup: '' } }
    const patch: WebhookPatch = { isActive: false, __v: 0 }
    const retrigger: WebhookPatch = { trigger: 'create-edit-delete-survey', context: { survey: id } }
    expect([task, survey, user].map((w) => w.code)).toEqual(['tasks', 's', 'u'])
    expect([patch, retrigger]).toHaveLength(2)

    // @ts-expect-error a context is an object
    const notObject: WebhookInput = { name: 'T', code: 't', trigger: 'create-edit-delete-task', url, context: 42 }
    // @ts-expect-error a misspelt context field
    const typo: WebhookInput = { name: 'T', code: 't', trigger: 'create-edit-delete-task', url, context: { taskgroup: taskGroup } }
    // @ts-expect-error a user webhook has nothing to filter on: its context fields may only be ""
    const misplaced: WebhookInput = { name: 'U', code: 'u', trigger: 'create-edit-delete-user', url, context: { taskGroup } }
    // @ts-expect-error an unknown trigger
    const unknown: WebhookInput = { name: 'X', code: 'x', trigger: 'create-edit-delete-order', url }
    // @ts-expect-error a patch naming its trigger has that trigger's context
    const patchMisplaced: WebhookPatch = { trigger: 'create-edit-delete-user', context: { survey: id } }
    // @ts-expect-error __v is a number
    const patchVersion: WebhookPatch = { __v: '0' }
    expect([notObject, typo, misplaced, unknown, patchMisplaced, patchVersion]).toHaveLength(6)
  })

  it('is refused at run time where the types refuse it', async () => {
    const hooks = createWebhooks({ store: memoryStore(), dispatch: false })
    try {
      const refused = async (input: unknown) => (await hooks.registry.create(company, input as WebhookInput).catch((e: Error) => e)) as Error
      expect((await refused({ name: 'T', code: 't', trigger: 'create-edit-delete-task', url, context: 42 })).message).toMatch(/context: must be an object/)
      expect((await refused({ name: 'T', code: 't', trigger: 'create-edit-delete-task', url, context: { taskgroup: taskGroup } })).message).toMatch(/taskgroup/)
      expect((await refused({ name: 'U', code: 'u', trigger: 'create-edit-delete-user', url, context: { taskGroup } })).message).toMatch(/context\.taskGroup/)
      expect(await companyIdFor('acme')).toMatch(/^[0-9a-f]{24}$/)
    } finally {
      await hooks.close()
    }
  })
})
