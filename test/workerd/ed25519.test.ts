// Runs inside workerd: Ed25519 (`v1a`) signing keys made, imported and used by workerd's WebCrypto.
import * as ed from '@noble/ed25519'
import { describe, expect, it } from 'vitest'
import { generateSigningKey, importSecret, publicKeyOf, sign, verifyWebhook } from 'cotwebhook'

const bytesOf = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))

describe('Ed25519 in workerd', () => {
  it('signs v1a; verifyWebhook and @noble/ed25519 accept it, and a tampered body, a wrong key and an old timestamp are refused', async () => {
    const key = await generateSigningKey()
    const publicKey = publicKeyOf(key)
    const body = JSON.stringify({ company: '625be93a286ef83c1c0e845f', type: 'COTTask', event: 'create', data: { _id: '6261612a8f1e9999775c8be4' } })
    const timestamp = Math.floor(Date.now() / 1000)
    const signature = await sign([await importSecret(key)], 'msg_1', timestamp, body)
    expect(signature).toMatch(/^v1a,/)
    const headers = new Headers({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(timestamp), 'webhook-signature': signature })
    expect((await verifyWebhook(publicKey, headers, body)).type).toBe('COTTask')
    const content = new TextEncoder().encode(`msg_1.${timestamp}.${body}`)
    expect(await ed.verifyAsync(bytesOf(signature.slice(4)), content, bytesOf(publicKey.slice(5)))).toBe(true)
    await expect(verifyWebhook(publicKey, headers, body.replace('create', 'delete'))).rejects.toThrow('no webhook-signature matches')
    await expect(verifyWebhook(publicKeyOf(await generateSigningKey()), headers, body)).rejects.toThrow('no webhook-signature matches')
    await expect(verifyWebhook(publicKey, headers, body, { now: (timestamp + 3600) * 1000 })).rejects.toThrow('s from now')
  })
})
