import { objectId } from 'cotwebhook'

/**
 * The host's own data, kept in memory for the example: tasks, users, survey executions and
 * properties per company. A real host has its database here.
 */

export type Kind = 'tasks' | 'users' | 'surveys' | 'properties'
export type Entity = Record<string, unknown> & { _id: string }

/** The COTEvent `type` of each kind of entity. */
export const EVENT_TYPE = { tasks: 'COTTask', users: 'COTUser', surveys: 'COTSurvey', properties: 'COTProperty' } as const

export class Domain {
  private readonly data = new Map<string, Entity>()

  create(company: string, kind: Kind, fields: Record<string, unknown>): Entity {
    const entity: Entity = { ...fields, _id: objectId() }
    this.data.set(this.key(company, kind, entity._id), entity)
    return entity
  }

  get(company: string, kind: Kind, id: string): Entity | undefined {
    return this.data.get(this.key(company, kind, id))
  }

  /** Applies changes and returns the entity with a JSON-pointer diff of what changed. */
  edit(company: string, kind: Kind, id: string, changes: Record<string, unknown>) {
    const entity = this.get(company, kind, id)
    if (!entity) return undefined
    const diff: Record<string, { previous: unknown; changedTo: unknown }> = {}
    for (const [field, value] of Object.entries(changes)) {
      if (field === '_id' || entity[field] === value) continue
      diff[`/${field}`] = { previous: entity[field] ?? null, changedTo: value }
      entity[field] = value
    }
    return { entity, diff }
  }

  delete(company: string, kind: Kind, id: string): Entity | undefined {
    const entity = this.get(company, kind, id)
    if (entity) this.data.delete(this.key(company, kind, id))
    return entity
  }

  private key(company: string, kind: Kind, id: string) {
    return `${company}/${kind}/${id}`
  }
}
