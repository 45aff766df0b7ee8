export { d1Store } from './d1-store.js'
export type { D1StoreOptions } from './d1-store.js'
export type { D1Like, D1StatementLike } from './d1-types.js'
