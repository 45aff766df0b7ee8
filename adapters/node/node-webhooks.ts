import { createWebhooks, type Webhooks, type WebhooksOptions } from 'cotwebhook'
import { nodeSigner } from './node-signer.js'
import { nodeTransport } from './node-transport.js'
import type { Resolver } from './pinned-lookup.js'

/** Options of {@link createNodeWebhooks}: the engine's, plus the pool's size. */
export interface NodeWebhooksOptions extends Omit<WebhooksOptions, 'transport' | 'fetch'> {
  /** Keep-alive connections per receiver origin. Default: the engine's `concurrency` (32). */
  connections?: number
  /** The resolver whose answers are vetted and pinned. Default `dns.lookup`. */
  lookup?: Resolver
}

/**
 * `createWebhooks()` for Node and Bun: undici's keep-alive pool sized to the engine's concurrency,
 * connecting only where the engine's URL policy allows with DNS answers vetted and pinned, and
 * `node:crypto` signing. `close()` also closes the pool.
 *
 * @example
 * ```ts
 * import { createNodeWebhooks } from 'cotwebhook/node'
 * const hooks = createNodeWebhooks({ store, concurrency: 64 })
 * ```
 */
export function createNodeWebhooks(options: NodeWebhooksOptions = {}): Webhooks {
  const { connections, lookup, ...engineOptions } = options
  const concurrency = engineOptions.concurrency ?? 32
  const transport = nodeTransport({
    connections: connections ?? concurrency,
    // The same destinations the engine's URL policy allows, now enforced on the resolved addresses.
    allowPrivateNetworks: engineOptions.allowPrivateNetworks ?? false,
    ...(engineOptions.allowCidrs ? { allowCidrs: engineOptions.allowCidrs } : {}),
    ...(lookup ? { lookup } : {}),
  })
  const hooks = createWebhooks({ signer: nodeSigner(), ...engineOptions, concurrency, transport })
  return {
    ...hooks,
    async close() {
      await hooks.close()
      await transport.close()
    },
  }
}
