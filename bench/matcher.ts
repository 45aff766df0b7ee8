import { TRIGGERS, TRIGGER_NAMES, createMatcher, memoryStore, objectId, type COTEvent, type COTWebhook, type Trigger } from 'cotwebhook'
import { round, size, type Result } from './lib.js'

/**
 * 100,000 webhooks over 1,000 companies, every trigger, realistic contexts (half of the task
 * webhooks filter on one of ten task groups, a third of the survey ones on a survey or a group):
 * matches per second through the engine's matcher (warm cache) against a scan of all webhooks.
 */
export async function matcherBench(): Promise<Result> {
  const companies = Array.from({ length: size(1_000, 50) }, () => objectId())
  const perCompany = 100
  const groups = Array.from({ length: 10 }, () => objectId())
  const surveys = Array.from({ length: 5 }, () => objectId())
  const store = memoryStore()
  const all: COTWebhook[] = []
  let seed = 1
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647)
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!

  for (const company of companies) {
    for (let i = 0; i < perCompany; i++) {
      const trigger = TRIGGER_NAMES[i % TRIGGER_NAMES.length]!
      const context = { survey: '', group: '', taskGroup: '' }
      if (trigger === 'create-edit-delete-task' && random() < 0.5) context.taskGroup = pick(groups)
      if (trigger === 'create-edit-delete-survey' && random() < 0.33) context.survey = pick(surveys)
      if (trigger === 'create-edit-delete-survey' && random() < 0.33) context.group = pick(groups)
      const _id = objectId()
      const webhook: COTWebhook = {
        _id, company, isActive: random() > 0.1, trigger, url: 'https://example.com/hook', name: `w${i}`, code: `c${i}`, context, __v: 0, description: '',
      }
      all.push(webhook)
      await store.insertWebhook({ webhook, secrets: [] })
    }
  }

  const events: COTEvent[] = Array.from({ length: 4_096 }, () => {
    const trigger = pick(TRIGGER_NAMES) as Trigger
    const row = TRIGGERS[trigger]
    const data = trigger === 'logout-user' ? null : { _id: objectId(), taskGroup: pick(groups), surveyId: pick(surveys), group: pick(groups) }
    return { company: pick(companies), type: row.type, event: row.events[0]!, data, diff: {}, extraData: null, createdAt: new Date().toISOString() }
  })

  const matcher = createMatcher({ store })
  for (const company of companies) for (const event of events.slice(0, 5)) await matcher.match({ ...event, company }) // warm
  let matched = 0
  const n = size(400_000, 20_000)
  let start = performance.now()
  for (let i = 0; i < n; i++) matched += (await matcher.match(events[i & 4095]!)).length
  const fast = n / ((performance.now() - start) / 1000)

  // The naive way: look at every webhook for every event.
  const naive = (event: COTEvent) =>
    all.filter((w) => {
      if (w.company !== event.company || !w.isActive) return false
      const row = TRIGGERS[w.trigger]
      if (row.type !== event.type || !(row.events as readonly string[]).includes(event.event)) return false
      const data = (event.data ?? {}) as Record<string, unknown>
      return Object.entries(row.context).every(([field, key]) => {
        const value = w.context[field as keyof typeof w.context]
        return value === '' || value === data[key]
      })
    })
  const m = size(300, 100)
  let check = 0
  start = performance.now()
  for (let i = 0; i < m; i++) check += naive(events[i & 4095]!).length
  const slow = m / ((performance.now() - start) / 1000)
  // Same answers: the matcher finds what the scan finds.
  let agree = 0
  for (let i = 0; i < 200; i++) agree += naive(events[i]!).length === (await matcher.match(events[i]!)).length ? 1 : 0
  if (agree !== 200) throw new Error(`matcher and scan disagree on ${200 - agree} of 200 events`)

  return {
    name: 'matcher',
    value: Math.round(fast),
    unit: 'matches/s',
    baseline: Math.round(slow),
    ratio: round(fast / slow, 0),
    detail: `${all.length.toLocaleString('en')} webhooks over ${companies.length} companies; warm cache vs scanning all (${matched + check > 0 ? 'same answers' : ''})`,
  }
}
