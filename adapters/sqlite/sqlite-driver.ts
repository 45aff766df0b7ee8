// The SQLite connection as the store sees it (better-sqlite3 on Node, `bun:sqlite` on Bun), opening
// one, and running work atomically on it.

/** A prepared statement, as better-sqlite3 and `bun:sqlite` both shape it. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number | bigint }
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
}

/** A SQLite connection: a better-sqlite3 `Database` or a `bun:sqlite` `Database`. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): unknown
  readonly inTransaction: boolean
  close(): unknown
}

/**
 * Runs `work` atomically: in its own IMMEDIATE transaction, or, inside a transaction already open on
 * the connection (the host's), as a savepoint that commits with it.
 */
export function atomic<T>(db: SqliteDatabase, work: () => T): T {
  if (db.inTransaction) {
    db.exec('SAVEPOINT cotwebhook')
    try {
      const result = work()
      db.exec('RELEASE cotwebhook')
      return result
    } catch (error) {
      db.exec('ROLLBACK TO cotwebhook')
      db.exec('RELEASE cotwebhook')
      throw error
    }
  }
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = work()
    db.exec('COMMIT')
    return result
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  }
}

/** Whether SQLite refused for a lock someone else holds. */
export function isBusy(error: unknown): boolean {
  const code = String((error as { code?: unknown }).code ?? '')
  return code.startsWith('SQLITE_BUSY') || /database is locked/i.test(String((error as Error).message))
}

/** The host's connection given as `tx`, checked. */
export function asConnection(tx: unknown): SqliteDatabase {
  const db = tx as Partial<SqliteDatabase> | null
  if (!db || typeof db.prepare !== 'function' || typeof db.exec !== 'function') {
    throw new TypeError('sqliteStore: emit(…, { tx }) takes the SQLite Database on which your transaction is open')
  }
  return db as SqliteDatabase
}

/** Opens (or takes) a connection and sets it up: no blocking busy handler, WAL, NORMAL sync. */
export async function open(database: SqliteDatabase | string): Promise<SqliteDatabase> {
  const db = typeof database === 'string' ? await openPath(database) : database
  // Never block the process inside SQLite waiting for a lock: the store waits asynchronously instead.
  db.exec('PRAGMA busy_timeout = 0')
  // WAL lets readers and one writer proceed together; NORMAL sync is durable across a process crash.
  db.exec('PRAGMA journal_mode = WAL')
  db.exec('PRAGMA synchronous = NORMAL')
  return db
}

async function openPath(path: string): Promise<SqliteDatabase> {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined') {
    // A variable keeps bundlers and type checkers from resolving Bun's module on Node.
    const bunSqlite = 'bun:sqlite'
    const { Database } = (await import(bunSqlite)) as { Database: new (path: string) => SqliteDatabase }
    return new Database(path)
  }
  const { default: Database } = (await import('better-sqlite3')) as unknown as { default: new (path: string) => SqliteDatabase }
  return new Database(path)
}
