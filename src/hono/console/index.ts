export { webhookConsole } from './console.js'
export type { ConsoleOptions } from './console.js'
export { createCsrf } from './csrf.js'
export type { Csrf } from './csrf.js'
