/**
 * Ed25519 (`v1a`) on the runtime it runs on, Web APIs only: a signing key made and imported by this
 * runtime's WebCrypto signs; verifyWebhook and @noble/ed25519 (an implementation that is not ours)
 * check the signature; a tampered body, a wrong key and an old timestamp are refused. Prints one JSON line.
 */
import * as ed from '@noble/ed25519'
import { generateSigningKey, importSecret, publicKeyOf, sign, verifyWebhook } from 'cotwebhook'

const runtime = typeof (globalThis as { Bun?: { version: string } }).Bun !== 'undefined' ? `bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}` : `node ${process.version}`
const bytesOf = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
const refused = (run: Promise<unknown>) => run.then(() => false, () => true)

const key = await generateSigningKey()
const publicKey = publicKeyOf(key)
const body = JSON.stringify({ company: '625be93a286ef83c1c0e845f', type: 'COTTask', event: 'create', data: { _id: '6261612a8f1e9999775c8be4' } })
const timestamp = Math.floor(Date.now() / 1000)
const signature = await sign([await importSecret(key)], 'msg_1', timestamp, body)
const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(timestamp), 'webhook-signature': signature }
const content = new TextEncoder().encode(`msg_1.${timestamp}.${body}`)

console.log(
  JSON.stringify({
    runtime,
    label: signature.split(',')[0],
    verified: (await verifyWebhook(publicKey, headers, body)).type === 'COTTask',
    independent: await ed.verifyAsync(bytesOf(signature.slice(4)), content, bytesOf(publicKey.slice(5))),
    tamperedRefused: await refused(verifyWebhook(publicKey, headers, body.replace('create', 'delete'))),
    wrongKeyRefused: await refused(verifyWebhook(publicKeyOf(await generateSigningKey()), headers, body)),
    expiredRefused: await refused(verifyWebhook(publicKey, headers, body, { now: (timestamp + 3600) * 1000 })),
  }),
)
