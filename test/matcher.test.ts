import { afterEach, describe, expect, it } from 'vitest'
import {
  TRIGGERS,
  TRIGGER_NAMES,
  createMatcher,
  createWebhooks,
  memoryStore,
  toEvent,
  type COTEvent,
  type EmitInput,
  type Store,
  type Trigger,
  type WebhookInput,
  type Webhooks,
} from 'cotwebhook'
import { webhookRecord } from 'cotwebhook/testing'

const COMPANY = '625bc5429a54e8868bd89be2'
const OTHER_COMPANY = '625bc5429a54e8868bd89bf9'
const TASK = '6261612a8f1e9999775c8be4'
const TASK_GROUP = '6261612a8f1e99002e5c8cce'
const OTHER_TASK_GROUP = '6261612a8f1e99002e5c8ccf'
const SURVEY = '62685990d918fb5557f9f992'
const OTHER_SURVEY = '62685990d918fb5557f9f993'
const GROUP = '62685990d918fb5557f9f9a1'
const OTHER_GROUP = '62685990d918fb5557f9f9a2'
const USER = '62742dd8a4b1c2d3e4f50617'
const PROPERTY = '62742dd8a4b1c2d3e4f50618'
// Nothing listens on the discard port: deliveries fail fast and wait for a retry that close() hands back.
const URL = 'http://127.0.0.1:9/hook'

// The value an event carries for each context field it is filtered on.
const EVENT_VALUE: Record<string, string> = { taskGroup: TASK_GROUP, survey: SURVEY, group: GROUP }
const OTHER_VALUE: Record<string, string> = { taskGroup: OTHER_TASK_GROUP, survey: OTHER_SURVEY, group: OTHER_GROUP }

/** A valid event of `trigger`, carrying the values of EVENT_VALUE (overridable). */
function eventFor(trigger: Trigger, event: string, company = COMPANY, data: Record<string, unknown> = {}): EmitInput {
  switch (trigger) {
    case 'create-edit-delete-task':
      return { company, type: 'COTTask', event: event as 'create', data: { _id: TASK, taskGroup: TASK_GROUP, ...data } }
    case 'create-edit-delete-survey':
      return { company, type: 'COTSurvey', event: event as 'create', data: { surveyId: SURVEY, group: GROUP, surveyData: [], ...data } }
    case 'create-edit-delete-user':
      return { company, type: 'COTUser', event: event as 'create', data: { _id: USER, ...data } }
    case 'create-edit-delete-property':
      return { company, type: 'COTProperty', event: event as 'create', data: { _id: PROPERTY, ...data } }
    case 'logout-user':
      return { company, type: 'Auth', event: 'logout', data: null, extraData: { userId: USER, timestamp: 1651781080084 } }
  }
}

const open: Webhooks[] = []

function engine(): Webhooks {
  const hooks = createWebhooks({ allowPrivateNetworks: true })
  open.push(hooks)
  return hooks
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((hooks) => hooks.close()))
})

let codes = 0
async function add(hooks: Webhooks, trigger: Trigger, extra: Partial<Record<keyof WebhookInput, unknown>> = {}, company = COMPANY): Promise<string> {
  // Any trigger with any context: the matcher's table, not the types, is under test here.
  const input = { name: `hook ${++codes}`, code: `hook_${codes}`, trigger, url: URL, ...extra } as WebhookInput
  const { webhook } = await hooks.registry.create(company, input)
  return webhook._id
}

/** The ids of the webhooks an emit was matched to, sorted. */
async function receivers(hooks: Webhooks, event: EmitInput): Promise<string[]> {
  const { deliveries } = await hooks.emit(event)
  return deliveries.map((d) => d.webhookId).sort()
}

const sorted = (ids: string[]) => [...ids].sort()

/** Every trigger gets a company populated with one webhook per situation of the matching table. */
async function population(trigger: Trigger) {
  const hooks = engine()
  const filters = Object.keys(TRIGGERS[trigger].context)
  const another = TRIGGER_NAMES.find((t) => t !== trigger)!
  const ids = {
    empty: await add(hooks, trigger),
    matching: {} as Record<string, string>,
    nonMatching: {} as Record<string, string>,
    inactive: await add(hooks, trigger, { isActive: false }),
    otherCompany: await add(hooks, trigger, {}, OTHER_COMPANY),
    otherTrigger: await add(hooks, another),
  }
  for (const field of filters) {
    ids.matching[field] = await add(hooks, trigger, { context: { [field]: EVENT_VALUE[field] } })
    ids.nonMatching[field] = await add(hooks, trigger, { context: { [field]: OTHER_VALUE[field] } })
  }
  return { hooks, ids, filters }
}

for (const trigger of TRIGGER_NAMES) {
  const { type, events } = TRIGGERS[trigger]
  const filters = Object.keys(TRIGGERS[trigger].context)

  describe(`trigger ${trigger}`, () => {
    for (const event of events) {
      it(`a ${type} ${event} event reaches exactly the company's active ${trigger} webhooks whose context admits it`, async () => {
        const { hooks, ids } = await population(trigger)
        expect(await receivers(hooks, eventFor(trigger, event))).toEqual(sorted([ids.empty, ...Object.values(ids.matching)]))
      })
    }

    it(`a webhook with an empty context receives every ${type} event`, async () => {
      const { hooks, ids } = await population(trigger)
      for (const event of events) expect(await receivers(hooks, eventFor(trigger, event))).toContain(ids.empty)
    })

    for (const field of filters) {
      const dataField = (TRIGGERS[trigger].context as Record<string, string>)[field]!
      it(`a webhook whose context.${field} equals the event's data.${dataField} receives it`, async () => {
        const { hooks, ids } = await population(trigger)
        expect(await receivers(hooks, eventFor(trigger, events[0]!))).toContain(ids.matching[field])
      })

      it(`a webhook whose context.${field} differs from the event's data.${dataField} does not receive it`, async () => {
        const { hooks, ids } = await population(trigger)
        const got = await receivers(hooks, eventFor(trigger, events[0]!))
        expect(got).not.toContain(ids.nonMatching[field])
        // The same webhook receives an event that carries its value.
        const own = await receivers(hooks, eventFor(trigger, events[0]!, COMPANY, { [dataField]: OTHER_VALUE[field] }))
        expect(own).toContain(ids.nonMatching[field])
        expect(own).not.toContain(ids.matching[field])
      })
    }

    it(`an inactive ${trigger} webhook receives nothing`, async () => {
      const { hooks, ids } = await population(trigger)
      for (const event of events) expect(await receivers(hooks, eventFor(trigger, event))).not.toContain(ids.inactive)
    })

    it(`a ${trigger} webhook of another company receives nothing, and only it receives that company's events`, async () => {
      const { hooks, ids } = await population(trigger)
      for (const event of events) {
        expect(await receivers(hooks, eventFor(trigger, event))).not.toContain(ids.otherCompany)
        expect(await receivers(hooks, eventFor(trigger, event, OTHER_COMPANY))).toEqual([ids.otherCompany])
      }
    })

    it(`a webhook of another trigger does not receive ${type} events`, async () => {
      const { hooks, ids } = await population(trigger)
      for (const event of events) expect(await receivers(hooks, eventFor(trigger, event))).not.toContain(ids.otherTrigger)
    })
  })
}

describe('context filters', () => {
  it('an empty taskGroup matches every task group', async () => {
    const hooks = engine()
    const any = await add(hooks, 'create-edit-delete-task', { context: { taskGroup: '' } })
    const one = await add(hooks, 'create-edit-delete-task', { context: { taskGroup: TASK_GROUP } })
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual(sorted([any, one]))
    expect(
      await receivers(hooks, eventFor('create-edit-delete-task', 'edit', COMPANY, { taskGroup: OTHER_TASK_GROUP })),
    ).toEqual([any])
  })

  it('a taskGroup filter only admits tasks of that group', async () => {
    const hooks = engine()
    const one = await add(hooks, 'create-edit-delete-task', { context: { taskGroup: TASK_GROUP } })
    const two = await add(hooks, 'create-edit-delete-task', { context: { taskGroup: OTHER_TASK_GROUP } })
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'delete'))).toEqual([one])
    expect(
      await receivers(hooks, eventFor('create-edit-delete-task', 'delete', COMPANY, { taskGroup: OTHER_TASK_GROUP })),
    ).toEqual([two])
  })

  describe('survey webhooks filter on survey and group independently', () => {
    async function surveyHooks() {
      const hooks = engine()
      const ids = {
        none: await add(hooks, 'create-edit-delete-survey'),
        survey: await add(hooks, 'create-edit-delete-survey', { context: { survey: SURVEY } }),
        group: await add(hooks, 'create-edit-delete-survey', { context: { group: GROUP } }),
        both: await add(hooks, 'create-edit-delete-survey', { context: { survey: SURVEY, group: GROUP } }),
      }
      const emit = (surveyId: string, group: string) =>
        receivers(hooks, eventFor('create-edit-delete-survey', 'create', COMPANY, { surveyId, group }))
      return { ids, emit }
    }

    it('the event of that survey in that group reaches all four', async () => {
      const { ids, emit } = await surveyHooks()
      expect(await emit(SURVEY, GROUP)).toEqual(sorted([ids.none, ids.survey, ids.group, ids.both]))
    })

    it('a survey filter alone matches that survey in any group', async () => {
      const { ids, emit } = await surveyHooks()
      expect(await emit(SURVEY, OTHER_GROUP)).toEqual(sorted([ids.none, ids.survey]))
    })

    it('a group filter alone matches that group for any survey', async () => {
      const { ids, emit } = await surveyHooks()
      expect(await emit(OTHER_SURVEY, GROUP)).toEqual(sorted([ids.none, ids.group]))
    })

    it('survey and group together must both match', async () => {
      const { ids, emit } = await surveyHooks()
      expect(await emit(OTHER_SURVEY, OTHER_GROUP)).toEqual([ids.none])
      expect(await emit(SURVEY, OTHER_GROUP)).not.toContain(ids.both)
      expect(await emit(OTHER_SURVEY, GROUP)).not.toContain(ids.both)
    })
  })

  it('an event with no matching webhook yields no deliveries', async () => {
    const hooks = engine()
    await add(hooks, 'create-edit-delete-task', { context: { taskGroup: OTHER_TASK_GROUP } })
    const result = await hooks.emit(eventFor('create-edit-delete-task', 'create'))
    expect(result.deliveries).toEqual([])
    expect(result.eventId).toMatch(/^[0-9a-f]{24}$/)
  })

  it('each matched webhook gets its own delivery id', async () => {
    const hooks = engine()
    const a = await add(hooks, 'create-edit-delete-user')
    const b = await add(hooks, 'create-edit-delete-user')
    const { deliveries } = await hooks.emit(eventFor('create-edit-delete-user', 'edit'))
    expect(deliveries.map((d) => d.webhookId).sort()).toEqual(sorted([a, b]))
    expect(new Set(deliveries.map((d) => d.id)).size).toBe(2)
    for (const d of deliveries) expect(d.id).toMatch(/^[0-9a-f]{24}$/)
  })
})

describe('the match cache is invalidated by registry writes', () => {
  it('a webhook created after a first match receives the next event', async () => {
    const hooks = engine()
    const first = await add(hooks, 'create-edit-delete-task')
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual([first])
    const second = await add(hooks, 'create-edit-delete-task')
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual(sorted([first, second]))
  })

  it('a webhook created in a company that had none receives the next event', async () => {
    const hooks = engine()
    expect(await receivers(hooks, eventFor('logout-user', 'logout'))).toEqual([])
    const id = await add(hooks, 'logout-user')
    expect(await receivers(hooks, eventFor('logout-user', 'logout'))).toEqual([id])
  })

  it('a webhook deactivated after a first match stops receiving at once, and receives again once reactivated', async () => {
    const hooks = engine()
    const id = await add(hooks, 'create-edit-delete-user')
    expect(await receivers(hooks, eventFor('create-edit-delete-user', 'create'))).toEqual([id])
    await hooks.registry.update(COMPANY, id, { isActive: false })
    expect(await receivers(hooks, eventFor('create-edit-delete-user', 'edit'))).toEqual([])
    await hooks.registry.update(COMPANY, id, { isActive: true })
    expect(await receivers(hooks, eventFor('create-edit-delete-user', 'delete'))).toEqual([id])
  })

  it('a context change after a first match is seen by the next match', async () => {
    const hooks = engine()
    const id = await add(hooks, 'create-edit-delete-task', { context: { taskGroup: TASK_GROUP } })
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual([id])
    await hooks.registry.update(COMPANY, id, { context: { taskGroup: OTHER_TASK_GROUP } })
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual([])
    expect(
      await receivers(hooks, eventFor('create-edit-delete-task', 'create', COMPANY, { taskGroup: OTHER_TASK_GROUP })),
    ).toEqual([id])
  })

  it('a trigger change after a first match moves the webhook to the new trigger\'s events', async () => {
    const hooks = engine()
    const id = await add(hooks, 'create-edit-delete-user')
    expect(await receivers(hooks, eventFor('create-edit-delete-user', 'create'))).toEqual([id])
    expect(await receivers(hooks, eventFor('create-edit-delete-property', 'create'))).toEqual([])
    await hooks.registry.update(COMPANY, id, { trigger: 'create-edit-delete-property' })
    expect(await receivers(hooks, eventFor('create-edit-delete-user', 'create'))).toEqual([])
    expect(await receivers(hooks, eventFor('create-edit-delete-property', 'create'))).toEqual([id])
  })

  it('writes in one company leave another company\'s matches right', async () => {
    const hooks = engine()
    const mine = await add(hooks, 'create-edit-delete-task')
    const theirs = await add(hooks, 'create-edit-delete-task', {}, OTHER_COMPANY)
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual([mine])
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create', OTHER_COMPANY))).toEqual([theirs])
    await hooks.registry.update(OTHER_COMPANY, theirs, { isActive: false })
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create'))).toEqual([mine])
    expect(await receivers(hooks, eventFor('create-edit-delete-task', 'create', OTHER_COMPANY))).toEqual([])
  })
})

describe('createMatcher over a store', () => {
  const event = (data: Record<string, unknown> = {}): COTEvent =>
    toEvent({ company: COMPANY, type: 'COTTask', event: 'edit', data: { _id: TASK, taskGroup: TASK_GROUP, ...data } })

  it('matches the active webhooks of the event\'s company, trigger and context', async () => {
    const store = memoryStore()
    const yes = webhookRecord(COMPANY, { context: { survey: '', group: '', taskGroup: TASK_GROUP } })
    const any = webhookRecord(COMPANY)
    const off = webhookRecord(COMPANY, { isActive: false })
    const other = webhookRecord(OTHER_COMPANY)
    const users = webhookRecord(COMPANY, { trigger: 'create-edit-delete-user' })
    const elsewhere = webhookRecord(COMPANY, { context: { survey: '', group: '', taskGroup: OTHER_TASK_GROUP } })
    for (const record of [yes, any, off, other, users, elsewhere]) expect(await store.insertWebhook(record)).toBe(true)
    const matched = await createMatcher({ store }).match(event())
    expect(matched.map((w) => w._id).sort()).toEqual(sorted([yes.webhook._id, any.webhook._id]))
  })

  it('keeps a company\'s list cached until invalidate(company), then reads the store again', async () => {
    const store = memoryStore()
    const first = webhookRecord(COMPANY)
    await store.insertWebhook(first)
    const matcher = createMatcher({ store })
    expect((await matcher.match(event())).map((w) => w._id)).toEqual([first.webhook._id])

    // Written behind the matcher's back: not seen until invalidated.
    const second = webhookRecord(COMPANY)
    await store.insertWebhook(second)
    expect((await matcher.match(event())).map((w) => w._id)).toEqual([first.webhook._id])

    matcher.invalidate(OTHER_COMPANY)
    expect((await matcher.match(event())).map((w) => w._id)).toEqual([first.webhook._id])

    matcher.invalidate(COMPANY)
    expect((await matcher.match(event())).map((w) => w._id).sort()).toEqual(sorted([first.webhook._id, second.webhook._id]))
  })

  it('reads the store once per (company, trigger) while the cache holds', async () => {
    const inner = memoryStore()
    await inner.insertWebhook(webhookRecord(COMPANY))
    const reads: string[] = []
    const store: Store = {
      ...inner,
      activeWebhooks: async (company, trigger) => {
        reads.push(`${company}/${trigger}`)
        return inner.activeWebhooks(company, trigger)
      },
    }
    const matcher = createMatcher({ store })
    await matcher.match(event())
    await matcher.match(event({ taskGroup: OTHER_TASK_GROUP }))
    await matcher.match(event())
    expect(reads).toEqual([`${COMPANY}/create-edit-delete-task`])
  })

  it('a write that lands while a list is being read does not leave the old list cached', async () => {
    const inner = memoryStore()
    const first = webhookRecord(COMPANY)
    await inner.insertWebhook(first)
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let held = true
    let read!: () => void
    const listRead = new Promise<void>((resolve) => (read = resolve))
    const store: Store = {
      ...inner,
      activeWebhooks: async (company, trigger) => {
        const list = await inner.activeWebhooks(company, trigger)
        if (held) {
          read()
          await gate
        }
        return list
      },
    }
    const matcher = createMatcher({ store })
    const pending = matcher.match(event())
    // The read above has its (old) list; a write and its invalidation happen before it returns.
    await listRead
    const second = webhookRecord(COMPANY)
    await inner.insertWebhook(second)
    matcher.invalidate(COMPANY)
    held = false
    release()
    expect((await pending).map((w) => w._id)).toEqual([first.webhook._id])
    expect((await matcher.match(event())).map((w) => w._id).sort()).toEqual(sorted([first.webhook._id, second.webhook._id]))
  })

  it('an event whose type and event are not in the trigger table matches nothing', async () => {
    const store = memoryStore()
    await store.insertWebhook(webhookRecord(COMPANY, { trigger: 'logout-user' }))
    await store.insertWebhook(webhookRecord(COMPANY, { trigger: 'create-edit-delete-task' }))
    const matcher = createMatcher({ store })
    const odd = { ...event(), type: 'Auth', event: 'create' } as unknown as COTEvent
    expect(await matcher.match(odd)).toEqual([])
  })
})
