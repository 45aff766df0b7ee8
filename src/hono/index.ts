import type { Webhooks } from '../engine.js'

export { webhooks } from './middleware.js'
export type { WebhooksMiddlewareOptions, WebhooksVariables } from './middleware.js'
export { webhookApi } from './api.js'
export type { WebhookApiOptions } from './api.js'
export { webhookConsole, createCsrf, consoleStylesheet } from './console/index.js'
export type { ConsoleOptions, Csrf } from './console/index.js'
export { webhookMetrics, exposition } from './metrics.js'
export type { MetricsOptions } from './metrics.js'
export { openApiDocument } from './openapi.js'
export type { OpenApiOptions } from './openapi.js'
export { errorResponse } from './errors.js'
export type { ErrorBody } from './errors.js'

declare module 'hono' {
  interface ContextVariableMap {
    /** Set by the `webhooks()` middleware of cotwebhook. */
    webhooks: Webhooks
  }
}
