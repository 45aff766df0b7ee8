import * as ed from '@noble/ed25519'
import { afterEach, describe, expect, it } from 'vitest'
import {
  ValidationError,
  WebhookVerificationError,
  generateSecret,
  generateSigningKey,
  importSecret,
  publicKeyOf,
  sign,
  signatureSchemeOf,
  verifyWebhook,
  type Webhooks,
} from 'cotwebhook'
import { nodeSigner } from 'cotwebhook/node'
import { COMPANY, TASK_GROUP, closeAll, engine, taskEvent, taskWebhook } from './helpers/fixtures.js'
import { apiApp } from './helpers/api-app.js'
import { startReceiver, until, type Receiver } from './helpers/receiver.js'

const bytesOf = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
const encoder = new TextEncoder()
const nowSeconds = () => Math.floor(Date.now() / 1000)

/** Verifies every `v1a` signature of a request with @noble/ed25519: an implementation that is not ours. */
async function nobleAccepts(publicKey: string, request: { headers: Record<string, string>; body: string }): Promise<boolean[]> {
  const content = encoder.encode(`${request.headers['webhook-id']}.${request.headers['webhook-timestamp']}.${request.body}`)
  const key = bytesOf(publicKey.slice('whpk_'.length))
  const v1a = request.headers['webhook-signature']!.split(' ').filter((s) => s.startsWith('v1a,'))
  return Promise.all(v1a.map((s) => ed.verifyAsync(bytesOf(s.slice(4)), content, key)))
}

let receiver: Receiver | undefined
afterEach(async () => {
  await closeAll()
  await receiver?.close()
  receiver = undefined
})

describe('Ed25519 signing keys', () => {
  it('are whsk_ and 64 bytes (seed, then public key); the public key is whpk_ and the last 32 of them', async () => {
    const key = await generateSigningKey()
    expect(key).toMatch(/^whsk_[A-Za-z0-9+/]+={0,2}$/)
    const bytes = bytesOf(key.slice(5))
    expect(bytes).toHaveLength(64)
    const publicKey = publicKeyOf(key)
    expect(publicKey).toMatch(/^whpk_/)
    expect(bytesOf(publicKey.slice(5))).toEqual(bytes.subarray(32))
    // The public half is the seed's public key, as an independent implementation derives it.
    expect(await ed.getPublicKeyAsync(bytes.subarray(0, 32))).toEqual(bytes.subarray(32))
    expect(signatureSchemeOf(key)).toBe('ed25519')
    expect(signatureSchemeOf(generateSecret())).toBe('hmac-sha256')
    expect(publicKeyOf('whsec_abc')).toBe('whsec_abc')
  })

  it('sign v1a: @noble/ed25519 accepts the signature, and refuses it over another body', async () => {
    const key = await generateSigningKey()
    const body = JSON.stringify(taskEvent())
    const timestamp = nowSeconds()
    const header = await sign([await importSecret(key)], 'msg_1', timestamp, body)
    expect(header).toMatch(/^v1a,[A-Za-z0-9+/]+={0,2}$/)
    const request = { headers: { 'webhook-id': 'msg_1', 'webhook-timestamp': String(timestamp), 'webhook-signature': header }, body }
    expect(await nobleAccepts(publicKeyOf(key), request)).toEqual([true])
    expect(await nobleAccepts(publicKeyOf(key), { ...request, body: body.replace('}', ',"x":1}') })).toEqual([false])
  })

  it('signed by @noble/ed25519 with the same seed: verifyWebhook accepts it, and the bytes equal ours (Ed25519 is deterministic)', async () => {
    const seed = ed.utils.randomSecretKey()
    const publicKey = await ed.getPublicKeyAsync(seed)
    const whsk = `whsk_${btoa(String.fromCharCode(...seed, ...publicKey))}`
    const body = JSON.stringify(taskEvent())
    const timestamp = nowSeconds()
    const theirs = await ed.signAsync(encoder.encode(`msg_2.${timestamp}.${body}`), seed)
    const headers = { 'webhook-id': 'msg_2', 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1a,${btoa(String.fromCharCode(...theirs))}` }
    expect((await verifyWebhook(publicKeyOf(whsk), headers, body)).type).toBe('COTTask')
    expect(await sign([await importSecret(whsk)], 'msg_2', timestamp, body)).toBe(headers['webhook-signature'])
    // nodeSigner (node:crypto) makes the same bytes.
    const signer = nodeSigner()
    expect(await signer.sign([await signer.prepare(whsk)], 'msg_2', timestamp, body)).toBe(headers['webhook-signature'])
  })

  it('verifyWebhook refuses a tampered body, a wrong key, an expired timestamp, a v1 label on a v1a signature and a signing key', async () => {
    const key = await generateSigningKey()
    const body = JSON.stringify(taskEvent())
    const timestamp = nowSeconds()
    const header = await sign([await importSecret(key)], 'msg_3', timestamp, body)
    const headers = { 'webhook-id': 'msg_3', 'webhook-timestamp': String(timestamp), 'webhook-signature': header }
    await expect(verifyWebhook(publicKeyOf(key), headers, body)).resolves.toMatchObject({ type: 'COTTask' })
    await expect(verifyWebhook(publicKeyOf(key), headers, body.replace('create', 'delete'))).rejects.toThrow('no webhook-signature matches')
    await expect(verifyWebhook(publicKeyOf(await generateSigningKey()), headers, body)).rejects.toThrow('no webhook-signature matches')
    await expect(verifyWebhook(publicKeyOf(key), headers, body, { now: (timestamp + 600) * 1000 })).rejects.toThrow('is more than 300 s from now')
    await expect(verifyWebhook(publicKeyOf(key), { ...headers, 'webhook-signature': header.replace('v1a,', 'v1,') }, body)).rejects.toThrow('no webhook-signature matches')
    const refused = await verifyWebhook(key, headers, body).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(WebhookVerificationError)
    expect((refused as Error).message).toContain('never the signing key (whsk_…)')
    await expect(verifyWebhook('whpk_AAAA', headers, body)).rejects.toThrow('not a valid whsec_ secret or whpk_ public key')
  })
})

describe('a webhook created with signature: ed25519', () => {
  it('signs every request v1a; the receiver verifies with the whpk_ key from create and secret(), and never sees the whsk_ key', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const { webhook, secret } = await hooks.registry.create(COMPANY, { ...taskWebhook(`${receiver.url}/hook`), signature: 'ed25519' })
    expect(secret).toMatch(/^whpk_/)
    expect(await hooks.registry.secret(COMPANY, webhook._id)).toBe(secret)
    expect(JSON.stringify(webhook)).not.toContain('ed25519') // the COTWebhook is unchanged
    await hooks.emit(taskEvent())
    await until(() => receiver!.requests.length === 1)
    const request = receiver.requests[0]!
    expect(request.headers['webhook-signature']).toMatch(/^v1a,\S+$/)
    expect((await verifyWebhook(secret, request.headers, request.body, { toleranceSeconds: 60 })).type).toBe('COTTask')
    expect(await nobleAccepts(secret, request)).toEqual([true])
    expect(JSON.stringify(request.headers)).not.toContain('whsk_')
  })

  it('signs with the same bytes under nodeSigner', async () => {
    receiver = await startReceiver()
    const hooks = engine({ signer: nodeSigner() })
    const { secret } = await hooks.registry.create(COMPANY, { ...taskWebhook(`${receiver.url}/hook`), signature: 'ed25519' })
    await hooks.emit(taskEvent())
    await until(() => receiver!.requests.length === 1)
    expect(await nobleAccepts(secret, receiver.requests[0]!)).toEqual([true])
  })

  it('rotates with overlap: both v1a signatures are sent, each verifies with its public key; then only the new one', async () => {
    receiver = await startReceiver()
    let clock = Date.now()
    const hooks = engine({ now: () => clock })
    const { webhook, secret: before } = await hooks.registry.create(COMPANY, { ...taskWebhook(`${receiver.url}/hook`), signature: 'ed25519' })
    const { secret: after } = await hooks.registry.rotateSecret(COMPANY, webhook._id, { overlapMs: 60_000 })
    expect(after).toMatch(/^whpk_/)
    expect(after).not.toBe(before)
    await hooks.emit(taskEvent(1))
    await until(() => receiver!.requests.length === 1)
    const during = receiver.requests[0]!
    expect(during.headers['webhook-signature']!.split(' ').map((s) => s.split(',')[0])).toEqual(['v1a', 'v1a'])
    for (const key of [before, after]) await expect(verifyWebhook(key, during.headers, during.body, { now: clock })).resolves.toBeTruthy()
    expect(await nobleAccepts(after, during)).toContain(true)
    expect(await nobleAccepts(before, during)).toContain(true)
    clock += 61_000
    await hooks.emit(taskEvent(2))
    await until(() => receiver!.requests.length === 2)
    const later = receiver.requests[1]!
    expect(later.headers['webhook-signature']!.split(' ')).toHaveLength(1)
    await expect(verifyWebhook(after, later.headers, later.body, { now: clock })).resolves.toBeTruthy()
    await expect(verifyWebhook(before, later.headers, later.body, { now: clock })).rejects.toThrow('no webhook-signature matches')
  })

  it('can switch kinds at a rotation: an HMAC webhook rotated to ed25519 sends v1a and v1 during the overlap', async () => {
    receiver = await startReceiver()
    const hooks = engine()
    const { webhook, secret: whsec } = await hooks.registry.create(COMPANY, taskWebhook(`${receiver.url}/hook`))
    const { secret: whpk } = await hooks.registry.rotateSecret(COMPANY, webhook._id, { signature: 'ed25519' })
    await hooks.emit(taskEvent())
    await until(() => receiver!.requests.length === 1)
    const request = receiver.requests[0]!
    expect(request.headers['webhook-signature']!.split(' ').map((s) => s.split(',')[0])).toEqual(['v1a', 'v1'])
    await expect(verifyWebhook(whpk, request.headers, request.body)).resolves.toBeTruthy()
    await expect(verifyWebhook(whsec, request.headers, request.body)).resolves.toBeTruthy()
    // A rotation without `signature` keeps the current kind.
    expect((await hooks.registry.rotateSecret(COMPANY, webhook._id, { overlapMs: 0 })).secret).toMatch(/^whpk_/)
  })

  it('refuses bad keys and kinds with the field named, and changes nothing', async () => {
    const hooks = engine({ dispatch: false })
    const { webhook, secret } = await hooks.registry.create(COMPANY, { ...taskWebhook('http://127.0.0.1:9/x'), signature: 'ed25519' })
    const key = await generateSigningKey()
    const refusals: Array<[unknown, string]> = [
      [{ signature: 'rsa' }, 'signature: must be "hmac-sha256" or "ed25519"'],
      [{ secret: key, signature: 'hmac-sha256' }, 'secret: must be a whsec_ key when signature is "hmac-sha256"'],
      [{ secret: 'whsk_AAAA' }, 'or 64 bytes (whsk_'],
      // The halves of two different keys.
      [{ secret: `whsk_${btoa(String.fromCharCode(...bytesOf(key.slice(5)).subarray(0, 32), ...bytesOf((await generateSigningKey()).slice(5)).subarray(32)))}` }, 'secret: not a usable Ed25519 signing key'],
    ]
    for (const [options, message] of refusals) {
      const error = await hooks.registry.rotateSecret(COMPANY, webhook._id, options as never).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as ValidationError).fields).toHaveProperty(Object.keys(options as object).includes('signature') && !(options as { secret?: string }).secret ? 'signature' : 'secret')
      expect((error as Error).message).toContain(message)
    }
    expect(await hooks.registry.secret(COMPANY, webhook._id)).toBe(secret)
    expect((await hooks.registry.get(COMPANY, webhook._id)).__v).toBe(0)
    // A whsk_ key given at a rotation signs from then on; what is returned is its public key.
    expect((await hooks.registry.rotateSecret(COMPANY, webhook._id, { secret: key, overlapMs: 0 })).secret).toBe(publicKeyOf(key))
  })
})

describe('the REST API with ed25519', () => {
  let hooks: Webhooks
  const call = async (method: string, path: string, body?: unknown) => {
    const errors: unknown[] = []
    const res = await apiApp(hooks, errors).request(`/api/v3${path}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: 'Bearer token-a' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    expect(errors).toEqual([])
    return { status: res.status, body: (await res.json()) as Record<string, any> }
  }
  const input = (extra: Record<string, unknown>) => ({ name: 'Tasks', code: 'tasks', trigger: 'create-edit-delete-task', url: 'http://127.0.0.1:9/x', context: { taskGroup: TASK_GROUP }, ...extra })

  it('creates with signature ed25519, answers the whpk_ key from /secret and /secret/rotate, and keeps the COTWebhook JSON as it was', async () => {
    hooks = engine({ dispatch: false })
    const created = await call('POST', '/webhook/subscription', input({ signature: 'ed25519' }))
    expect(created.status).toBe(201)
    expect(created.body.secret).toMatch(/^whpk_/)
    expect(Object.keys(created.body.data).sort()).toEqual(['__v', '_id', 'code', 'company', 'context', 'description', 'isActive', 'name', 'trigger', 'url'])
    const id = created.body.data._id as string
    expect((await call('GET', `/webhook/subscription/${id}/secret`)).body.data.secret).toBe(created.body.secret)
    const rotated = await call('POST', `/webhook/subscription/${id}/secret/rotate`, {})
    expect(rotated.body.data.secret).toMatch(/^whpk_/)
    expect(rotated.body.data.secret).not.toBe(created.body.secret)
  })

  it('refuses an unknown signature with 400 naming the field', async () => {
    hooks = engine({ dispatch: false })
    const res = await call('POST', '/webhook/subscription', input({ signature: 'rsa-sha256' }))
    expect(res.status).toBe(400)
    expect(res.body.error.fields).toEqual({ signature: ['signature: must be "hmac-sha256" or "ed25519"'] })
    expect((await hooks.registry.list(COMPANY)).count).toBe(0)
  })
})
