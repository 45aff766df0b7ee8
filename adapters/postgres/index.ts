export { postgresStore } from './postgres-store.js'
export type { PostgresStore, PostgresStoreOptions } from './postgres-store.js'
export type { PgPool, PgPoolClient, PgQueryable } from './pg-types.js'
