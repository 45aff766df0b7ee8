/**
 * The parts of Cloudflare's D1 binding the store uses, so the package depends on its shape and not
 * on @cloudflare/workers-types.
 */

/** A prepared D1 statement. */
export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike
  first<T = Record<string, unknown>>(): Promise<T | null>
  all<T = Record<string, unknown>>(): Promise<{ results: T[] }>
  run(): Promise<{ meta: { changes?: number } }>
}

/** A D1 database binding (`env.DB`). */
export interface D1Like {
  prepare(query: string): D1StatementLike
  batch(statements: D1StatementLike[]): Promise<{ results?: unknown[]; meta?: { changes?: number } }[]>
}
