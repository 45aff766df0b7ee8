import type { StoreChange } from 'cotwebhook'
import type { PgPool, PgPoolClient } from './pg-types.js'

/**
 * Holds one pooled connection in `LISTEN` on the store's channel and passes each notification on.
 * If the connection dies it listens again after a second; meanwhile the engines' poll covers the gap.
 * Resolves to a function that stops listening and gives the connection back.
 */
export async function listen(pool: PgPool, channel: string, listener: (change: StoreChange) => void): Promise<() => Promise<void>> {
  let stopped = false
  let client: PgPoolClient | undefined

  const connect = async (): Promise<void> => {
    const next = await pool.connect()
    next.on('notification', (message) => {
      if (message.channel !== channel || !message.payload) return
      let change: StoreChange
      try {
        change = JSON.parse(message.payload) as StoreChange
      } catch {
        return // a payload from something else on the channel
      }
      listener(change)
    })
    next.on('error', () => {
      next.release(true)
      if (client === next) client = undefined
      if (!stopped) setTimeout(() => void connect().catch(() => {}), 1_000)
    })
    await next.query(`LISTEN "${channel}"`)
    client = next
    if (stopped) await stop()
  }

  const stop = async () => {
    stopped = true
    const current = client
    client = undefined
    if (!current) return
    await current.query(`UNLISTEN "${channel}"`).catch(() => {})
    current.release()
  }

  await connect()
  return stop
}
