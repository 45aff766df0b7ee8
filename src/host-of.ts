/**
 * The `host:port` of a URL, what per-host limits and messages name; the text itself if it does not parse.
 *
 * @example
 * ```ts
 * hostOf('https://api.example.com:8443/hooks') // 'api.example.com:8443'
 * ```
 */
export function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return url
  }
}
