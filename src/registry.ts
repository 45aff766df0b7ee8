import { LRUCache } from 'lru-cache'
import * as v from 'valibot'
import { ConflictError, NotFoundError, UnsafeUrlError, ValidationError } from './errors.js'
import {
  ObjectIdSchema,
  PageSchema,
  SignatureSchemeSchema,
  WebhookInputSchema,
  WebhookPatchSchema,
  checkContext,
  plainObject,
  type COTWebhook,
  type WebhookInput,
  type WebhookPatch,
} from './model.js'
import { objectId } from './object-id.js'
import { webCryptoSigner, type Signer } from './signer.js'
import { SecretSchema, currentSecret, newKey, validSecrets } from './secrets.js'
import { importSigningKey, publicKeyOf, signatureSchemeOf, type SignatureScheme } from './signing-keys.js'
import type { RetiringSecret, Store, StoredWebhook } from './store.js'
import { checkUrl, type UrlPolicy } from './url-guard.js'
import { parse } from './validate.js'

/** Filters and page of `registry.list`. */
export interface ListOptions {
  /** Only active (`true`) or inactive (`false`) webhooks; all when absent. */
  isActive?: boolean
  /** Page size, 1–100. Default 10. */
  limit?: number
  /** Page number from 1. Default 1. */
  page?: number
}

/** The COTWebhook registry of an engine: every write is validated and versioned. */
export interface Registry {
  /**
   * Creates a webhook; the secret is returned here once (later only through `secret`). With
   * `signature: 'ed25519'` it signs `v1a` and what is returned is its `whpk_` public key.
   */
  create(company: string, input: WebhookInput): Promise<{ webhook: COTWebhook; secret: string }>
  /** One webhook of the company; {@link NotFoundError} otherwise. */
  get(company: string, id: string): Promise<COTWebhook>
  /** A page of the company's webhooks, in creation order, and how many there are in all. */
  list(company: string, options?: ListOptions): Promise<{ webhooks: COTWebhook[]; count: number }>
  /** Applies a patch; with `__v`, fails with {@link ConflictError} if someone else updated first. */
  update(company: string, id: string, patch: WebhookPatch): Promise<COTWebhook>
  /**
   * What a receiver verifies the webhook's requests with: its current `whsec_` secret, or the `whpk_`
   * public key of its current Ed25519 signing key (the `whsk_` key itself never leaves the store).
   */
  secret(company: string, id: string): Promise<string>
  /**
   * Replaces the signing secret. The old one keeps being used beside the new one (deliveries carry
   * both signatures) for `overlapMs`, so receivers can switch without missing a delivery. The
   * returned `secret` is what receivers verify with (a `whpk_` public key for Ed25519).
   */
  rotateSecret(company: string, id: string, options?: RotateSecretOptions): Promise<{ secret: string; previousExpiresAt: number }>
}

/** Options of `rotateSecret`. */
export interface RotateSecretOptions {
  /** How long the old secret stays valid beside the new one. Default: the registry's `secretOverlapMs` (24 h). */
  overlapMs?: number
  /** The new key's kind: `'hmac-sha256'` (a `whsec_` secret) or `'ed25519'` (a `whsk_` key). Default: the current one's, or the given `secret`'s. */
  signature?: SignatureScheme
  /** The new secret (`whsec_` + base64 of 24–64 bytes) or Ed25519 signing key (`whsk_` + base64 of 64 bytes). Default: a new random one. */
  secret?: string
}

/** A webhook ready to be delivered to: the record and its imported signing keys. */
export interface DeliveryTarget {
  /** The webhook as stored. */
  webhook: COTWebhook
  /** Its valid secrets, prepared by the signer once. */
  keys: unknown[]
  /** Why the URL may not be called under the engine's URL policy, checked once; absent when it may. */
  unsafe?: string
}

/** What the engine needs beyond the public registry. */
export interface RegistryInternals extends Registry {
  /** The webhook and keys an attempt uses, cached until the next write to it. */
  target(company: string, id: string): Promise<DeliveryTarget | undefined>
  /** Turns a webhook off for the engine's own reasons (a 410), whatever its version; `false` if it was off already (or gone). */
  deactivate(company: string, id: string): Promise<boolean>
  /** Drops a cached delivery target (another process wrote the webhook), or all of them. */
  forget(id?: string): void
}

/** Options of {@link createRegistry}. */
export interface RegistryOptions {
  /** Where webhooks live. */
  store: Store
  /** The URL policy applied at create and update. */
  urlPolicy: UrlPolicy
  /** Called (and awaited) after every write, so caches over the registry can drop what they hold. */
  onChange: (company: string, id: string, change: { before?: COTWebhook; after: COTWebhook }) => void | Promise<void>
  /** How many delivery targets to keep imported. Default 10 000. */
  cacheSize?: number
  /** Re-read a cached target after this long (other processes may have written it); 0 keeps it until a write. Default 0. */
  cacheTtlMs?: number
  /** Prepares the secrets of delivery targets. Default {@link webCryptoSigner}. */
  signer?: Signer
  /** How long an old secret stays valid after a rotation. Default 86 400 000 (24 h). */
  secretOverlapMs?: number
  /** The clock, in epoch ms (secret expiry). Default `Date.now`. */
  now?: () => number
}

export const RotateOptionsSchema = plainObject(v.object({
  overlapMs: v.optional(
    v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(0, 'must be at least 0'), v.maxValue(2_592_000_000, 'must be at most 30 days (2592000000)')),
  ),
  secret: v.optional(SecretSchema),
  signature: v.optional(SignatureSchemeSchema),
}), 'must be an object { overlapMs?, secret?, signature? }')

const ListOptionsSchema = v.object({
  ...PageSchema.entries,
  isActive: v.optional(v.boolean('must be true or false')),
})

// Concurrent writes without __v are applied one after the other; this bounds how often one retries.
const MAX_WRITE_RETRIES = 8
// Retiring secrets kept at most beside the current one.
const MAX_RETIRING = 3

/**
 * The registry over a store. Used by `createWebhooks`; exported for hosts that only manage webhooks.
 *
 * @example
 * ```ts
 * const registry = createRegistry({ store: memoryStore(), urlPolicy: {}, onChange: () => {} })
 * const { webhook, secret } = await registry.create(company, { name, code, trigger, url })
 * ```
 */
/**
 * Parses a webhook input; when other fields are refused, a refused URL is named in the same answer
 * (its policy is checked after the schema otherwise, so a form showed its URL error only once the rest
 * was right).
 */
function parseWithUrlPolicy<TSchema extends v.GenericSchema>(schema: TSchema, input: unknown, policy: UrlPolicy): v.InferOutput<TSchema> {
  try {
    return parse(schema, input, 'webhook')
  } catch (error) {
    const url = (input as { url?: unknown } | null)?.url
    if (!(error instanceof ValidationError) || error.fields.url || typeof url !== 'string') throw error
    try {
      checkUrl(url, policy)
    } catch (refused) {
      if (!(refused instanceof UnsafeUrlError)) throw error
      throw new ValidationError(`${error.message}; ${refused.message}`, { ...error.fields, url: [refused.message] }, { cause: error })
    }
    throw error
  }
}

export function createRegistry(options: RegistryOptions): RegistryInternals {
  const { store, urlPolicy, onChange } = options
  const parseWithUrl = <TSchema extends v.GenericSchema>(schema: TSchema, input: unknown) => parseWithUrlPolicy(schema, input, urlPolicy)
  const signer = options.signer ?? webCryptoSigner
  const now = options.now ?? Date.now
  const defaultOverlapMs = options.secretOverlapMs ?? 86_400_000
  const targets = new LRUCache<string, DeliveryTarget & { changesAt: number }>({
    max: options.cacheSize ?? 10_000,
    ...(options.cacheTtlMs ? { ttl: options.cacheTtlMs } : {}),
  })

  const changed = async (company: string, id: string, after: COTWebhook, before?: COTWebhook) => {
    targets.delete(id)
    await onChange(company, id, before ? { before, after } : { after })
  }

  const load = async (company: string, id: string): Promise<StoredWebhook> => {
    objectIdArgument(company, 'company')
    objectIdArgument(id, 'id')
    const record = await store.getWebhook(company, id)
    if (!record) throw new NotFoundError('webhook', id)
    return record
  }

  const write = async (
    company: string,
    id: string,
    change: (current: COTWebhook) => COTWebhook,
    expected?: number,
    secrets?: (current: StoredWebhook['secrets']) => StoredWebhook['secrets'],
  ) => {
    for (let round = 0; ; round++) {
      const record = await load(company, id)
      if (expected !== undefined && record.webhook.__v !== expected) throw stale(expected, record.webhook.__v)
      const next = change(record.webhook)
      if (await store.updateWebhook({ webhook: next, secrets: secrets ? secrets(record.secrets) : record.secrets }, record.webhook.__v)) {
        await changed(company, id, next, record.webhook)
        return next
      }
      if (expected !== undefined || round >= MAX_WRITE_RETRIES) throw stale(expected ?? record.webhook.__v, undefined)
    }
  }

  return {
    async create(company, input) {
      objectIdArgument(company, 'company')
      const fields = parseWithUrl(WebhookInputSchema, input)
      const context = { survey: '', group: '', taskGroup: '', ...fields.context }
      checkContext(fields.trigger, context)
      checkUrl(fields.url, urlPolicy)
      const webhook: COTWebhook = {
        _id: objectId(),
        company,
        isActive: fields.isActive,
        trigger: fields.trigger,
        url: fields.url,
        name: fields.name,
        code: fields.code,
        context,
        __v: 0,
        description: fields.description,
      }
      const secret = await newKey(fields.signature)
      if (!(await store.insertWebhook({ webhook, secrets: [secret] }))) {
        throw new ConflictError(`code: "${fields.code}" is already used by another webhook of this company`, 'code')
      }
      await changed(company, webhook._id, webhook)
      return { webhook, secret: publicKeyOf(secret) }
    },

    async get(company, id) {
      return (await load(company, id)).webhook
    },

    async list(company, listOptions = {}) {
      objectIdArgument(company, 'company')
      const query = parse(ListOptionsSchema, listOptions, 'list options')
      const page = await store.listWebhooks(company, {
        ...(query.isActive === undefined ? {} : { isActive: query.isActive }),
        limit: query.limit,
        offset: (query.page - 1) * query.limit,
      })
      return { webhooks: page.items, count: page.count }
    },

    async update(company, id, input) {
      const patch = parseWithUrl(WebhookPatchSchema, input)
      const { __v: expected, context, ...fields } = patch
      return write(
        company,
        id,
        (current) => {
          if (fields.code !== undefined && fields.code !== current.code) {
            throw ValidationError.field('code', 'code: cannot be changed once saved')
          }
          const next: COTWebhook = {
            ...current,
            ...definedOnly(fields),
            context: { ...current.context, ...definedOnly(context ?? {}) },
            __v: current.__v + 1,
          }
          checkContext(next.trigger, next.context)
          if (next.url !== current.url) checkUrl(next.url, urlPolicy)
          return next
        },
        expected,
      )
    },

    async secret(company, id) {
      return publicKeyOf(currentSecret(await load(company, id)))
    },

    async rotateSecret(company, id, rotateOptions = {}) {
      const parsed = parse(RotateOptionsSchema, rotateOptions, 'rotate options')
      const { overlapMs = defaultOverlapMs } = parsed
      if (parsed.secret && parsed.signature && signatureSchemeOf(parsed.secret) !== parsed.signature) {
        throw ValidationError.field('secret', `secret: must be a ${parsed.signature === 'ed25519' ? 'whsk_' : 'whsec_'} key when signature is "${parsed.signature}"`)
      }
      if (parsed.secret?.startsWith('whsk_')) {
        // Halves that do not belong together would sign what no receiver can verify.
        await importSigningKey(parsed.secret).catch((cause: unknown) => {
          const message = `secret: not a usable Ed25519 signing key (${(cause as Error).message})`
          throw new ValidationError(message, { secret: [message] }, { cause })
        })
      }
      const secret = parsed.secret ?? (await newKey(parsed.signature ?? signatureSchemeOf(currentSecret(await load(company, id)))))
      let previousExpiresAt = 0
      // A write like any other (the version moves on), so two rotations at once cannot lose a secret.
      await write(
        company,
        id,
        (current) => ({ ...current, __v: current.__v + 1 }),
        undefined,
        (secrets) => {
          const at = now()
          previousExpiresAt = at + overlapMs
          const current = currentSecret({ webhook: undefined as never, secrets })
          const retiring = secrets.slice(1).filter((entry): entry is RetiringSecret => typeof entry !== 'string' && entry.expiresAt > at)
          const next = overlapMs > 0 ? [{ secret: current, expiresAt: previousExpiresAt }, ...retiring] : retiring
          // Every request carries a signature per valid secret: a rotation loop must not grow that without
          // bound, and dropping a secret before the end of the overlap it was promised would break receivers.
          if (next.length > MAX_RETIRING) {
            const soonest = new Date(Math.min(...retiring.map((r) => r.expiresAt))).toISOString()
            throw new ConflictError(
              `secret: ${retiring.length} earlier secrets are still within their overlap (the first ends at ${soonest}); rotate after that, or with overlapMs: 0 to retire the current one at once`,
              'secret',
            )
          }
          return [secret, ...next]
        },
      )
      return { secret: publicKeyOf(secret), previousExpiresAt }
    },

    async target(company, id) {
      const cached = targets.get(id)
      if (cached && cached.webhook.company === company && now() < cached.changesAt) return cached
      const record = await store.getWebhook(company, id)
      if (!record) return undefined
      const { secrets, changesAt } = validSecrets(record, now())
      const target: DeliveryTarget & { changesAt: number } = {
        webhook: record.webhook,
        keys: await Promise.all(secrets.map((secret) => signer.prepare(secret))),
        changesAt,
      }
      try {
        checkUrl(record.webhook.url, urlPolicy)
      } catch (error) {
        target.unsafe = (error as Error).message
      }
      targets.set(id, target)
      return target
    },

    forget(id) {
      if (id === undefined) targets.clear()
      else targets.delete(id)
    },

    async deactivate(company, id) {
      try {
        await write(company, id, (current) => {
          // Two runs may decide to turn it off at once: only the first write counts.
          if (!current.isActive) throw new AlreadyInactive()
          return { ...current, isActive: false, __v: current.__v + 1 }
        })
        return true
      } catch (error) {
        if (error instanceof NotFoundError || error instanceof AlreadyInactive) return false
        throw error
      }
    },
  }
}

class AlreadyInactive extends Error {}

/**
 * Checks an id argument (`company`, `id`), reporting it under its own name.
 *
 * @example
 * ```ts
 * objectIdArgument(req.param('id'), 'id') // throws "id: must be an ObjectId (…)"
 * ```
 */
export function objectIdArgument(value: unknown, field: string): string {
  const result = v.safeParse(ObjectIdSchema, value)
  if (!result.success) throw ValidationError.field(field, `${field}: ${result.issues[0].message}`)
  return result.output
}

function stale(expected: number, actual: number | undefined): ConflictError {
  const now = actual === undefined ? 'it was updated meanwhile' : `it is at __v ${actual}`
  return new ConflictError(`__v: version ${expected} is stale (${now}); read the webhook again and retry`, '__v')
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
