/**
 * The parts of `pg` the store uses, so it depends on the driver's shape and not on its package.
 */

/** What the store needs of a `pg` client or pool: `query`, with text or a named (prepared) statement. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>
  query(config: { name: string; text: string; values?: unknown[] }): Promise<{ rows: any[]; rowCount: number | null }>
}

/** A client checked out of a `pg.Pool`. */
export interface PgPoolClient extends PgQueryable {
  release(error?: Error | boolean): void
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** A `pg.Pool`. */
export interface PgPool extends PgQueryable {
  connect(): Promise<PgPoolClient>
}
