import { describe, expect, it } from 'vitest'
import { Webhook } from 'standardwebhooks'
import {
  TIMESTAMP_TOLERANCE_SECONDS,
  WebhookVerificationError,
  generateSecret,
  importSecret,
  sign,
  verifyWebhook,
  type COTEvent,
} from 'cotwebhook'

const EVENT: COTEvent = {
  company: '625bc5429a54e8868bd89be2',
  type: 'COTTask',
  event: 'create',
  data: { _id: '6261612a8f1e9999775c8be4', taskGroup: '6261612a8f1e99002e5c8cce', name: 'Órden #1 — ✓' },
  diff: { '/name': { previous: 'Old', changedTo: 'New' } },
  extraData: null,
  createdAt: '2022-04-27T21:28:15.186Z',
}
const BODY = JSON.stringify(EVENT)
const MSG_ID = '62742dd8a4b1c2d3e4f50617'

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** Headers of a message signed by our `sign` with the given secrets. */
async function signed(secrets: string[], options: { id?: string; timestamp?: number; body?: string } = {}) {
  const id = options.id ?? MSG_ID
  const timestamp = options.timestamp ?? nowSeconds()
  const keys = await Promise.all(secrets.map(importSecret))
  const signature = await sign(keys, id, timestamp, options.body ?? BODY)
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature }
}

async function rejection(run: () => Promise<unknown>): Promise<WebhookVerificationError> {
  const error = await run().then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(WebhookVerificationError)
  expect((error as WebhookVerificationError).code).toBe('verification_failed')
  expect((error as WebhookVerificationError).status).toBe(401)
  return error as WebhookVerificationError
}

function base64Bytes(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0))
}

describe('generated secrets', () => {
  it('are whsec_ followed by the base64 of 32 bytes', () => {
    const secret = generateSecret()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(base64Bytes(secret.slice('whsec_'.length))).toHaveLength(32)
  })

  it('are distinct', () => {
    const secrets = new Set(Array.from({ length: 50 }, () => generateSecret()))
    expect(secrets.size).toBe(50)
  })

  it('are accepted by the standardwebhooks library', () => {
    expect(() => new Webhook(generateSecret())).not.toThrow()
  })
})

describe('our signatures, verified by the standardwebhooks library', () => {
  it('a signature made with one key is accepted', async () => {
    const secret = generateSecret()
    const headers = await signed([secret])
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/)
    expect(new Webhook(secret).verify(BODY, headers)).toEqual(EVENT)
  })

  it('the signature is byte for byte the one standardwebhooks computes', async () => {
    const secret = generateSecret()
    const timestamp = nowSeconds()
    const headers = await signed([secret], { timestamp })
    expect(headers['webhook-signature']).toBe(new Webhook(secret).sign(MSG_ID, new Date(timestamp * 1000), BODY))
  })

  it('several keys give space-separated signatures, and either secret verifies', async () => {
    const first = generateSecret()
    const second = generateSecret()
    const headers = await signed([first, second])
    const parts = headers['webhook-signature'].split(' ')
    expect(parts).toHaveLength(2)
    for (const part of parts) expect(part).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/)
    expect(parts[0]).not.toBe(parts[1])
    expect(new Webhook(first).verify(BODY, headers)).toEqual(EVENT)
    expect(new Webhook(second).verify(BODY, headers)).toEqual(EVENT)
    expect(() => new Webhook(generateSecret()).verify(BODY, headers)).toThrow('No matching signature found')
  })

  it('standardwebhooks refuses our signature over another body or under another secret', async () => {
    const secret = generateSecret()
    const headers = await signed([secret])
    expect(() => new Webhook(secret).verify(BODY.replace('Old', 'Olx'), headers)).toThrow('No matching signature found')
    expect(() => new Webhook(generateSecret()).verify(BODY, headers)).toThrow('No matching signature found')
  })

  it('a fixed secret, id, timestamp and body give a fixed signature', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
    const key = await importSecret(secret)
    const ours = await sign([key], 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')
    expect(ours).toBe(new Webhook(secret).sign('msg_p5jXN8AQM9LWM0D4loKWxJek', new Date(1614265330 * 1000), '{"test": 2432232314}'))
    expect(ours).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=')
  })
})

describe('verifyWebhook', () => {
  it('accepts a valid message given as a Headers object and returns the COTEvent', async () => {
    const secret = generateSecret()
    const headers = new Headers(await signed([secret]))
    expect(await verifyWebhook(secret, headers, BODY)).toEqual(EVENT)
  })

  it('accepts a valid message given as a plain Node-style header object', async () => {
    const secret = generateSecret()
    const headers: Record<string, string | string[] | undefined> = { ...(await signed([secret])), host: '127.0.0.1' }
    expect(await verifyWebhook(secret, headers, BODY)).toEqual(EVENT)
  })

  it('finds headers whatever their case in a plain object', async () => {
    const secret = generateSecret()
    const h = await signed([secret])
    const headers = {
      'Webhook-Id': h['webhook-id'],
      'Webhook-Timestamp': h['webhook-timestamp'],
      'Webhook-Signature': h['webhook-signature'],
    }
    expect(await verifyWebhook(secret, headers, BODY)).toEqual(EVENT)
  })

  it('accepts the body as bytes', async () => {
    const secret = generateSecret()
    expect(await verifyWebhook(secret, await signed([secret]), new TextEncoder().encode(BODY))).toEqual(EVENT)
  })

  it('accepts a message signed with several keys under either secret, and several candidate secrets', async () => {
    const first = generateSecret()
    const second = generateSecret()
    const headers = await signed([first, second])
    expect(await verifyWebhook(first, headers, BODY)).toEqual(EVENT)
    expect(await verifyWebhook(second, headers, BODY)).toEqual(EVENT)
    const onlySecond = await signed([second])
    expect(await verifyWebhook([first, second], onlySecond, BODY)).toEqual(EVENT)
  })

  for (const missing of ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const) {
    it(`rejects a message without the ${missing} header`, async () => {
      const secret = generateSecret()
      const headers: Record<string, string> = await signed([secret])
      delete headers[missing]
      const error = await rejection(() => verifyWebhook(secret, headers, BODY))
      expect(error.message).toBe('missing webhook-id, webhook-timestamp or webhook-signature header')
      await rejection(() => verifyWebhook(secret, new Headers(headers), BODY))
    })
  }

  it('rejects a message signed with another secret', async () => {
    const headers = await signed([generateSecret()])
    const error = await rejection(() => verifyWebhook(generateSecret(), headers, BODY))
    expect(error.message).toBe('no webhook-signature matches the secret')
  })

  it('rejects a tampered body', async () => {
    const secret = generateSecret()
    const headers = await signed([secret])
    const tampered = JSON.stringify({ ...EVENT, company: '625bc5429a54e8868bd89bf9' })
    const error = await rejection(() => verifyWebhook(secret, headers, tampered))
    expect(error.message).toBe('no webhook-signature matches the secret')
    await rejection(() => verifyWebhook(secret, headers, `${BODY} `))
  })

  it('rejects a tampered id', async () => {
    const secret = generateSecret()
    const headers = await signed([secret])
    const error = await rejection(() => verifyWebhook(secret, { ...headers, 'webhook-id': '62742dd8a4b1c2d3e4f50618' }, BODY))
    expect(error.message).toBe('no webhook-signature matches the secret')
  })

  it('rejects a tampered timestamp that is still within tolerance', async () => {
    const secret = generateSecret()
    const timestamp = nowSeconds()
    const headers = await signed([secret], { timestamp })
    await rejection(() => verifyWebhook(secret, { ...headers, 'webhook-timestamp': String(timestamp - 1) }, BODY))
  })

  it(`rejects a timestamp more than ${TIMESTAMP_TOLERANCE_SECONDS / 60} minutes old or in the future`, async () => {
    expect(TIMESTAMP_TOLERANCE_SECONDS).toBe(300)
    const secret = generateSecret()
    const timestamp = 1_700_000_000
    const headers = await signed([secret], { timestamp })
    const at = (seconds: number) => (timestamp + seconds) * 1000

    expect(await verifyWebhook(secret, headers, BODY, { now: at(0) })).toEqual(EVENT)
    expect(await verifyWebhook(secret, headers, BODY, { now: at(300) })).toEqual(EVENT)
    expect(await verifyWebhook(secret, headers, BODY, { now: at(-300) })).toEqual(EVENT)

    const old = await rejection(() => verifyWebhook(secret, headers, BODY, { now: at(301) }))
    expect(old.message).toBe(`webhook-timestamp ${timestamp} is more than 300 s from now`)
    await rejection(() => verifyWebhook(secret, headers, BODY, { now: at(3600) }))
    const future = await rejection(() => verifyWebhook(secret, headers, BODY, { now: at(-301) }))
    expect(future.message).toBe(`webhook-timestamp ${timestamp} is more than 300 s from now`)
  })

  it('rejects a real message that is 10 minutes old without the now option', async () => {
    const secret = generateSecret()
    const headers = await signed([secret], { timestamp: nowSeconds() - 600 })
    await rejection(() => verifyWebhook(secret, headers, BODY))
  })

  for (const timestamp of ['soon', '1.7e9', '', '-5', '17000000.5', ' 1700000000']) {
    it(`rejects the non-numeric timestamp "${timestamp}"`, async () => {
      const secret = generateSecret()
      const headers = await signed([secret])
      await rejection(() => verifyWebhook(secret, { ...headers, 'webhook-timestamp': timestamp }, BODY))
    })
  }

  for (const signature of ['garbage', 'v1,', 'v1,!!!not-base64!!!', 'v1,AAAA', 'v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=']) {
    it(`rejects the garbage signature "${signature}"`, async () => {
      const secret = generateSecret()
      const headers = await signed([secret])
      const error = await rejection(() => verifyWebhook(secret, { ...headers, 'webhook-signature': signature }, BODY))
      expect(error.message).toBe('no webhook-signature matches the secret')
    })
  }

  it('accepts a valid signature among garbage ones', async () => {
    const secret = generateSecret()
    const headers = await signed([secret])
    const mixed = `v2,abc v1,!!! ${headers['webhook-signature']}`
    expect(await verifyWebhook(secret, { ...headers, 'webhook-signature': mixed }, BODY)).toEqual(EVENT)
  })

  it('rejects with a verification error when the secret itself is not valid base64', async () => {
    const headers = await signed([generateSecret()])
    const error = await rejection(() => verifyWebhook('whsec_***', headers, BODY))
    expect(error.message).toBe('the secret is not a valid whsec_ secret or whpk_ public key')
  })
})

describe('messages signed by the standardwebhooks library, verified by verifyWebhook', () => {
  it('are accepted', async () => {
    const secret = generateSecret()
    const wh = new Webhook(secret)
    const date = new Date()
    const headers = {
      'webhook-id': MSG_ID,
      'webhook-timestamp': String(Math.floor(date.getTime() / 1000)),
      'webhook-signature': wh.sign(MSG_ID, date, BODY),
    }
    expect(await verifyWebhook(secret, headers, BODY)).toEqual(EVENT)
    expect(await verifyWebhook(secret, new Headers(headers), BODY)).toEqual(EVENT)
  })

  it('are refused when the body was changed or the secret differs', async () => {
    const secret = generateSecret()
    const date = new Date()
    const headers = {
      'webhook-id': MSG_ID,
      'webhook-timestamp': String(Math.floor(date.getTime() / 1000)),
      'webhook-signature': new Webhook(secret).sign(MSG_ID, date, BODY),
    }
    await rejection(() => verifyWebhook(secret, headers, BODY.replace('create', 'delete')))
    await rejection(() => verifyWebhook(generateSecret(), headers, BODY))
  })
})
