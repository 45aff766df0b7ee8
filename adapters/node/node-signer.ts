import { createHmac, createPrivateKey, sign, type KeyObject } from 'node:crypto'
import { publicKeyOf, type Signer } from 'cotwebhook'

/**
 * A signer on `node:crypto`'s synchronous HMAC-SHA256 and Ed25519: the same Standard Webhooks
 * signatures as the WebCrypto default (`v1` for a `whsec_` secret, `v1a` for a `whsk_` signing key),
 * without a trip through the thread pool for each one.
 *
 * @returns {Signer} a signer for `createWebhooks({ signer })`
 * @example
 * ```ts
 * import { nodeSigner, nodeTransport } from 'cotwebhook/node'
 * const hooks = createWebhooks({ transport: nodeTransport(), signer: nodeSigner() })
 * ```
 */
export function nodeSigner(): Signer {
  return {
    prepare(secret) {
      if (secret.startsWith('whsk_')) {
        const bytes = Buffer.from(secret.slice('whsk_'.length), 'base64')
        if (bytes.length !== 64) throw new RangeError('a whsk_ signing key must be whsk_ and the base64 of 64 bytes')
        const publicKey = Buffer.from(publicKeyOf(secret).slice('whpk_'.length), 'base64')
        const jwk = { kty: 'OKP', crv: 'Ed25519', d: bytes.subarray(0, 32).toString('base64url'), x: publicKey.toString('base64url') }
        return createPrivateKey({ key: jwk, format: 'jwk' })
      }
      const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64')
      if (!key.length) throw new RangeError('a whsec_ secret must not be empty')
      return key
    },
    sign(keys, id, timestamp, body) {
      const content = `${id}.${timestamp}.${body}`
      let header = ''
      for (const key of keys) {
        const signature = Buffer.isBuffer(key)
          ? `v1,${createHmac('sha256', key).update(content).digest('base64')}`
          : `v1a,${sign(null, Buffer.from(content), key as KeyObject).toString('base64')}`
        header += `${header ? ' ' : ''}${signature}`
      }
      return header
    },
  }
}
