import type { StoreChange } from 'cotwebhook'
import type { PgPool, PgPoolClient } from './pg-types.js'

/**
 * Holds one pooled connection in `LISTEN` on the store's channel and passes each notification on.
 * If the connection dies it listens again, backing off up to 30 s between tries, and then announces
 * a `reset`: notifications sent meanwhile are lost, so listeners drop what they cached and look for
 * work. Resolves to a function that stops listening and gives the connection back.
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
    let dead = false
    next.on('error', () => {
      // pg may report one lost connection more than once: handle it once.
      if (dead) return
      dead = true
      if (client === next) client = undefined
      try {
        next.release(true)
      } catch {
        // Already given back by the pool's own error handling.
      }
      void reconnect()
    })
    try {
      await next.query(`LISTEN "${channel}"`)
    } catch (error) {
      next.release(true)
      throw error
    }
    client = next
    if (stopped) await stop()
  }

  const reconnect = async () => {
    for (let delay = 500; !stopped; delay = Math.min(delay * 2, 30_000)) {
      await new Promise((resolve) => setTimeout(resolve, delay))
      if (stopped) return
      try {
        await connect()
        listener({ kind: 'reset' })
        return
      } catch {
        // Still down: try again later.
      }
    }
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
