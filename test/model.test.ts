import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  ConflictError,
  CONTEXT_FIELDS,
  TRIGGERS,
  TRIGGER_NAMES,
  ValidationError,
  contextApplies,
  createWebhooks,
  toEvent,
  type COTWebhook,
  type EmitInput,
  type Trigger,
  type WebhookInput,
  type Webhooks,
} from 'cotwebhook'

const COMPANY = '625bc5429a54e8868bd89be2'
const OTHER_COMPANY = '625bc5429a54e8868bd89bf9'
const TASK = '6261612a8f1e9999775c8be4'
const TASK_GROUP = '6261612a8f1e99002e5c8cce'
const SURVEY = '62685990d918fb5557f9f992'
const GROUP = '62685990d918fb5557f9f9a1'
const USER = '62742dd8a4b1c2d3e4f50617'
const ANY_ID = '507f1f77bcf86cd799439011'

const ALL_TRIGGERS = [
  'create-edit-delete-task',
  'create-edit-delete-survey',
  'create-edit-delete-user',
  'create-edit-delete-property',
  'logout-user',
] as const

// Which trigger each context field filters, as the reference's trigger table says.
const FILTERED_BY = {
  survey: 'create-edit-delete-survey',
  group: 'create-edit-delete-survey',
  taskGroup: 'create-edit-delete-task',
} as const

const OBJECT_ID_RULE = 'must be an ObjectId (24 lowercase hexadecimal characters)'
const CODE_RULE = 'code: only lowercase letters, digits and underscores'

let hooks: Webhooks

beforeEach(() => {
  hooks = createWebhooks({ allowPrivateNetworks: true })
})

afterEach(async () => {
  await hooks.close()
})

function input(overrides: Record<string, unknown> = {}): WebhookInput {
  return {
    name: 'Work orders',
    code: 'wo_update',
    trigger: 'create-edit-delete-task',
    url: 'https://example.com/hook',
    ...overrides,
  } as WebhookInput
}

async function create(overrides: Record<string, unknown> = {}, company = COMPANY): Promise<COTWebhook> {
  return (await hooks.registry.create(company, input(overrides))).webhook
}

/** Runs `run` and returns what it threw (sync or async); fails the test when nothing was thrown. */
async function thrown(run: () => unknown): Promise<unknown> {
  try {
    await run()
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection, but it resolved')
}

/** Expects a ValidationError whose message and `fields[field]` both carry `line`. */
async function expectInvalid(run: () => unknown, field: string, line: string): Promise<ValidationError> {
  const error = await thrown(run)
  expect(error).toBeInstanceOf(ValidationError)
  const validation = error as ValidationError
  expect(validation.code).toBe('validation_error')
  expect(validation.status).toBe(400)
  expect(validation.message).toContain(line)
  expect(validation.fields[field]).toContain(line)
  return validation
}

async function count(company = COMPANY): Promise<number> {
  return (await hooks.registry.list(company)).count
}

function taskEvent(overrides: Record<string, unknown> = {}) {
  return { company: COMPANY, type: 'COTTask', event: 'create', data: { _id: TASK, taskGroup: TASK_GROUP }, ...overrides }
}

describe('ObjectIds', () => {
  it('a created webhook gets a 24-hex-character _id and keeps its company', async () => {
    const webhook = await create()
    expect(webhook._id).toMatch(/^[0-9a-f]{24}$/)
    expect(webhook.company).toBe(COMPANY)
    expect(await hooks.registry.get(COMPANY, webhook._id)).toEqual(webhook)
  })

  for (const company of ['acme', COMPANY.toUpperCase(), COMPANY.slice(1), `${COMPANY}0`, '625bc5429a54e8868bd89bzz']) {
    it(`a company "${company}" that is not an ObjectId is refused on create`, async () => {
      const error = await thrown(() => hooks.registry.create(company, input()))
      expect(error).toBeInstanceOf(ValidationError)
      const validation = error as ValidationError
      expect(validation.message).toContain(`company: ${OBJECT_ID_RULE}`)
      expect(Object.values(validation.fields).flat()).toContain(`company: ${OBJECT_ID_RULE}`)
      expect(await count()).toBe(0)
    })
  }

  it('a webhook id that is not an ObjectId is refused on get and update, naming the id field', async () => {
    await expectInvalid(() => hooks.registry.get(COMPANY, 'not-an-id'), 'id', `id: ${OBJECT_ID_RULE}`)
    await expectInvalid(() => hooks.registry.update(COMPANY, TASK.toUpperCase(), { name: 'x' }), 'id', `id: ${OBJECT_ID_RULE}`)
  })

  it('an event company that is not an ObjectId is refused', async () => {
    await expectInvalid(() => toEvent(taskEvent({ company: 'acme' })), 'company', `company: ${OBJECT_ID_RULE}`)
  })
})

describe('trigger', () => {
  it('the trigger table has exactly the five Cotalker triggers', () => {
    expect([...TRIGGER_NAMES].sort()).toEqual([...ALL_TRIGGERS].sort())
  })

  for (const trigger of ALL_TRIGGERS) {
    it(`a webhook can be created with trigger ${trigger}`, async () => {
      const webhook = await create({ trigger, code: trigger.replaceAll('-', '_') })
      expect(webhook.trigger).toBe(trigger)
      expect((await hooks.registry.get(COMPANY, webhook._id)).trigger).toBe(trigger)
    })
  }

  it('an unknown trigger is refused, and the message lists the five', async () => {
    await expectInvalid(
      () => create({ trigger: 'create-edit-delete-channel' }),
      'trigger',
      `trigger: must be one of: ${ALL_TRIGGERS.join(', ')}`,
    )
    expect(await count()).toBe(0)
  })

  it('an unknown trigger is refused on update and the webhook is left as it was', async () => {
    const webhook = await create()
    await expectInvalid(
      () => hooks.registry.update(COMPANY, webhook._id, { trigger: 'task' as Trigger }),
      'trigger',
      `trigger: must be one of: ${ALL_TRIGGERS.join(', ')}`,
    )
    expect(await hooks.registry.get(COMPANY, webhook._id)).toEqual(webhook)
  })
})

describe('code', () => {
  for (const [what, code] of [
    ['uppercase letters', 'WO_Update'],
    ['a dash', 'wo-update'],
    ['a space', 'wo update'],
    ['a dot', 'wo.update'],
    ['an accented letter', 'órden'],
  ] as const) {
    it(`a code with ${what} is refused: "${CODE_RULE}"`, async () => {
      const error = await expectInvalid(() => create({ code }), 'code', CODE_RULE)
      expect(error.fields).toEqual({ code: [CODE_RULE] })
      expect(await count()).toBe(0)
    })
  }

  it('an empty code is refused as required', async () => {
    await expectInvalid(() => create({ code: '' }), 'code', 'code: is required')
    expect(await count()).toBe(0)
  })

  it('a code longer than 64 characters is refused; 64 is accepted', async () => {
    await expectInvalid(() => create({ code: 'a'.repeat(65) }), 'code', 'code: must be at most 64 characters')
    expect(await count()).toBe(0)
    const webhook = await create({ code: 'a'.repeat(64) })
    expect(webhook.code).toBe('a'.repeat(64))
  })

  it('lowercase letters, digits and underscores are accepted', async () => {
    const webhook = await create({ code: 'wo_update_2024' })
    expect(webhook.code).toBe('wo_update_2024')
  })

  it('a code already used in the company is a ConflictError and nothing is added', async () => {
    const first = await create({ code: 'wo_update' })
    const error = await thrown(() => create({ code: 'wo_update', name: 'Another', trigger: 'create-edit-delete-user' }))
    expect(error).toBeInstanceOf(ConflictError)
    const conflict = error as ConflictError
    expect(conflict.code).toBe('conflict')
    expect(conflict.status).toBe(409)
    expect(conflict.field).toBe('code')
    expect(conflict.message).toBe('code: "wo_update" is already used by another webhook of this company')
    const { webhooks, count: total } = await hooks.registry.list(COMPANY)
    expect(total).toBe(1)
    expect(webhooks.map((w) => w._id)).toEqual([first._id])
  })

  it('a code stays taken while the webhook holding it is inactive', async () => {
    const first = await create({ code: 'wo_update' })
    await hooks.registry.update(COMPANY, first._id, { isActive: false })
    await expect(create({ code: 'wo_update' })).rejects.toBeInstanceOf(ConflictError)
    expect(await count()).toBe(1)
  })

  it('the same code in another company is fine', async () => {
    const mine = await create({ code: 'wo_update' })
    const theirs = await create({ code: 'wo_update' }, OTHER_COMPANY)
    expect(theirs.code).toBe('wo_update')
    expect(theirs.company).toBe(OTHER_COMPANY)
    expect(theirs._id).not.toBe(mine._id)
    expect(await count(COMPANY)).toBe(1)
    expect(await count(OTHER_COMPANY)).toBe(1)
  })

  it('an update that repeats the saved code is accepted', async () => {
    const webhook = await create({ code: 'wo_update' })
    const updated = await hooks.registry.update(COMPANY, webhook._id, { code: 'wo_update', name: 'Renamed' })
    expect(updated.code).toBe('wo_update')
    expect(updated.name).toBe('Renamed')
    expect(updated.__v).toBe(1)
  })

  it('an update that changes the code is refused: "code: cannot be changed once saved"', async () => {
    const webhook = await create({ code: 'wo_update' })
    const error = await expectInvalid(
      () => hooks.registry.update(COMPANY, webhook._id, { code: 'wo_changed', name: 'Renamed' }),
      'code',
      'code: cannot be changed once saved',
    )
    expect(error.fields).toEqual({ code: ['code: cannot be changed once saved'] })
    const stored = await hooks.registry.get(COMPANY, webhook._id)
    expect(stored.code).toBe('wo_update')
    expect(stored.name).toBe('Work orders')
    expect(stored.__v).toBe(0)
  })

  it('an invalid code in a patch is refused by the code rule', async () => {
    const webhook = await create()
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { code: 'WO' }), 'code', CODE_RULE)
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
  })
})

describe('context', () => {
  it('a webhook created without context gets every context field as ""', async () => {
    const webhook = await create()
    expect(webhook.context).toEqual({ survey: '', group: '', taskGroup: '' })
  })

  it('a partial context is completed with ""', async () => {
    const webhook = await create({ trigger: 'create-edit-delete-survey', context: { survey: SURVEY } })
    expect(webhook.context).toEqual({ survey: SURVEY, group: '', taskGroup: '' })
  })

  it('a taskGroup on a user trigger is refused', async () => {
    const line = 'context.taskGroup: must be "" for trigger create-edit-delete-user (it filters create-edit-delete-task only)'
    const error = await expectInvalid(
      () => create({ trigger: 'create-edit-delete-user', context: { taskGroup: TASK_GROUP } }),
      'context.taskGroup',
      line,
    )
    expect(error.fields).toEqual({ 'context.taskGroup': [line] })
    expect(await count()).toBe(0)
  })

  it('a survey on a task trigger is refused', async () => {
    await expectInvalid(
      () => create({ trigger: 'create-edit-delete-task', context: { survey: SURVEY } }),
      'context.survey',
      'context.survey: must be "" for trigger create-edit-delete-task (it filters create-edit-delete-survey only)',
    )
    expect(await count()).toBe(0)
  })

  it('every misplaced field is reported at once', async () => {
    const error = await thrown(() => create({ trigger: 'logout-user', context: { survey: SURVEY, group: GROUP, taskGroup: TASK_GROUP } }))
    expect(error).toBeInstanceOf(ValidationError)
    expect(Object.keys((error as ValidationError).fields).sort()).toEqual(['context.group', 'context.survey', 'context.taskGroup'])
  })

  for (const trigger of ALL_TRIGGERS) {
    for (const field of CONTEXT_FIELDS) {
      const applies = contextApplies(trigger, field)
      it(`context.${field} = "" is accepted for ${trigger}`, async () => {
        const webhook = await create({ trigger, context: { [field]: '' } })
        expect(webhook.context[field]).toBe('')
      })
      if (applies) {
        it(`context.${field} = an ObjectId is accepted for ${trigger}, which it filters`, async () => {
          const webhook = await create({ trigger, context: { [field]: ANY_ID } })
          expect(webhook.context[field]).toBe(ANY_ID)
        })
        it(`context.${field} that is neither "" nor an ObjectId is refused for ${trigger}`, async () => {
          await expectInvalid(
            () => create({ trigger, context: { [field]: 'survey-42' } }),
            `context.${field}`,
            `context.${field}: must be "" or an ObjectId (24 lowercase hexadecimal characters)`,
          )
          await expectInvalid(
            () => create({ trigger, context: { [field]: ANY_ID.toUpperCase() } }),
            `context.${field}`,
            `context.${field}: must be "" or an ObjectId (24 lowercase hexadecimal characters)`,
          )
          expect(await count()).toBe(0)
        })
      } else {
        it(`context.${field} = an ObjectId is refused for ${trigger}, which it does not filter`, async () => {
          await expectInvalid(
            () => create({ trigger, context: { [field]: ANY_ID } }),
            `context.${field}`,
            `context.${field}: must be "" for trigger ${trigger} (it filters ${FILTERED_BY[field]} only)`,
          )
          expect(await count()).toBe(0)
        })
      }
    }
  }

  it('the context rules follow the trigger table', () => {
    expect(Object.keys(TRIGGERS['create-edit-delete-task'].context)).toEqual(['taskGroup'])
    expect(Object.keys(TRIGGERS['create-edit-delete-survey'].context).sort()).toEqual(['group', 'survey'])
    for (const trigger of ['create-edit-delete-user', 'create-edit-delete-property', 'logout-user'] as const) {
      expect(Object.keys(TRIGGERS[trigger].context)).toEqual([])
    }
  })

  it('an unknown context key is refused', async () => {
    const error = await expectInvalid(
      () => create({ context: { taskGroup: '', channel: ANY_ID } }),
      'context.channel',
      'context.channel: unknown field',
    )
    expect(error.fields).toEqual({ 'context.channel': ['context.channel: unknown field'] })
    expect(await count()).toBe(0)
  })

  it('a context that is not an object is refused', async () => {
    await expectInvalid(() => create({ context: null }), 'context', 'context: must be an object')
    await expectInvalid(() => create({ context: TASK_GROUP }), 'context', 'context: must be an object')
    expect(await count()).toBe(0)
  })
})

describe('PATCH context', () => {
  it('a patched context field is merged with the stored ones', async () => {
    const webhook = await create({ trigger: 'create-edit-delete-survey', context: { survey: SURVEY } })
    const updated = await hooks.registry.update(COMPANY, webhook._id, { context: { group: GROUP } })
    expect(updated.context).toEqual({ survey: SURVEY, group: GROUP, taskGroup: '' })
    const cleared = await hooks.registry.update(COMPANY, webhook._id, { context: { survey: '' } })
    expect(cleared.context).toEqual({ survey: '', group: GROUP, taskGroup: '' })
  })

  it('changing the trigger from task to user fails while taskGroup is set, until taskGroup is sent as ""', async () => {
    const webhook = await create({ context: { taskGroup: TASK_GROUP } })
    await expectInvalid(
      () => hooks.registry.update(COMPANY, webhook._id, { trigger: 'create-edit-delete-user' }),
      'context.taskGroup',
      'context.taskGroup: must be "" for trigger create-edit-delete-user (it filters create-edit-delete-task only)',
    )
    expect(await hooks.registry.get(COMPANY, webhook._id)).toEqual(webhook)

    const updated = await hooks.registry.update(COMPANY, webhook._id, {
      trigger: 'create-edit-delete-user',
      context: { taskGroup: '' },
    })
    expect(updated.trigger).toBe('create-edit-delete-user')
    expect(updated.context).toEqual({ survey: '', group: '', taskGroup: '' })
    expect(updated.__v).toBe(1)
  })

  it('a patch that sets a context field the trigger does not use is refused', async () => {
    const webhook = await create()
    await expectInvalid(
      () => hooks.registry.update(COMPANY, webhook._id, { context: { group: GROUP } }),
      'context.group',
      'context.group: must be "" for trigger create-edit-delete-task (it filters create-edit-delete-survey only)',
    )
    expect((await hooks.registry.get(COMPANY, webhook._id)).context).toEqual({ survey: '', group: '', taskGroup: '' })
  })

  it('an unknown context key in a patch is refused', async () => {
    const webhook = await create()
    await expectInvalid(
      () => hooks.registry.update(COMPANY, webhook._id, { context: { channel: '' } } as never),
      'context.channel',
      'context.channel: unknown field',
    )
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
  })
})

describe('isActive', () => {
  it('defaults to true on create', async () => {
    expect((await create()).isActive).toBe(true)
  })

  it('false on create is kept', async () => {
    const webhook = await create({ isActive: false })
    expect(webhook.isActive).toBe(false)
    expect((await hooks.registry.get(COMPANY, webhook._id)).isActive).toBe(false)
  })

  it('an update that omits it keeps the stored value', async () => {
    const webhook = await create({ isActive: false })
    const updated = await hooks.registry.update(COMPANY, webhook._id, { name: 'Renamed' })
    expect(updated.isActive).toBe(false)
  })

  it('a value that is not a boolean is refused', async () => {
    await expectInvalid(() => create({ isActive: 'yes' }), 'isActive', 'isActive: must be true or false')
    const webhook = await create()
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { isActive: 1 } as never), 'isActive', 'isActive: must be true or false')
    expect(await hooks.registry.get(COMPANY, webhook._id)).toEqual(webhook)
  })
})

describe('__v', () => {
  it('starts at 0 and goes up by one on every update', async () => {
    const webhook = await create()
    expect(webhook.__v).toBe(0)
    expect((await hooks.registry.update(COMPANY, webhook._id, { name: 'One' })).__v).toBe(1)
    expect((await hooks.registry.update(COMPANY, webhook._id, { isActive: false })).__v).toBe(2)
    expect((await hooks.registry.update(COMPANY, webhook._id, { description: 'three' })).__v).toBe(3)
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(3)
  })

  it('an update carrying the current __v is applied', async () => {
    const webhook = await create()
    await hooks.registry.update(COMPANY, webhook._id, { name: 'One' })
    const updated = await hooks.registry.update(COMPANY, webhook._id, { name: 'Two', __v: 1 })
    expect(updated.name).toBe('Two')
    expect(updated.__v).toBe(2)
  })

  it('an update carrying a stale __v is a ConflictError and changes nothing', async () => {
    const webhook = await create()
    await hooks.registry.update(COMPANY, webhook._id, { name: 'One' })
    const error = await thrown(() => hooks.registry.update(COMPANY, webhook._id, { name: 'Lost', __v: 0 }))
    expect(error).toBeInstanceOf(ConflictError)
    const conflict = error as ConflictError
    expect(conflict.field).toBe('__v')
    expect(conflict.status).toBe(409)
    expect(conflict.message).toBe('__v: version 0 is stale (it is at __v 1); read the webhook again and retry')
    const stored = await hooks.registry.get(COMPANY, webhook._id)
    expect(stored.name).toBe('One')
    expect(stored.__v).toBe(1)
  })

  it('a __v from the future is stale too', async () => {
    const webhook = await create()
    await expect(hooks.registry.update(COMPANY, webhook._id, { name: 'x', __v: 5 })).rejects.toBeInstanceOf(ConflictError)
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
  })

  it('a __v that is not a non-negative integer is refused', async () => {
    const webhook = await create()
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { __v: -1 }), '__v', '__v: must be 0 or more')
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { __v: 0.5 }), '__v', '__v: must be an integer')
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { __v: '0' } as never), '__v', '__v: must be a number')
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
  })
})

describe('unknown and missing fields', () => {
  for (const field of ['foo', '_id', 'company', '__v', 'secret']) {
    it(`"${field}" on create is refused as an unknown field`, async () => {
      const error = await expectInvalid(() => create({ [field]: ANY_ID }), field, `${field}: unknown field`)
      expect(error.fields).toEqual({ [field]: [`${field}: unknown field`] })
      expect(await count()).toBe(0)
    })
  }

  for (const field of ['foo', '_id', 'company', 'secret']) {
    it(`"${field}" in a patch is refused as an unknown field`, async () => {
      const webhook = await create()
      const error = await expectInvalid(
        () => hooks.registry.update(COMPANY, webhook._id, { name: 'Renamed', [field]: ANY_ID } as never),
        field,
        `${field}: unknown field`,
      )
      expect(error.fields).toEqual({ [field]: [`${field}: unknown field`] })
      expect(await hooks.registry.get(COMPANY, webhook._id)).toEqual(webhook)
    })
  }

  it('an empty create names every required field', async () => {
    const error = await thrown(() => hooks.registry.create(COMPANY, {} as WebhookInput))
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as ValidationError).fields).toEqual({
      name: ['name: is required'],
      code: ['code: is required'],
      trigger: ['trigger: is required'],
      url: ['url: is required'],
    })
    expect(await count()).toBe(0)
  })

  for (const field of ['name', 'code', 'trigger', 'url'] as const) {
    it(`a create without ${field} is refused: "${field}: is required"`, async () => {
      const body: Record<string, unknown> = { ...input() }
      delete body[field]
      const error = await expectInvalid(() => hooks.registry.create(COMPANY, body as unknown as WebhookInput), field, `${field}: is required`)
      expect(error.fields).toEqual({ [field]: [`${field}: is required`] })
      expect(await count()).toBe(0)
    })
  }

  it('a create body that is not an object is refused', async () => {
    await expectInvalid(() => hooks.registry.create(COMPANY, 'webhook' as never), '', 'webhook: must be an object')
    expect(await count()).toBe(0)
  })

  it('a blank name is refused and a name is trimmed', async () => {
    await expectInvalid(() => create({ name: '   ' }), 'name', 'name: must not be empty')
    expect((await create({ name: '  Work orders  ' })).name).toBe('Work orders')
  })

  it('a description defaults to "" and is kept', async () => {
    expect((await create()).description).toBe('')
    expect((await create({ code: 'other', description: 'Sends work orders' })).description).toBe('Sends work orders')
  })

  it('a patch body that is an array is refused as not an object and changes nothing', async () => {
    const webhook = await create()
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, [] as never), '', 'webhook: must be an object')
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
  })
})

describe('url', () => {
  for (const url of ['/hooks/cotalker', 'example.com/hook', '', 'https//example.com']) {
    it(`"${url}" is refused: "url: must be an absolute URL"`, async () => {
      await expectInvalid(() => create({ url }), 'url', 'url: must be an absolute URL')
      expect(await count()).toBe(0)
    })
  }

  it('a relative url in a patch is refused and the url is kept', async () => {
    const webhook = await create()
    await expectInvalid(() => hooks.registry.update(COMPANY, webhook._id, { url: '/elsewhere' }), 'url', 'url: must be an absolute URL')
    const stored = await hooks.registry.get(COMPANY, webhook._id)
    expect(stored.url).toBe('https://example.com/hook')
    expect(stored.__v).toBe(0)
  })

  it('a refused url is named beside the other refused fields, not only once they are right', async () => {
    const error = (await hooks.registry.create(COMPANY, input({ code: 'Bad Code', url: 'localhost:4000/hooks' })).catch((e: unknown) => e)) as ValidationError
    expect(error).toBeInstanceOf(ValidationError)
    expect(Object.keys(error.fields).sort()).toEqual(['code', 'url'])
    expect(error.fields.url).toEqual(['url: scheme localhost is not allowed (http or https only); did you mean http://localhost:4000/hooks?'])
    expect(await count()).toBe(0)
  })

  it('an absolute url is stored as given', async () => {
    expect((await create({ url: 'https://hooks.example.com/cotalker?x=1' })).url).toBe('https://hooks.example.com/cotalker?x=1')
  })
})

describe('failed writes change nothing', () => {
  it('a failed create adds nothing and a failed update leaves the stored webhook as it was', async () => {
    const webhook = await create({ context: { taskGroup: TASK_GROUP } })
    const attempts: (() => unknown)[] = [
      () => create({ code: 'Bad' }),
      () => create({ code: 'wo_update' }),
      () => create({ code: 'fresh', trigger: 'create-edit-delete-user', context: { taskGroup: TASK_GROUP } }),
      () => hooks.registry.update(COMPANY, webhook._id, { name: 'x', code: 'other' }),
      () => hooks.registry.update(COMPANY, webhook._id, { name: 'x', __v: 9 }),
      () => hooks.registry.update(COMPANY, webhook._id, { name: 'x', trigger: 'logout-user' }),
      () => hooks.registry.update(COMPANY, webhook._id, { name: 'x', url: 'nope' }),
    ]
    for (const attempt of attempts) await expect(thrown(attempt)).resolves.toBeInstanceOf(Error)
    const { webhooks, count: total } = await hooks.registry.list(COMPANY)
    expect(total).toBe(1)
    expect(webhooks).toEqual([webhook])
  })
})

describe('toEvent and emit', () => {
  const pairs: [string, string][] = TRIGGER_NAMES.flatMap((t) => TRIGGERS[t].events.map((e) => [TRIGGERS[t].type, e] as [string, string]))

  it('the type/event pairs are exactly those of the trigger table', () => {
    expect(pairs.map(([type, event]) => `${type}:${event}`).sort()).toEqual(
      [
        'Auth:logout',
        'COTProperty:create', 'COTProperty:delete', 'COTProperty:edit',
        'COTSurvey:create', 'COTSurvey:delete', 'COTSurvey:edit',
        'COTTask:create', 'COTTask:delete', 'COTTask:edit',
        'COTUser:create', 'COTUser:delete', 'COTUser:edit',
      ].sort(),
    )
  })

  const validData: Record<string, unknown> = {
    COTTask: { _id: TASK, taskGroup: TASK_GROUP },
    COTSurvey: { surveyId: SURVEY, group: GROUP, surveyData: [ANY_ID] },
    COTUser: { _id: USER },
    COTProperty: { _id: ANY_ID },
    Auth: null,
  }

  for (const [type, event] of pairs) {
    it(`a ${type} ${event} event with valid data is accepted`, () => {
      const result = toEvent({ company: COMPANY, type, event, data: validData[type] })
      expect(result.type).toBe(type)
      expect(result.event).toBe(event)
      expect(result.data).toEqual(validData[type])
    })
  }

  it('Auth + create is refused: Auth events are logout only', async () => {
    const error = await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'create', data: null }),
      'event',
      'event: Auth events are logout, not create',
    )
    expect(error.fields).toEqual({ event: ['event: Auth events are logout, not create'] })
  })

  it('COTTask + logout is refused: task events are create, edit, delete', async () => {
    await expectInvalid(
      () => toEvent(taskEvent({ event: 'logout' })),
      'event',
      'event: COTTask events are create, edit, delete, not logout',
    )
  })

  it('an unknown type or event is refused with the allowed values', async () => {
    await expectInvalid(
      () => toEvent(taskEvent({ type: 'COTChannel' })),
      'type',
      'type: must be one of: COTTask, COTSurvey, COTUser, COTProperty, Auth',
    )
    await expectInvalid(() => toEvent(taskEvent({ event: 'update' })), 'event', 'event: must be one of: create, edit, delete, logout')
  })

  it('data that is not an object is refused', async () => {
    for (const data of ['task', 42, true]) {
      await expectInvalid(
        () => toEvent({ company: COMPANY, type: 'COTUser', event: 'edit', data }),
        'data',
        'data: must be an object or null',
      )
    }
  })

  it('data that is an array is refused', async () => {
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'COTUser', event: 'edit', data: [] }),
      'data',
      'data: must be an object or null',
    )
  })

  it('extraData is refused on anything but a logout', async () => {
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: USER }, extraData: { userId: USER } }),
      'extraData',
      'extraData: must be null except on a logout',
    )
    expect(toEvent({ company: COMPANY, type: 'COTUser', event: 'edit', data: { _id: USER }, extraData: null }).extraData).toBeNull()
  })

  it('data is required', async () => {
    await expectInvalid(() => toEvent({ company: COMPANY, type: 'COTUser', event: 'create' }), 'data', 'data: is required')
  })

  it('null data is refused except on logout', async () => {
    for (const type of ['COTTask', 'COTSurvey', 'COTUser', 'COTProperty']) {
      await expectInvalid(
        () => toEvent({ company: COMPANY, type, event: 'delete', data: null }),
        'data',
        `data: must be the ${type} object, not null`,
      )
    }
  })

  it('a logout must carry null data', async () => {
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: { _id: USER } }),
      'data',
      'data: must be null for a logout',
    )
    expect(toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null }).data).toBeNull()
  })

  it('a task event must carry an ObjectId taskGroup', async () => {
    const line = 'data.taskGroup: must be an ObjectId (create-edit-delete-task webhooks filter on context.taskGroup)'
    for (const data of [{ _id: TASK }, { _id: TASK, taskGroup: '' }, { _id: TASK, taskGroup: 'group-1' }, { _id: TASK, taskGroup: 7 }, { _id: TASK, taskGroup: TASK_GROUP.toUpperCase() }]) {
      const error = await expectInvalid(() => toEvent(taskEvent({ data })), 'data.taskGroup', line)
      expect(error.fields).toEqual({ 'data.taskGroup': [line] })
    }
  })

  it('a task event whose taskGroup is an array holding an ObjectId is refused', async () => {
    await expectInvalid(
      () => toEvent(taskEvent({ data: { _id: TASK, taskGroup: [TASK_GROUP] } })),
      'data.taskGroup',
      'data.taskGroup: must be an ObjectId (create-edit-delete-task webhooks filter on context.taskGroup)',
    )
  })

  it('a survey event must carry ObjectIds surveyId and group', async () => {
    const surveyLine = 'data.surveyId: must be an ObjectId (create-edit-delete-survey webhooks filter on context.survey)'
    const groupLine = 'data.group: must be an ObjectId (create-edit-delete-survey webhooks filter on context.group)'
    const both = await thrown(() => toEvent({ company: COMPANY, type: 'COTSurvey', event: 'create', data: { surveyData: [] } }))
    expect(both).toBeInstanceOf(ValidationError)
    expect((both as ValidationError).fields).toEqual({ 'data.surveyId': [surveyLine], 'data.group': [groupLine] })

    const noSurvey = await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'COTSurvey', event: 'edit', data: { group: GROUP } }),
      'data.surveyId',
      surveyLine,
    )
    expect(Object.keys(noSurvey.fields)).toEqual(['data.surveyId'])
    const noGroup = await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'COTSurvey', event: 'delete', data: { surveyId: SURVEY, group: 'g' } }),
      'data.group',
      groupLine,
    )
    expect(Object.keys(noGroup.fields)).toEqual(['data.group'])
  })

  it('a logout extraData { userId, timestamp } is kept when valid', () => {
    const event = toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: { userId: USER, timestamp: 1651781080084 } })
    expect(event.extraData).toEqual({ userId: USER, timestamp: 1651781080084 })
  })

  it('a logout extraData is validated when present', async () => {
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: { userId: 'u1', timestamp: 1 } }),
      'extraData.userId',
      `extraData.userId: ${OBJECT_ID_RULE}`,
    )
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: { userId: USER, timestamp: '2022-05-05' } }),
      'extraData.timestamp',
      'extraData.timestamp: must be a number (epoch time)',
    )
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: { userId: USER } }),
      'extraData.timestamp',
      'extraData.timestamp: is required',
    )
    await expectInvalid(
      () => toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: 'user' }),
      'extraData',
      'extraData: must be an object or null',
    )
  })

  it('a logout without extraData gets extraData null', () => {
    expect(toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null }).extraData).toBeNull()
    expect(toEvent({ company: COMPANY, type: 'Auth', event: 'logout', data: null, extraData: null }).extraData).toBeNull()
  })

  it('createdAt defaults to the given now, as ISO 8601 with milliseconds and Z', () => {
    const event = toEvent(taskEvent(), new Date(Date.UTC(2022, 3, 27, 21, 28, 15, 186)))
    expect(event.createdAt).toBe('2022-04-27T21:28:15.186Z')
  })

  it('createdAt defaults to the current time', () => {
    const before = Date.now()
    const event = toEvent(taskEvent())
    const at = Date.parse(event.createdAt)
    expect(at).toBeGreaterThanOrEqual(before)
    expect(at).toBeLessThanOrEqual(Date.now())
    expect(event.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  it('createdAt is accepted as an ISO string or a Date and normalised', () => {
    expect(toEvent(taskEvent({ createdAt: '2022-04-27T21:28:15.186Z' })).createdAt).toBe('2022-04-27T21:28:15.186Z')
    expect(toEvent(taskEvent({ createdAt: '2022-04-27T21:28:15Z' })).createdAt).toBe('2022-04-27T21:28:15.000Z')
    expect(toEvent(taskEvent({ createdAt: '2022-04-27T23:28:15.186+02:00' })).createdAt).toBe('2022-04-27T21:28:15.186Z')
    expect(toEvent(taskEvent({ createdAt: new Date(0) })).createdAt).toBe('1970-01-01T00:00:00.000Z')
  })

  it('a createdAt that is not a timestamp is refused', async () => {
    await expectInvalid(() => toEvent(taskEvent({ createdAt: new Date('nope') })), 'createdAt', 'createdAt: must be an ISO 8601 timestamp or a Date')
    for (const createdAt of ['yesterday', 1651781080084]) {
      const error = await thrown(() => toEvent(taskEvent({ createdAt })))
      expect(error).toBeInstanceOf(ValidationError)
      expect(Object.keys((error as ValidationError).fields)).toEqual(['createdAt'])
    }
  })

  it('diff defaults to {} and extraData to null; the event has exactly the COTEvent fields', () => {
    const event = toEvent(taskEvent({ event: 'edit' }), new Date(0))
    expect(event).toEqual({
      company: COMPANY,
      type: 'COTTask',
      event: 'edit',
      data: { _id: TASK, taskGroup: TASK_GROUP },
      diff: {},
      extraData: null,
      createdAt: '1970-01-01T00:00:00.000Z',
    })
  })

  it('a diff keyed by JSON pointer is kept; an entry without previous/changedTo shape is refused', async () => {
    const diff = { '/name': { previous: 'Old', changedTo: 'New' } }
    expect(toEvent(taskEvent({ event: 'edit', diff })).diff).toEqual(diff)
    const error = await thrown(() => toEvent(taskEvent({ event: 'edit', diff: { '/name': 'New' } })))
    expect(error).toBeInstanceOf(ValidationError)
    expect(Object.keys((error as ValidationError).fields)).toEqual(['diff./name'])
  })

  it('emit() refuses an invalid event with the same ValidationError and delivers nothing', async () => {
    const webhook = await create({ url: 'http://127.0.0.1:9/hook' })
    await expectInvalid(
      () => hooks.emit({ company: COMPANY, type: 'COTTask', event: 'create', data: { _id: TASK } } as unknown as EmitInput),
      'data.taskGroup',
      'data.taskGroup: must be an ObjectId (create-edit-delete-task webhooks filter on context.taskGroup)',
    )
    expect(await hooks.logs(COMPANY, webhook._id)).toEqual([])
  })
})
