export { createWebhooks } from './engine.js'
export type { EmitOptions, EmitResult, LogPageOptions, RetentionOptions, Webhooks, WebhooksOptions } from './engine.js'
export type { EngineStats, WebhookBacklog } from './engine-stats.js'
export type { Outcomes } from './outcome-counts.js'
export type { HealthReport } from './endpoint-guard.js'
export type {
  AttemptFailedEvent,
  CircuitEvent,
  DeliveryExhaustedEvent,
  DeliveryRecoveredEvent,
  DeliveryRef,
  DisableReason,
  OperatorHooks,
  WebhookDisabledEvent,
} from './operator-hooks.js'
export type { CircuitBreakerOptions, CircuitState } from './circuit-breaker.js'
export type { RateLimitOptions } from './rate-limit.js'
export type { HealthOptions, WebhookHealth } from './health.js'
export type { RecoverOptions, RecoverResult, ReplayResult, TestEventOptions } from './replay.js'
export { memoryStore } from './memory-store.js'
export { applyEndpointReport, emptyEndpoint, endpointGate, refill, resetEndpointState } from './endpoint-state.js'
export type { MemoryStoreOptions } from './memory-store.js'
export { verifyWebhook, generateSecret, sign, importSecret, TIMESTAMP_TOLERANCE_SECONDS } from './signing.js'
export type { HeadersLike } from './signing.js'
export { generateSigningKey, publicKeyOf, signatureSchemeOf, importSigningKey, importPublicKey, SIGNING_KEY_PREFIX, PUBLIC_KEY_PREFIX } from './signing-keys.js'
export type { SignatureScheme } from './signing-keys.js'
export { createRegistry } from './registry.js'
export type { DeliveryTarget, ListOptions, Registry, RegistryInternals, RegistryOptions, RotateSecretOptions } from './registry.js'
export { createMatcher } from './matcher.js'
export type { Matcher, MatcherOptions } from './matcher.js'
export { addressReason, checkUrl, checkUrlPolicy, privateHostReason } from './url-guard.js'
export type { UrlPolicy } from './url-guard.js'
export { COTALKER_SCHEDULE, STANDARD_WEBHOOKS_SCHEDULE, delayAfter, parseRetryAfter } from './retry-policy.js'
export type { RetryOptions } from './retry-policy.js'
export { sendAttempt } from './sender.js'
export type { AttemptRequest, AttemptResult, Outcome } from './sender.js'
export { fetchTransport } from './transport.js'
export { webCryptoSigner } from './signer.js'
export type { Signer } from './signer.js'
export type { Telemetry, EmitInfo, EmitRecording, AttemptInfo, AttemptRecording, AttemptEnd, DeliveredInfo, TelemetrySource } from './telemetry.js'
export type { FetchLike, Transport, TransportRequest, TransportResponse } from './transport.js'
export { toLog } from './log.js'
export { companyIdFor, objectId } from './object-id.js'
export {
  AttemptSchema,
  CodeSchema,
  ContextSchema,
  DeliveryStateSchema,
  EmitInputSchema,
  EventSchema,
  LogSchema,
  OBJECT_ID,
  ObjectIdSchema,
  PageSchema,
  TriggerSchema,
  WebhookInputSchema,
  WebhookPatchSchema,
  WebhookSchema,
  checkContext,
  toEvent,
} from './model.js'
export type {
  Attempt,
  COTEvent,
  COTWebhook,
  COTWebhookLog,
  DeliveryState,
  EmitInput,
  WebhookContext,
  WebhookInput,
  WebhookPatch,
} from './model.js'
export { CONTEXT_FIELDS, EVENT_NAMES, EVENT_TYPES, TRIGGERS, TRIGGER_NAMES, contextApplies, triggerOf } from './triggers.js'
export type { ContextField, EventName, EventType, Trigger, TriggerRow } from './triggers.js'
export {
  CompanyResolverError,
  ConflictError,
  EventTooLargeError,
  InvalidJsonError,
  LeaseLostError,
  NotFoundError,
  PayloadTooLargeError,
  UnauthorizedError,
  UnsafeUrlError,
  ValidationError,
  WebhookError,
  WebhookVerificationError,
} from './errors.js'
export type { ErrorCode } from './errors.js'
export type {
  ClaimOptions,
  ClaimedDelivery,
  Delivery,
  EndpointChange,
  EndpointPolicy,
  EndpointReport,
  EndpointState,
  WebhookStats,
  EnqueueInput,
  EnqueueResult,
  Lease,
  NewDelivery,
  Page,
  PruneResult,
  RateLimit,
  SettleResult,
  Settlement,
  StoreChange,
  Store,
  RetiringSecret,
  StoredWebhook,
  WebhookListQuery,
} from './store.js'
export { VERSION } from './version.js'
