import { toJsonSchema } from '@valibot/to-json-schema'
import type * as v from 'valibot'
import { LogSchema, WebhookInputSchema, WebhookPatchSchema, WebhookSchema } from '../model.js'
import { RotateOptionsSchema } from '../registry.js'
import { RecoverSchema, TestSchema } from '../replay.js'
import { VERSION } from '../version.js'

/**
 * The OpenAPI 3.1 document of the REST routes, generated from the same valibot schemas the routes
 * validate with, so the two cannot drift. Rules JSON Schema cannot say (a context field that does
 * not apply to the trigger, an unsafe URL) are left to the 400 answers.
 */

/** Options of {@link openApiDocument}. */
export interface OpenApiOptions {
  /** Where the routes are mounted, as clients should call them. Default `/api/v3`. */
  serverUrl?: string
}

type Json = Record<string, unknown>

// JSON Schema 2020-12 is OpenAPI 3.1's dialect; checks with no JSON Schema form are left out.
const schema = (s: v.GenericSchema): Json => {
  const { $schema: _, ...rest } = toJsonSchema(s, { target: 'draft-2020-12', errorMode: 'ignore' }) as Json
  return withoutEmptyBranches(rest) as Json
}

// A branch with no JSON form (a Date, which JSON cannot carry) comes out as `{}`, which would accept
// anything: drop it from its anyOf.
function withoutEmptyBranches(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutEmptyBranches)
  if (!node || typeof node !== 'object') return node
  const out: Json = {}
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === 'anyOf' && Array.isArray(value)
      ? value.filter((branch) => !(branch && typeof branch === 'object' && Object.keys(branch).length === 0)).map(withoutEmptyBranches)
      : withoutEmptyBranches(value)
  }
  return out
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` })
const json = (body: Json) => ({ content: { 'application/json': { schema: body } } })
const ok = (description: string, body: Json) => ({ description, ...json(body) })
const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [String(status), { description: ERROR_TEXT[status], ...json(ref('Error')) }]))

const ERROR_TEXT: Record<number, string> = {
  400: 'invalid input: `error.fields` names each field and rule',
  401: 'no company for these credentials',
  404: 'no such id in the caller’s company',
  409: 'duplicate code, stale __v, or an inactive webhook',
  413: 'body or event too large',
}

const deliveryRef = {
  type: 'object',
  properties: { id: { type: 'string' }, webhookId: { type: 'string' }, eventId: { type: 'string' }, replayOf: { type: 'string' } },
  required: ['id', 'webhookId', 'eventId'],
}
const time = { type: ['integer', 'null'], description: 'epoch milliseconds' }
const nullableNumber = { type: ['number', 'null'] }
const stats = {
  type: 'object',
  properties: {
    at: { type: 'number' },
    open: { type: 'integer' },
    oldestOpenAgeMs: nullableNumber,
    circuitsOpen: { type: 'integer' },
    more: { type: 'integer' },
    webhooks: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          webhookId: { type: 'string' }, company: { type: 'string' }, open: { type: 'integer' }, oldestOpenAgeMs: nullableNumber,
          circuit: { type: 'string', enum: ['open', 'half-open', 'closed'] }, circuitOpenUntil: nullableNumber, consecutiveFailures: { type: 'integer' },
          failingSince: nullableNumber, lastSuccessAt: nullableNumber, lastFailureAt: nullableNumber,
        },
        required: ['webhookId', 'company', 'open', 'oldestOpenAgeMs', 'circuit', 'circuitOpenUntil', 'consecutiveFailures', 'failingSince', 'lastSuccessAt', 'lastFailureAt'],
      },
    },
    recent: {
      type: 'array',
      description: 'deliveries this instance ended per minute over the last hour, oldest first',
      items: { type: 'object', properties: { start: { type: 'number' }, succeeded: { type: 'integer' }, failed: { type: 'integer' } }, required: ['start', 'succeeded', 'failed'] },
    },
    outcomes: {
      type: 'object',
      properties: {
        attempts: { type: 'object', properties: { success: { type: 'integer' }, failure: { type: 'integer' }, gone: { type: 'integer' } } },
        deliveries: { type: 'object', properties: { succeeded: { type: 'integer' }, failed: { type: 'integer' } } },
      },
    },
  },
  required: ['at', 'open', 'oldestOpenAgeMs', 'circuitsOpen', 'webhooks', 'more', 'outcomes', 'recent'],
}

const health = {
  type: 'object',
  properties: {
    webhookId: { type: 'string' },
    isActive: { type: 'boolean' },
    consecutiveFailures: { type: 'integer', description: 'deliveries exhausted in a row since the last success' },
    failingSince: time,
    lastSuccessAt: time,
    lastFailureAt: time,
    circuit: { type: 'string', enum: ['closed', 'open', 'half-open'] },
    failedAttempts: { type: 'integer', description: 'failed attempts in a row (what opens the circuit)' },
    circuitOpenUntil: time,
  },
  required: ['webhookId', 'isActive', 'consecutiveFailures', 'failingSince', 'lastSuccessAt', 'lastFailureAt', 'circuit', 'failedAttempts', 'circuitOpenUntil'],
}

const idParam = (name: string, what: string) => ({ name, in: 'path', required: true, description: what, schema: { type: 'string', pattern: '^[0-9a-f]{24}$' } })
const pageParams = [
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 } },
  { name: 'page', in: 'query', schema: { type: 'integer', minimum: 1, default: 1 } },
]
const data = (body: Json) => ({ type: 'object', properties: { data: body }, required: ['data'] })
const deliveries = data({ type: 'object', properties: { deliveries: { type: 'array', items: deliveryRef } }, required: ['deliveries'] })
const recovered = data({
  type: 'object',
  properties: {
    deliveries: { type: 'array', items: deliveryRef },
    until: { type: 'string', format: 'date-time', description: 'the end of the window looked at: pass it back with nextSince' },
    nextSince: { type: 'string', format: 'date-time', description: 'present when more failed deliveries remain' },
  },
  required: ['deliveries', 'until'],
})

/**
 * Builds the document (plain JSON, ready for `c.json`).
 *
 * @example
 * ```ts
 * const doc = openApiDocument({ serverUrl: 'https://api.example.com/api/v3' })
 * doc.paths['/webhook/subscription'].post.requestBody
 * ```
 */
export function openApiDocument(options: OpenApiOptions = {}): Json & { paths: Record<string, Record<string, Json>> } {
  const id = idParam('id', 'the webhook’s _id')
  return {
    openapi: '3.1.0',
    info: {
      title: 'cotwebhook REST API',
      version: VERSION,
      description: 'Cotalker-compatible COTWebhook subscriptions, their logs, secrets, health and replay. Every route is scoped to the caller’s company.',
    },
    servers: [{ url: options.serverUrl ?? '/api/v3' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'whatever credentials the host maps to a company' } },
      schemas: {
        COTWebhook: schema(WebhookSchema),
        WebhookInput: schema(WebhookInputSchema),
        WebhookPatch: schema(WebhookPatchSchema),
        COTWebhookLog: schema(LogSchema),
        RotateSecret: schema(RotateOptionsSchema),
        Recover: schema(RecoverSchema),
        TestEvent: schema(TestSchema),
        Error: {
          type: 'object',
          properties: {
            error: {
              type: 'object',
              properties: {
                code: { type: 'string', enum: ['validation_error', 'invalid_json', 'unauthorized', 'not_found', 'conflict', 'unsafe_url', 'payload_too_large', 'internal'] },
                message: { type: 'string' },
                fields: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
              },
              required: ['code', 'message'],
            },
          },
          required: ['error'],
        },
      },
    },
    paths: {
      '/webhook/subscription': {
        get: {
          operationId: 'listWebhooks',
          summary: 'List the company’s webhooks',
          parameters: [
            ...pageParams,
            { name: 'isActive', in: 'query', schema: { type: 'string', enum: ['all', 'true', 'false'], default: 'all' } },
            { name: 'count', in: 'query', description: 'accepted for Cotalker compatibility; the count is always returned', schema: { type: 'string', enum: ['true', 'false'] } },
          ],
          responses: { 200: ok('a page of webhooks', data({ type: 'object', properties: { webhooks: { type: 'array', items: ref('COTWebhook') }, count: { type: 'integer' } } })), ...errors(400, 401) },
        },
        post: {
          operationId: 'createWebhook',
          summary: 'Create a webhook; its secret (whpk_ public key with signature ed25519) is returned',
          requestBody: { required: true, ...json(ref('WebhookInput')) },
          responses: { 201: ok('created', { type: 'object', properties: { data: ref('COTWebhook'), secret: { type: 'string' } } }), ...errors(400, 401, 409, 413) },
        },
      },
      '/webhook/subscription/{id}': {
        get: { operationId: 'getWebhook', summary: 'One webhook', parameters: [id], responses: { 200: ok('the webhook', data(ref('COTWebhook'))), ...errors(400, 401, 404) } },
        patch: {
          operationId: 'updateWebhook',
          summary: 'Update a webhook (with __v: only if nobody else did first)',
          parameters: [id],
          requestBody: { required: true, ...json(ref('WebhookPatch')) },
          responses: { 200: ok('the updated webhook', data(ref('COTWebhook'))), ...errors(400, 401, 404, 409, 413) },
        },
      },
      '/webhook/subscription/{id}/secret': {
        get: { operationId: 'getSecret', summary: 'What receivers verify with: the whsec_ secret, or the whpk_ public key of an ed25519 webhook', parameters: [id], responses: { 200: ok('the secret', data({ type: 'object', properties: { secret: { type: 'string' } } })), ...errors(400, 401, 404) } },
      },
      '/webhook/subscription/{id}/secret/rotate': {
        post: {
          operationId: 'rotateSecret',
          summary: 'Replace the secret; the old one keeps signing for overlapMs',
          parameters: [id],
          requestBody: { required: false, ...json(ref('RotateSecret')) },
          responses: { 200: ok('the new secret', data({ type: 'object', properties: { secret: { type: 'string' }, previousExpiresAt: { type: 'string', format: 'date-time' } } })), ...errors(400, 401, 404, 409, 413) },
        },
      },
      '/webhook/subscription/{id}/health': {
        get: { operationId: 'getHealth', summary: 'Failures in a row, last success, circuit state', parameters: [id], responses: { 200: ok('the health', data(health)), ...errors(400, 401, 404) } },
      },
      '/webhook/stats': {
        get: {
          operationId: 'getStats',
          summary: 'The company’s open deliveries and circuits per webhook (circuits first, then the largest backlogs), and this instance’s outcomes',
          parameters: [{ name: 'limit', in: 'query', description: 'webhooks listed, 1–1000 (default 100)', schema: { type: 'string', pattern: '^\\d{1,9}$' } }],
          responses: { 200: ok('the stats', data(stats)), ...errors(400, 401) },
        },
      },
      '/webhook/subscription/{id}/recover': {
        post: {
          operationId: 'recoverDeliveries',
          summary: 'Send every failed delivery since a time again',
          parameters: [id],
          requestBody: { required: true, ...json(ref('Recover')) },
          responses: { 202: ok('queued', recovered), ...errors(400, 401, 404, 409, 413) },
        },
      },
      '/webhook/subscription/{id}/test': {
        post: {
          operationId: 'sendTestEvent',
          summary: 'Send a test event (extraData.test: true)',
          parameters: [id],
          requestBody: { required: false, ...json(ref('TestEvent')) },
          responses: { 202: ok('queued', deliveries), ...errors(400, 401, 404, 409, 413) },
        },
      },
      '/webhook/subscription/logs/{id}': {
        get: {
          operationId: 'listLogs',
          summary: 'A webhook’s COTWebhookLogs, newest first',
          parameters: [id, ...pageParams],
          responses: { 200: ok('a page of logs', data({ type: 'object', properties: { logs: { type: 'array', items: ref('COTWebhookLog') }, count: { type: 'integer' } } })), ...errors(400, 401, 404) },
        },
      },
      '/webhook/subscription/logs/{logId}/resend': {
        post: {
          operationId: 'resendDelivery',
          summary: 'Send one delivery’s event again',
          parameters: [idParam('logId', 'the COTWebhookLog’s _id')],
          responses: { 202: ok('queued', deliveries), ...errors(400, 401, 404, 409, 413) },
        },
      },
    },
  }
}
