import type { Tables } from '../sql/schema.js'

/**
 * Pieces of SQL the PostgreSQL store's functions share (see `pg-functions.ts`), and their names.
 */

/**
 * The names of the functions for a set of tables.
 *
 * @example
 * ```ts
 * functionNames(tables('cotwebhook_', 'public')).claim // 'public.cotwebhook_claim'
 * ```
 */
export function functionNames(t: Tables) {
  const schema = t.queues.split('.')[0]!
  const name = (fn: string) => `${schema}.${t.index}${fn}`
  return { enqueue: name('enqueue'), enqueueInTx: name('enqueue_in_tx'), claim: name('claim'), settle: name('settle'), settleTurns: name('settle_turns'), wake: name('wake_earlier') }
}

/** The functions' names, as {@link functionNames} gives them. */
export type FunctionNames = ReturnType<typeof functionNames>

/** The gate of a queue row variable: the earliest its endpoint lets anything go (NULL: no gate). */
export const gate = (q: string) => `GREATEST(
    CASE WHEN ${q}.open_until IS NULL THEN NULL ELSE GREATEST(${q}.open_until, COALESCE(${q}.probe_until + 1, ${q}.open_until)) END,
    CASE WHEN ${q}.rate_per_second IS NOT NULL AND ${q}.tokens_at IS NOT NULL AND ${q}.tokens < 1
      THEN ${q}.tokens_at + CEIL((1 - ${q}.tokens) * 1000 / ${q}.rate_per_second)::bigint END)`

/** A rate bucket of a queue row variable refilled to `now` (without writing it back). */
export const refilled = (q: string, now: string) =>
  `CASE WHEN ${q}.tokens_at IS NULL THEN ${q}.rate_burst::double precision ELSE LEAST(${q}.rate_burst, ${q}.tokens + GREATEST(0, ${now} - ${q}.tokens_at) * ${q}.rate_per_second / 1000) END`

/** A delivery row (under `alias`) as the JSON the store reads back. */
export const deliveryJson = (alias: string) => `jsonb_build_object('seq', ${alias}.seq, 'id', ${alias}.id, 'company', ${alias}.company,
    'webhook_id', ${alias}.webhook_id, 'event_id', ${alias}.event_id, 'state', ${alias}.state, 'attempts', ${alias}.attempts,
    'status', ${alias}.status, 'response', ${alias}.response, 'created_at', ${alias}.created_at, 'updated_at', ${alias}.updated_at,
    'next_attempt_at', ${alias}.next_attempt_at, 'lease_token', ${alias}.lease_token, 'trace', ${alias}.trace)`

/** The notification every engine listening on `channel` wakes on. */
export const notifyDeliveries = (channel: string) => `PERFORM pg_notify('${channel}', '{"kind":"deliveries"}')`
