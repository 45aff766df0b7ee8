export { nodeSigner } from './node-signer.js'
export { nodeTransport } from './node-transport.js'
export type { NodeTransport, NodeTransportOptions } from './node-transport.js'
