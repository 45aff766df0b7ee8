import type { Store } from 'cotwebhook'
import { SCHEMA_VERSION, schemaError } from './schema.js'

/** What both SQL stores add to the contract. */
export interface SqlStore extends Store {
  /** Creates the tables and indexes if missing; safe to run on every start. */
  migrate(): Promise<void>
  /** Releases what the store opened itself (a connection, a LISTEN client); what you passed stays open. */
  close(): Promise<void>
}

/**
 * Checks the schema version once, before a store's first use: a failed check is tried again on the
 * next call (the database may come up later), and `migrate()` marks it passed.
 */
export function schemaGate(store: string, readVersion: () => Promise<string | undefined>, migrate?: () => Promise<void>) {
  let checked: Promise<void> | undefined
  return {
    /** Resolves once the schema is known to be at the current version (created first, with `migrate`). */
    ready(): Promise<void> {
      checked ??= readVersion().then(async (version) => {
        if (version === String(SCHEMA_VERSION)) return
        if (version === undefined && migrate) return migrate()
        throw schemaError(store, version)
      })
      return checked.catch((error: unknown) => {
        checked = undefined
        throw error
      })
    },
    /** The schema was just created or upgraded. */
    passed(): void {
      checked = Promise.resolve()
    },
  }
}
