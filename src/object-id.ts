/**
 * MongoDB-style ObjectIds: 4 bytes of seconds since the epoch, 5 random bytes fixed per process,
 * and a 3-byte counter. Ids made later sort later, which the stores use for newest-first order.
 */

const processRandom = crypto.getRandomValues(new Uint8Array(5))
let counter = crypto.getRandomValues(new Uint32Array(1))[0]! & 0xffffff

/**
 * A new ObjectId as 24 lowercase hexadecimal characters.
 *
 * @example
 * ```ts
 * objectId() // '6568f1c2a1b2c3d4e5000001'
 * ```
 */
export function objectId(now: number = Date.now()): string {
  counter = (counter + 1) & 0xffffff
  const seconds = Math.floor(now / 1000)
  return (
    hex(seconds, 8) +
    Array.from(processRandom, (b) => hex(b, 2)).join('') +
    hex(counter, 6)
  )
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0').slice(-width)
}
