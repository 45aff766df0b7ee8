/**
 * Cuts text to at most `maxBytes` bytes of UTF-8, never inside a character: what the log keeps of a
 * response is bounded in bytes, whatever part of it came from a header or a note of ours.
 *
 * @example
 * ```ts
 * clipText('héllo', 2) // 'h' (é takes two bytes and would not fit whole)
 * ```
 */
export function clipText(text: string, maxBytes: number): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8: short text needs no encoding to know it fits.
  if (text.length * 3 <= maxBytes) return text
  const bytes = encoder.encode(text)
  if (bytes.length <= maxBytes) return text
  // Decoding a cut sequence ends in U+FFFD: drop it, so only whole characters remain.
  return decoder.decode(bytes.subarray(0, maxBytes)).replace(/\uFFFD+$/, '')
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
