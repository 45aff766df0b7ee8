export { sqliteStore } from './sqlite-store.js'
export type { SqliteDatabase, SqliteStatement, SqliteStore, SqliteStoreOptions } from './sqlite-store.js'
