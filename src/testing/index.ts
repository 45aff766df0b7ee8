export { runStoreConformance, CONFORMANCE_CASES } from './conformance.js'
export type { ConformanceCase, ConformanceOptions } from './conformance.js'
export { taskEvent, webhookRecord } from './fixtures.js'
