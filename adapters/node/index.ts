export { nodeTransport } from './node-transport.js'
export type { NodeTransport, NodeTransportOptions } from './node-transport.js'
