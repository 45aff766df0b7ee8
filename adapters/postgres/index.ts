export { postgresStore } from './postgres-store.js'
export type { PgPool, PgPoolClient, PgQueryable, PostgresStore, PostgresStoreOptions } from './postgres-store.js'
