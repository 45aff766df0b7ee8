import { importSecret, sign } from './signing.js'

/**
 * How signatures are made. The default uses WebCrypto, which every runtime has; a runtime with a
 * faster synchronous HMAC plugs it in here (`nodeSigner()` from `cotwebhook/node`). Whatever signs,
 * the result is the Standard Webhooks `v1,<base64>` list.
 */
export interface Signer {
  /** Turns a `whsec_…` secret into whatever `sign` needs; done once per webhook and cached. */
  prepare(secret: string): unknown
  /** The `webhook-signature` value of `id.timestamp.body` under each prepared key, space-separated. */
  sign(keys: readonly unknown[], id: string, timestamp: number, body: string): string | Promise<string>
}

/**
 * The default signer, on WebCrypto's HMAC-SHA256.
 *
 * @example
 * ```ts
 * createWebhooks({ signer: webCryptoSigner })
 * ```
 */
export const webCryptoSigner: Signer = {
  prepare: importSecret,
  sign: (keys, id, timestamp, body) => sign(keys as CryptoKey[], id, timestamp, body),
}
