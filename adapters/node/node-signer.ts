import { createHmac } from 'node:crypto'
import type { Signer } from 'cotwebhook'

/**
 * A signer on `node:crypto`'s synchronous HMAC-SHA256: the same Standard Webhooks signatures as the
 * WebCrypto default, without a trip through the thread pool for each one.
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
      const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64')
      if (!key.length) throw new RangeError('a whsec_ secret must not be empty')
      return key
    },
    sign(keys, id, timestamp, body) {
      const content = `${id}.${timestamp}.${body}`
      let header = ''
      for (const key of keys) {
        header += `${header ? ' ' : ''}v1,${createHmac('sha256', key as Buffer).update(content).digest('base64')}`
      }
      return header
    },
  }
}
