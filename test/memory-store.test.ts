import { memoryStore } from 'cotwebhook'
import { runStoreConformance } from 'cotwebhook/testing'

runStoreConformance({ name: 'memory', create: () => memoryStore() })
