import type { Tables } from '../sql/schema.js'
import { claimFunction } from './pg-claim.js'
import { settleFunction } from './pg-settle.js'
import { functionNames, notifyDeliveries } from './pg-sql.js'


/**
 * The PostgreSQL store's operations as SQL functions, created by `migrate()`: an enqueue of many
 * emits, a claim, and a settle of many deliveries are each one call: one round trip, one commit. They
 * follow the rules the other stores follow (`../sql/queue-rules.ts` in TypeScript, here in PL/pgSQL;
 * the conformance suite holds them to the same answers).
 *
 * The tables start empty and grow faster than statistics follow, so a plan cached while they were
 * small would scan them whole for ever after: the functions run with sequential scans off, and every
 * lookup goes through its index. The opposite happens on a big backlog: estimates over a million open
 * deliveries pass `jit_above_cost`, and compiling a claim that touches a few rows took 100 ms, so JIT
 * is off in the functions too.
 *
 * Locks are taken in one order everywhere, so they never deadlock: idempotency keys in key order, then
 * a webhook's queue row before its deliveries, several queue rows in the order of their webhook ids.
 * Claims skip rows others hold (`SKIP LOCKED`); enqueues and settles wait for them.
 */

/**
 * The version of the functions below, kept beside the schema's: a change to them alone (no table
 * changed) is brought to a database by `migrate()` without a schema version the other stores would
 * have to migrate to. 2: an enqueue of several emits leases each within its own limit. 3: a claim made
 * inside a settle leaves wake-ups to plain claims (lock order). 4: `settle_turns`, a settle whose claims
 * go on from the engine's company turn (`p_after`) and answer where they left it; `settle` stays as it
 * was for engines of earlier releases.
 */
export const FUNCTIONS_VERSION = 4

/** The functions version from which a database has `settle_turns` (see {@link settleFunction}). */
export const SETTLE_TURNS_SINCE = 4

/** The DDL creating (or replacing) the functions and the trigger, one statement per entry. */
export function functionStatements(t: Tables, channel: string): string[] {
  const f = functionNames(t)
  const notify = notifyDeliveries(channel)
  return [
    // ---- enqueue: the emits of several callers, grouped by the store into one call. With p_claim, the
    // new deliveries that may go now are leased to the emitting engine in the same call (it delivers
    // them without a claim round trip); only what is left is announced to the others.
    `CREATE OR REPLACE FUNCTION ${f.enqueue}(p_items jsonb, p_claim jsonb)
    RETURNS TABLE (i int, duplicate boolean, stored jsonb, delivery jsonb, event jsonb, id text, token text)
    LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan AS $fn$
    #variable_conflict use_column
    DECLARE
      r record;
      n_made int := 0;
      leased int := 0;
      waited int := 0;
      new_ids text[] := ARRAY(SELECT d->>'id' FROM jsonb_array_elements(p_items) x, jsonb_array_elements(x->'deliveries') d);
      v_ordered boolean := COALESCE((p_claim->>'ordered')::boolean, true);
      until bigint := (p_claim->>'now')::bigint + (p_claim->>'leaseMs')::bigint;
    BEGIN
      -- These deliveries come with their queues: the trigger for earlier releases' inserts stays out.
      PERFORM set_config('cotwebhook.queued', '1', true);
      FOR r IN
        WITH input AS (
          SELECT (n - 1)::int AS i, x->>'company' AS company, x->>'eventId' AS event_id, x->'event' AS body,
            x->>'key' AS key, x->'result' AS result, x->'deliveries' AS deliveries, (x->>'now')::bigint AS now, x->>'trace' AS trace
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(x, n)
        ), claimed AS (
          -- Keys first, in key order: an item whose key was seen is a repeat.
          INSERT INTO ${t.idempotency} (company, key, result, event_id, created_at)
          SELECT company, key, result, event_id, now FROM input WHERE key IS NOT NULL ORDER BY company, key
          ON CONFLICT DO NOTHING RETURNING company, key
        ), fresh AS (
          SELECT * FROM input WHERE key IS NULL OR EXISTS (SELECT 1 FROM claimed c WHERE c.company = input.company AND c.key = input.key)
        ), events AS (
          INSERT INTO ${t.events} (id, company, body, created_at)
          SELECT event_id, company, body, now FROM fresh WHERE jsonb_array_length(deliveries) > 0 RETURNING 1
        ), made AS (
          INSERT INTO ${t.deliveries} (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at, trace)
          SELECT d->>'id', f.company, d->>'webhookId', f.event_id, 'pending', '[]'::jsonb, NULL, '', f.now, f.now, f.now, f.trace
          FROM fresh f, jsonb_array_elements(f.deliveries) WITH ORDINALITY AS e(d, n) ORDER BY f.i, e.n
          RETURNING seq, webhook_id, company, next_attempt_at
        ), arrived AS (
          -- Each queue once, in webhook id order (the lock order).
          INSERT INTO ${t.queues} AS q (webhook_id, company, version, open, hint, hint_seq)
          SELECT webhook_id, min(company), 1, count(*), min(next_attempt_at), min(seq) FROM made GROUP BY webhook_id ORDER BY webhook_id
          ON CONFLICT (webhook_id) DO UPDATE SET version = q.version + 1, open = q.open + excluded.open,
            hint = CASE WHEN q.hint IS NULL OR GREATEST(excluded.hint, COALESCE(q.open_until, 0)) < q.hint
              THEN GREATEST(excluded.hint, COALESCE(q.open_until, 0)) ELSE q.hint END,
            hint_seq = CASE WHEN q.hint IS NULL OR GREATEST(excluded.hint, COALESCE(q.open_until, 0)) < q.hint
              THEN excluded.hint_seq ELSE q.hint_seq END
          RETURNING 1
        )
        SELECT input.i, input.company, input.key, NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.i = input.i) AS dup,
          (SELECT count(*) FROM made)::int AS rows
        FROM input ORDER BY input.i
      LOOP
        n_made := r.rows;
        IF r.dup THEN
          -- A statement of its own: it sees the first enqueue of the key, committed meanwhile.
          RETURN QUERY SELECT r.i, true, k.result, NULL::jsonb, NULL::jsonb, NULL::text, NULL::text FROM ${t.idempotency} k WHERE k.company = r.company AND k.key = r.key;
        ELSE
          RETURN QUERY SELECT r.i, false, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::text, NULL::text;
        END IF;
      END LOOP;
      IF n_made > 0 AND p_claim IS NOT NULL THEN
        -- New deliveries that may go at once, to the emitting engine: of a plain queue (no circuit opened,
        -- no rate), and ordered, only a queue's first one when nothing else of it is open.
        FOR r IN
          WITH mine AS (
            SELECT d.seq, d.webhook_id, d.event_id FROM ${t.deliveries} d WHERE d.id = ANY(new_ids)
          ), fresh AS (
            SELECT m.webhook_id, count(*) AS n, min(m.seq) AS first_seq FROM mine m GROUP BY m.webhook_id
          ), eligible AS (
            SELECT m.seq, m.event_id, row_number() OVER (PARTITION BY m.event_id ORDER BY m.seq) AS k
            FROM mine m JOIN fresh f ON f.webhook_id = m.webhook_id JOIN ${t.queues} qq ON qq.webhook_id = m.webhook_id
            WHERE qq.open_until IS NULL AND qq.rate_per_second IS NULL
              AND (NOT v_ordered OR (m.seq = f.first_seq AND qq.out = 0 AND NOT EXISTS (
                SELECT 1 FROM ${t.deliveries} x WHERE x.webhook_id = m.webhook_id AND x.state = 'pending' AND x.seq < f.first_seq)))
          ), chosen AS (
            -- Each emit of the group within its own limit (claimLimit), and the group within the call's.
            SELECT el.seq FROM eligible el JOIN jsonb_array_elements(p_items) AS it(e) ON it.e->>'eventId' = el.event_id
            WHERE el.k <= COALESCE((it.e->>'claimLimit')::int, 0)
            ORDER BY el.seq LIMIT (p_claim->>'limit')::int
          ), lent AS (
            UPDATE ${t.deliveries} d SET lease_token = (p_claim->>'token') || ':' || d.seq, lease_until = until FROM chosen WHERE d.seq = chosen.seq
            RETURNING d.*
          ), counted AS (
            SELECT lent.webhook_id, count(*) AS n FROM lent GROUP BY lent.webhook_id
          ), moved AS (
            UPDATE ${t.queues} qq SET version = qq.version + 1, ordered = v_ordered, out = qq.out + k.n,
              out_until = GREATEST(COALESCE(qq.out_until, until), until),
              hint = CASE WHEN v_ordered THEN until + 1 ELSE qq.hint END
            FROM counted k WHERE qq.webhook_id = k.webhook_id
            RETURNING 1
          )
          -- The emitter knows the rest of each delivery: only which ones, and their lease.
          SELECT (x.n - 1)::int AS item, lent.id, lent.lease_token, (SELECT count(*) FROM moved) AS queues
          FROM lent JOIN jsonb_array_elements(p_items) WITH ORDINALITY AS x(e, n) ON x.e->>'eventId' = lent.event_id
          ORDER BY lent.seq
        LOOP
          leased := leased + 1;
          RETURN QUERY SELECT r.item, false, NULL::jsonb, NULL::jsonb, NULL::jsonb, r.id, r.lease_token;
        END LOOP;
      END IF;
      IF n_made > leased AND p_claim IS NOT NULL AND v_ordered THEN
        -- New deliveries behind one of their webhook's that is out: the settle of that one passes the
        -- queue on, so nobody needs waking for them (the emitter is told how many, per item).
        FOR r IN
          SELECT (x.n - 1)::int AS item, count(*)::int AS n
          FROM ${t.deliveries} d JOIN ${t.queues} qq ON qq.webhook_id = d.webhook_id
            JOIN jsonb_array_elements(p_items) WITH ORDINALITY AS x(e, n) ON x.e->>'eventId' = d.event_id
          WHERE d.id = ANY(new_ids) AND d.lease_token IS NULL AND qq.out > 0 AND qq.out_until >= (p_claim->>'now')::bigint
          GROUP BY x.n
        LOOP
          waited := waited + r.n;
          RETURN QUERY SELECT r.item, false, jsonb_build_object('waiting', r.n), NULL::jsonb, NULL::jsonb, NULL::text, NULL::text;
        END LOOP;
      END IF;
      IF n_made > leased + waited THEN ${notify}; END IF;
    END $fn$`,

    // Version 2 took no trace context.
    `DROP FUNCTION IF EXISTS ${f.enqueueInTx}(text, text, jsonb, text[], text[], bigint, text, jsonb)`,

    // ---- enqueue inside the host's transaction: no queue row is locked until the host commits; the
    // deliveries announce themselves through wake-ups, which the next claim folds into the queues.
    `CREATE OR REPLACE FUNCTION ${f.enqueueInTx}(p_company text, p_event_id text, p_body jsonb, p_ids text[], p_webhook_ids text[], p_now bigint, p_key text, p_result jsonb, p_trace text)
    RETURNS TABLE (duplicate boolean, stored jsonb) LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $fn$
    #variable_conflict use_column
    DECLARE
      claimed int;
    BEGIN
      IF p_key IS NOT NULL THEN
        INSERT INTO ${t.idempotency} (company, key, result, event_id, created_at) VALUES (p_company, p_key, p_result, p_event_id, p_now) ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS claimed = ROW_COUNT;
        IF claimed = 0 THEN
          RETURN QUERY SELECT true, k.result FROM ${t.idempotency} k WHERE k.company = p_company AND k.key = p_key;
          RETURN;
        END IF;
      END IF;
      IF coalesce(array_length(p_ids, 1), 0) > 0 THEN
        PERFORM set_config('cotwebhook.queued', '1', true);
        INSERT INTO ${t.events} (id, company, body, created_at) VALUES (p_event_id, p_company, p_body, p_now);
        WITH made AS (
          INSERT INTO ${t.deliveries} (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at, trace)
          SELECT d.id, p_company, d.webhook_id, p_event_id, 'pending', '[]'::jsonb, NULL, '', p_now, p_now, p_now, p_trace
          FROM unnest(p_ids, p_webhook_ids) WITH ORDINALITY AS d(id, webhook_id, n) ORDER BY d.n
          RETURNING seq, webhook_id
        )
        INSERT INTO ${t.wakeups} (webhook_id, company, n, at, first_seq)
        SELECT webhook_id, p_company, count(*), p_now, min(seq) FROM made GROUP BY webhook_id;
        ${notify};
      END IF;
      RETURN QUERY SELECT false, NULL::jsonb;
    END $fn$`,

    // Deliveries written by an earlier release (no queue rows of their own) wake their queues too, so
    // a rolling deploy loses nothing: this trigger turns them into wake-ups.
    `CREATE OR REPLACE FUNCTION ${f.wake}() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      IF current_setting('cotwebhook.queued', true) IS DISTINCT FROM '1' THEN
        INSERT INTO ${t.wakeups} (webhook_id, company, n, at, first_seq)
        SELECT webhook_id, min(company), count(*), min(next_attempt_at), min(seq) FROM made_rows GROUP BY webhook_id;
      END IF;
      RETURN NULL;
    END $fn$`,
    `DROP TRIGGER IF EXISTS ${t.index}wake_earlier ON ${t.deliveries}`,
    `CREATE TRIGGER ${t.index}wake_earlier AFTER INSERT ON ${t.deliveries} REFERENCING NEW TABLE AS made_rows FOR EACH STATEMENT EXECUTE FUNCTION ${f.wake}()`,

    claimFunction(t, f),
    settleFunction(t, f, channel, false),
    settleFunction(t, f, channel, true),
  ]
}
