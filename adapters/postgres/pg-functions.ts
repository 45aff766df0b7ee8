import type { Tables } from '../sql/schema.js'

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

/** The names of the functions for a set of tables. */
export function functionNames(t: Tables) {
  const schema = t.queues.split('.')[0]!
  const name = (fn: string) => `${schema}.${t.index}${fn}`
  return { enqueue: name('enqueue'), enqueueInTx: name('enqueue_in_tx'), claim: name('claim'), settle: name('settle'), wake: name('wake_earlier') }
}

// The gate of a queue row variable: the earliest its endpoint lets anything go (NULL: no gate).
const gate = (q: string) => `GREATEST(
    CASE WHEN ${q}.open_until IS NULL THEN NULL ELSE GREATEST(${q}.open_until, COALESCE(${q}.probe_until + 1, ${q}.open_until)) END,
    CASE WHEN ${q}.rate_per_second IS NOT NULL AND ${q}.tokens_at IS NOT NULL AND ${q}.tokens < 1
      THEN ${q}.tokens_at + CEIL((1 - ${q}.tokens) * 1000 / ${q}.rate_per_second)::bigint END)`

// A rate bucket of a queue row variable refilled to `now` (without writing it back).
const refilled = (q: string, now: string) =>
  `CASE WHEN ${q}.tokens_at IS NULL THEN ${q}.rate_burst::double precision ELSE LEAST(${q}.rate_burst, ${q}.tokens + GREATEST(0, ${now} - ${q}.tokens_at) * ${q}.rate_per_second / 1000) END`

/** The DDL creating (or replacing) the functions and the trigger, one statement per entry. */
export function functionStatements(t: Tables, channel: string): string[] {
  const f = functionNames(t)
  const notify = `PERFORM pg_notify('${channel}', '{"kind":"deliveries"}')`
  const deliveryJson = (alias: string) => `jsonb_build_object('seq', ${alias}.seq, 'id', ${alias}.id, 'company', ${alias}.company,
    'webhook_id', ${alias}.webhook_id, 'event_id', ${alias}.event_id, 'state', ${alias}.state, 'attempts', ${alias}.attempts,
    'status', ${alias}.status, 'response', ${alias}.response, 'created_at', ${alias}.created_at, 'updated_at', ${alias}.updated_at,
    'next_attempt_at', ${alias}.next_attempt_at, 'lease_token', ${alias}.lease_token)`
  // The settle's queue row variable `q` written back, whole (it holds the queue's lock meanwhile).
  const writeQueue = `UPDATE ${t.queues} qq SET version = qq.version + 1, open = q.open, hint = q.hint, hint_seq = q.hint_seq,
    out = q.out, out_until = q.out_until, consecutive_failures = q.consecutive_failures, failing_since = q.failing_since,
    last_success_at = q.last_success_at, last_failure_at = q.last_failure_at, failed_attempts = q.failed_attempts,
    open_until = q.open_until, cooldown_ms = q.cooldown_ms, probe_token = q.probe_token, probe_until = q.probe_until,
    tokens = q.tokens, tokens_at = q.tokens_at WHERE qq.webhook_id = q.webhook_id;`
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
      new_ids text[] := ARRAY(SELECT d->>'id' FROM jsonb_array_elements(p_items) x, jsonb_array_elements(x->'deliveries') d);
      v_ordered boolean := COALESCE((p_claim->>'ordered')::boolean, true);
      until bigint := (p_claim->>'now')::bigint + (p_claim->>'leaseMs')::bigint;
    BEGIN
      -- These deliveries come with their queues: the trigger for earlier releases' inserts stays out.
      PERFORM set_config('cotwebhook.queued', '1', true);
      FOR r IN
        WITH input AS (
          SELECT (n - 1)::int AS i, x->>'company' AS company, x->>'eventId' AS event_id, x->'event' AS body,
            x->>'key' AS key, x->'result' AS result, x->'deliveries' AS deliveries, (x->>'now')::bigint AS now
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
          INSERT INTO ${t.deliveries} (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
          SELECT d->>'id', f.company, d->>'webhookId', f.event_id, 'pending', '[]'::jsonb, NULL, '', f.now, f.now, f.now
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
          ), chosen AS (
            SELECT m.seq FROM mine m JOIN fresh f ON f.webhook_id = m.webhook_id JOIN ${t.queues} qq ON qq.webhook_id = m.webhook_id
            WHERE qq.open_until IS NULL AND qq.rate_per_second IS NULL
              AND (NOT v_ordered OR (m.seq = f.first_seq AND qq.out = 0 AND NOT EXISTS (
                SELECT 1 FROM ${t.deliveries} x WHERE x.webhook_id = m.webhook_id AND x.state = 'pending' AND x.seq < f.first_seq)))
            ORDER BY m.seq LIMIT (p_claim->>'limit')::int
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
      IF n_made > leased THEN ${notify}; END IF;
    END $fn$`,

    // ---- enqueue inside the host's transaction: no queue row is locked until the host commits; the
    // deliveries announce themselves through wake-ups, which the next claim folds into the queues.
    `CREATE OR REPLACE FUNCTION ${f.enqueueInTx}(p_company text, p_event_id text, p_body jsonb, p_ids text[], p_webhook_ids text[], p_now bigint, p_key text, p_result jsonb)
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
          INSERT INTO ${t.deliveries} (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at)
          SELECT d.id, p_company, d.webhook_id, p_event_id, 'pending', '[]'::jsonb, NULL, '', p_now, p_now, p_now
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

    // ---- claim. Queues with nothing special about them (no circuit opened, no rate) are served in one
    // statement each way; the few with a circuit or a rate, one at a time before them.
    `CREATE OR REPLACE FUNCTION ${f.claim}(p_now bigint, p_limit int, p_lease_ms bigint, p_token text, p_ordered boolean, p_durable boolean, p_after text)
    RETURNS TABLE (delivery jsonb, event jsonb, probe boolean, rate_per_second double precision, rate_burst bigint, turn text)
    LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan AS $fn$
    #variable_conflict use_column
    DECLARE
      cand record;
      q record;
      head record;
      nxt record;
      taken int := 0;
      want int;
      got int;
      fresh int;
      first_seq bigint;
      half_open boolean;
      until bigint := p_now + p_lease_ms;
      avail bigint;
      g bigint;
      tok text;
      seqs bigint[] := '{}';
      probes boolean[] := '{}';
      rates double precision[] := '{}';
      bursts bigint[] := '{}';
      seq_list bigint[];
      empties text[] := '{}';
      room int;
      pick record;
      co text;
      wrapped boolean := false;
      turn_ids text[] := '{}';
      turn_cos text[] := '{}';
      last_turn text;
    BEGIN
      -- A claim's commit need not wait for the disk: if the database loses it, the deliveries were not
      -- recorded as sent either, and are claimed again (at-least-once, as after any crash). Emits and
      -- settles keep waiting for theirs.
      IF NOT p_durable THEN PERFORM set_config('synchronous_commit', 'off', true); END IF;
      -- Wake-ups from host transactions (and earlier releases) join their queues.
      IF EXISTS (SELECT 1 FROM ${t.wakeups}) THEN
        WITH w AS (DELETE FROM ${t.wakeups} RETURNING webhook_id, company, n, at, first_seq)
        INSERT INTO ${t.queues} AS qq (webhook_id, company, version, open, hint, hint_seq)
        SELECT webhook_id, min(company), 1, sum(n), min(at), min(first_seq) FROM w GROUP BY webhook_id ORDER BY webhook_id
        ON CONFLICT (webhook_id) DO UPDATE SET version = qq.version + 1, open = qq.open + excluded.open,
          hint = LEAST(COALESCE(qq.hint, excluded.hint), excluded.hint),
          hint_seq = CASE WHEN qq.hint IS NULL OR excluded.hint < qq.hint THEN excluded.hint_seq ELSE qq.hint_seq END;
      END IF;

      -- Queues with a circuit opened or a rate first: one at a time, each looked at under its lock (a
      -- probe or a rate's tokens are few, and so they are not left behind a flood of plain queues).
      FOR cand IN SELECT qr.webhook_id FROM ${t.queues} qr WHERE qr.hint <= p_now AND (qr.open_until IS NOT NULL OR qr.rate_per_second IS NOT NULL)
          ORDER BY qr.hint, qr.hint_seq LIMIT p_limit + 16 LOOP
        EXIT WHEN taken >= p_limit;
        SELECT * INTO q FROM ${t.queues} qr WHERE qr.webhook_id = cand.webhook_id AND qr.hint <= p_now FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        half_open := q.open_until IS NOT NULL;
        want := CASE WHEN p_ordered OR half_open THEN 1 ELSE p_limit - taken END;
        IF half_open AND (q.open_until > p_now OR (q.probe_until IS NOT NULL AND q.probe_until >= p_now)) THEN want := 0; END IF;
        IF q.rate_per_second IS NOT NULL AND want > 0 THEN
          q.tokens := ${refilled('q', 'p_now')};
          q.tokens_at := p_now;
          want := LEAST(want, FLOOR(q.tokens + 1e-9)::int);
        END IF;
        got := 0;
        fresh := 0;
        first_seq := NULL;
        tok := p_token || ':' || q.webhook_id;
        IF want > 0 AND p_ordered THEN
          SELECT d.seq, d.next_attempt_at, d.lease_until INTO head FROM ${t.deliveries} d
            WHERE d.webhook_id = q.webhook_id AND d.state = 'pending' ORDER BY d.seq LIMIT 1;
          IF FOUND THEN
            avail := CASE WHEN head.lease_until IS NULL THEN head.next_attempt_at ELSE GREATEST(head.next_attempt_at, head.lease_until + 1) END;
            IF q.out - (CASE WHEN head.lease_until IS NULL THEN 0 ELSE 1 END) > 0 AND q.out_until IS NOT NULL AND q.out_until >= p_now THEN
              avail := GREATEST(avail, q.out_until + 1);
            END IF;
            IF avail <= p_now THEN
              UPDATE ${t.deliveries} d SET lease_token = tok || ':' || d.seq, lease_until = until WHERE d.seq = head.seq;
              got := 1;
              fresh := CASE WHEN head.lease_until IS NULL THEN 1 ELSE 0 END;
              first_seq := head.seq;
              seq_list := ARRAY[head.seq];
            ELSE
              q.hint := avail;
              q.hint_seq := head.seq;
            END IF;
          END IF;
        ELSIF want > 0 THEN
          WITH picked AS (
            SELECT d.seq, d.lease_until AS was FROM ${t.deliveries} d
            WHERE d.webhook_id = q.webhook_id AND d.state = 'pending' AND d.next_attempt_at <= p_now AND (d.lease_until IS NULL OR d.lease_until < p_now)
            ORDER BY d.next_attempt_at, d.seq LIMIT want FOR UPDATE SKIP LOCKED
          ), leased AS (
            UPDATE ${t.deliveries} d SET lease_token = tok || ':' || d.seq, lease_until = until FROM picked WHERE d.seq = picked.seq
            RETURNING d.seq, picked.was
          )
          SELECT count(*)::int, (count(*) FILTER (WHERE l.was IS NULL))::int, min(l.seq), coalesce(array_agg(l.seq), '{}')
            INTO got, fresh, first_seq, seq_list FROM leased l;
        END IF;
        IF got > 0 THEN
          seqs := seqs || seq_list;
          probes := probes || array_fill(half_open, ARRAY[got]);
          rates := rates || array_fill(q.rate_per_second, ARRAY[got]);
          bursts := bursts || array_fill(q.rate_burst, ARRAY[got]);
          q.out := q.out + fresh;
          q.out_until := GREATEST(COALESCE(q.out_until, until), until);
          IF half_open THEN q.probe_token := tok || ':' || first_seq; q.probe_until := until; END IF;
          IF q.rate_per_second IS NOT NULL THEN q.tokens := q.tokens - got; END IF;
          taken := taken + got;
        END IF;
        g := ${gate('q')};
        IF NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.webhook_id = q.webhook_id AND d.state = 'pending') THEN
          q.hint := NULL; q.hint_seq := NULL; -- idle: under its lock, in a statement of its own
        ELSIF p_ordered AND got > 0 THEN
          q.hint := GREATEST(until + 1, COALESCE(g, until + 1));
          q.hint_seq := first_seq;
        ELSIF p_ordered THEN
          q.hint := GREATEST(COALESCE(q.hint, p_now), COALESCE(g, p_now));
          IF q.hint <= p_now THEN q.hint := p_now + 1; END IF;
        ELSE
          -- What comes next: more due now, the earliest due later, or a lease running out.
          SELECT d.next_attempt_at, d.seq INTO nxt FROM ${t.deliveries} d
            WHERE d.webhook_id = q.webhook_id AND d.state = 'pending' AND (d.lease_until IS NULL OR d.lease_until < p_now)
            ORDER BY d.next_attempt_at, d.seq LIMIT 1;
          IF FOUND THEN
            q.hint := GREATEST(nxt.next_attempt_at, p_now);
            q.hint_seq := nxt.seq;
            IF q.out > 0 AND q.out_until IS NOT NULL THEN q.hint := LEAST(q.hint, q.out_until + 1); END IF;
          ELSE
            q.hint := CASE WHEN q.out > 0 AND q.out_until IS NOT NULL THEN q.out_until + 1 ELSE p_now + 1 END;
          END IF;
          q.hint := GREATEST(q.hint, COALESCE(g, q.hint));
          IF got = 0 AND q.hint <= p_now THEN q.hint := p_now + 1; END IF;
        END IF;
        UPDATE ${t.queues} qq SET version = qq.version + 1, ordered = p_ordered, hint = q.hint, hint_seq = q.hint_seq,
          out = q.out, out_until = q.out_until, probe_token = q.probe_token, probe_until = q.probe_until, tokens = q.tokens, tokens_at = q.tokens_at
          WHERE qq.webhook_id = q.webhook_id;
      END LOOP;

      room := p_limit - taken;
      seq_list := '{}';
      -- Company turns: the earliest due plain queue of each company with due work, company after company
      -- from p_after on (and round from the first), ahead of the queues in the order of their hints, so
      -- a flood of one company costs another one turn. One probe of the turns index per company.
      IF room > 0 THEN
        co := COALESCE(p_after, '');
        LOOP
          SELECT qr.company, qr.webhook_id INTO pick FROM ${t.queues} qr
          WHERE qr.company > co AND qr.hint <= p_now AND qr.open_until IS NULL AND qr.rate_per_second IS NULL
            AND (NOT wrapped OR qr.company <= p_after)
          ORDER BY qr.company, qr.hint, qr.hint_seq LIMIT 1;
          IF NOT FOUND THEN
            EXIT WHEN wrapped OR COALESCE(p_after, '') = '';
            wrapped := true;
            co := '';
            CONTINUE;
          END IF;
          turn_ids := turn_ids || pick.webhook_id;
          turn_cos := turn_cos || pick.company;
          EXIT WHEN cardinality(turn_ids) >= room;
          co := pick.company;
        END LOOP;
      END IF;

      IF room > 0 AND p_ordered THEN
        -- Each due queue's head, if it may go: due, not leased, none of its webhook out.
        WITH turned AS (
          SELECT qr.webhook_id, qr.out, qr.out_until, t.pos, qr.hint, qr.hint_seq
          FROM unnest(turn_ids) WITH ORDINALITY AS t(wid, pos) JOIN ${t.queues} qr ON qr.webhook_id = t.wid
          WHERE qr.hint <= p_now AND qr.open_until IS NULL AND qr.rate_per_second IS NULL
          FOR UPDATE OF qr SKIP LOCKED
        ), hinted AS (
          SELECT qr.webhook_id, qr.out, qr.out_until, NULL::bigint AS pos, qr.hint, qr.hint_seq FROM ${t.queues} qr
          WHERE qr.hint <= p_now AND qr.open_until IS NULL AND qr.rate_per_second IS NULL AND qr.webhook_id <> ALL(turn_ids)
          ORDER BY qr.hint, qr.hint_seq LIMIT room FOR UPDATE SKIP LOCKED
        ), cand AS (
          SELECT u.webhook_id, u.out, u.out_until FROM (SELECT * FROM turned UNION ALL SELECT * FROM hinted) u
          ORDER BY u.pos NULLS LAST, u.hint, u.hint_seq LIMIT room
        ), heads AS (
          SELECT c.webhook_id, c.out, c.out_until, h.seq, h.due, h.lease_until FROM cand c
          LEFT JOIN LATERAL (SELECT d.seq, d.next_attempt_at AS due, d.lease_until FROM ${t.deliveries} d
            WHERE d.webhook_id = c.webhook_id AND d.state = 'pending' ORDER BY d.seq LIMIT 1) h ON true
        ), judged AS (
          -- The heads were read in this statement's snapshot, taken before the queue rows were locked: a
          -- settle that committed in between may have finished or passed on the head. The queue row is
          -- current (locked), so a lease it does not count (nothing out) is one that has ended.
          SELECT heads.*, CASE WHEN seq IS NULL THEN NULL ELSE GREATEST(
            CASE WHEN lease_until IS NULL OR out = 0 THEN due ELSE GREATEST(due, lease_until + 1) END,
            CASE WHEN out - (CASE WHEN lease_until IS NULL THEN 0 ELSE 1 END) > 0 AND out_until >= p_now THEN out_until + 1 ELSE due END) END AS avail
          FROM heads
        ), leased AS (
          -- Only a head still as it was read: pending, its lease unchanged (rechecked on the current row).
          UPDATE ${t.deliveries} d SET lease_token = p_token || ':' || d.seq, lease_until = until FROM judged j
          WHERE d.seq = j.seq AND j.avail <= p_now AND d.state = 'pending' AND d.lease_until IS NOT DISTINCT FROM j.lease_until
          RETURNING d.seq, j.webhook_id AS wid, j.lease_until AS was
        ), moved AS (
          -- Out until its lease ends, unless a settle hands the queue on sooner.
          UPDATE ${t.queues} qq SET version = qq.version + 1, ordered = true,
            hint = CASE WHEN j.seq IS NULL THEN qq.hint WHEN l.seq IS NOT NULL THEN until + 1 ELSE j.avail END,
            hint_seq = COALESCE(j.seq, qq.hint_seq),
            out = qq.out + CASE WHEN l.seq IS NOT NULL AND l.was IS NULL THEN 1 ELSE 0 END,
            out_until = CASE WHEN l.seq IS NOT NULL THEN GREATEST(COALESCE(qq.out_until, until), until) ELSE qq.out_until END
          FROM judged j LEFT JOIN leased l ON l.wid = j.webhook_id
          WHERE qq.webhook_id = j.webhook_id
          RETURNING l.seq, CASE WHEN j.seq IS NULL THEN j.webhook_id END AS empty
        )
        SELECT coalesce(array_agg(moved.seq) FILTER (WHERE moved.seq IS NOT NULL), '{}'),
          coalesce(array_agg(moved.empty) FILTER (WHERE moved.empty IS NOT NULL), '{}')
          INTO seq_list, empties FROM moved;
      ELSIF room > 0 THEN
        -- The earliest due of each due queue, round-robin (each queue's first, then each one's second…),
        -- the companies' turns first. The queue rows are locked first (skipping those others hold), as
        -- every writer does.
        WITH turned AS (
          SELECT qr.webhook_id, t.pos, qr.hint, qr.hint_seq
          FROM unnest(turn_ids) WITH ORDINALITY AS t(wid, pos) JOIN ${t.queues} qr ON qr.webhook_id = t.wid
          WHERE qr.hint <= p_now AND qr.open_until IS NULL AND qr.rate_per_second IS NULL
          FOR UPDATE OF qr SKIP LOCKED
        ), hinted AS (
          SELECT qr.webhook_id, NULL::bigint AS pos, qr.hint, qr.hint_seq FROM ${t.queues} qr
          WHERE qr.hint <= p_now AND qr.open_until IS NULL AND qr.rate_per_second IS NULL AND qr.webhook_id <> ALL(turn_ids)
          ORDER BY qr.hint, qr.hint_seq LIMIT room + 16 FOR UPDATE SKIP LOCKED
        ), locked AS (
          SELECT * FROM turned UNION ALL SELECT * FROM hinted
        ), cand AS (
          SELECT locked.webhook_id, row_number() OVER (ORDER BY locked.pos NULLS LAST, locked.hint, locked.hint_seq) AS qpos FROM locked
        ), share AS (
          SELECT CEIL(room::numeric / GREATEST(count(*), 1))::int + 1 AS n FROM cand
        ), picked AS (
          SELECT x.seq, x.was, x.rn, c.qpos FROM cand c CROSS JOIN share CROSS JOIN LATERAL (
            SELECT y.seq, y.was, row_number() OVER (ORDER BY y.next_attempt_at, y.seq) AS rn FROM (
              SELECT d.seq, d.lease_until AS was, d.next_attempt_at FROM ${t.deliveries} d
              WHERE d.webhook_id = c.webhook_id AND d.state = 'pending' AND d.next_attempt_at <= p_now AND (d.lease_until IS NULL OR d.lease_until < p_now)
              ORDER BY d.next_attempt_at, d.seq LIMIT share.n FOR UPDATE SKIP LOCKED
            ) y
          ) x
        ), chosen AS (
          SELECT picked.seq, picked.was, picked.qpos FROM picked ORDER BY picked.rn, picked.qpos LIMIT room
        ), leased AS (
          UPDATE ${t.deliveries} d SET lease_token = p_token || ':' || d.seq, lease_until = until FROM chosen WHERE d.seq = chosen.seq
          RETURNING d.seq
        ), counted AS (
          SELECT c.webhook_id, share.n AS asked,
            (SELECT count(*) FROM picked p WHERE p.qpos = c.qpos) AS npicked,
            (SELECT count(*) FROM chosen h WHERE h.qpos = c.qpos) AS nchosen,
            (SELECT count(*) FROM chosen h WHERE h.qpos = c.qpos AND h.was IS NULL) AS nfresh
          FROM cand c CROSS JOIN share
        ), moved AS (
          -- A queue that gave all it had: its hint moves to when its next one comes (due, or out of a lease).
          UPDATE ${t.queues} qq SET version = qq.version + 1, ordered = false, out = qq.out + k.nfresh,
            out_until = CASE WHEN k.nchosen > 0 THEN GREATEST(COALESCE(qq.out_until, until), until) ELSE qq.out_until END,
            hint = CASE WHEN k.npicked >= k.asked OR k.nchosen < k.npicked THEN qq.hint ELSE COALESCE(LEAST(
              (SELECT MIN(d.next_attempt_at) FROM ${t.deliveries} d WHERE d.webhook_id = qq.webhook_id AND d.state = 'pending' AND d.next_attempt_at > p_now),
              CASE WHEN k.nchosen > 0 THEN until + 1 END,
              (SELECT MIN(d.lease_until) + 1 FROM ${t.deliveries} d WHERE d.webhook_id = qq.webhook_id AND d.state = 'pending' AND d.next_attempt_at <= p_now AND d.lease_until >= p_now)),
              p_now) END
          FROM counted k WHERE qq.webhook_id = k.webhook_id
          RETURNING CASE WHEN k.npicked = 0 THEN qq.webhook_id END AS empty
        )
        SELECT coalesce((SELECT array_agg(leased.seq) FROM leased), '{}'),
          coalesce((SELECT array_agg(moved.empty) FROM moved WHERE moved.empty IS NOT NULL), '{}') INTO seq_list, empties;
      END IF;
      -- Queues that gave nothing: idle if nothing of theirs is open. A statement of its own, under their
      -- locks, so it sees every enqueue that committed before (later ones wait for the locks and wake them).
      IF cardinality(empties) > 0 THEN
        UPDATE ${t.queues} qq SET version = qq.version + 1, hint = NULL, hint_seq = NULL
        WHERE qq.webhook_id = ANY(empties) AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.webhook_id = qq.webhook_id AND d.state = 'pending');
      END IF;
      -- The next claim's turns start after the last company whose turn gave something.
      IF cardinality(turn_ids) > 0 AND cardinality(seq_list) > 0 THEN
        SELECT tp.co INTO last_turn FROM unnest(turn_ids, turn_cos) WITH ORDINALITY AS tp(wid, co, pos)
        WHERE EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.seq = ANY(seq_list) AND d.webhook_id = tp.wid)
        ORDER BY tp.pos DESC LIMIT 1;
      END IF;
      seqs := seqs || seq_list;
      probes := probes || array_fill(false, ARRAY[cardinality(seq_list)]);
      rates := rates || array_fill(NULL::double precision, ARRAY[cardinality(seq_list)]);
      bursts := bursts || array_fill(NULL::bigint, ARRAY[cardinality(seq_list)]);
      taken := taken + cardinality(seq_list);

      -- Lookups by key, one row at a time: the planner cannot tell how few rows unnest() gives.
      RETURN QUERY SELECT ${deliveryJson('d')}, e.body, c.probe, c.rate, c.burst, last_turn
        FROM unnest(seqs, probes, rates, bursts) AS c(seq, probe, rate, burst)
        CROSS JOIN LATERAL (SELECT * FROM ${t.deliveries} dd WHERE dd.seq = c.seq) d
        CROSS JOIN LATERAL (SELECT ee.body FROM ${t.events} ee WHERE ee.id = d.event_id) e
        ORDER BY d.next_attempt_at, d.seq;
    END $fn$`,

    // ---- settle: many deliveries' attempts (and releases) in one call. The deliveries are written in
    // one statement; then each queue once, with every item of the batch that belongs to it.
    `CREATE OR REPLACE FUNCTION ${f.settle}(p_items jsonb)
    RETURNS TABLE (i int, ok boolean, change jsonb, next_delivery jsonb, next_event jsonb, next_probe boolean, next_rate double precision, next_burst bigint)
    LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan AS $fn$
    #variable_conflict use_column
    DECLARE
      r record;
      c record;
      q record;
      wanting int[] := '{}';
      wanting_ordered int[] := '{}';
      want_after text;
      want_owner text;
      want_lease bigint;
      want_now bigint;
      head record;
      current_queue text := NULL;
      nd jsonb;
      ne jsonb;
      now bigint;
      is_probe boolean;
      opened boolean;
      closed boolean;
      disable text;
      g bigint;
      avail bigint;
      pol jsonb;
      notify_others boolean := false;
      succeeded text[] := '{}';
      succeeded_at bigint := 0;
      -- As an array, so every lookup by id uses the index (a set from jsonb looks like 100 rows to the planner).
      ids text[] := ARRAY(SELECT e->>'id' FROM jsonb_array_elements(p_items) e);
    BEGIN
      FOR r IN
        WITH input AS (
          SELECT (n - 1)::int AS i, x->>'id' AS id, x->>'token' AS token, (x->>'now')::bigint AS now, x->>'kind' = 'release' AS release,
            x->>'state' <> 'pending' AS final, x->>'state' = 'pending' AND x ? 'holdUntil' AS held, (x->>'holdUntil')::bigint AS hold,
            x->'attempt' AS attempt, x->>'state' AS state, x->>'response' AS response, (x->>'nextAttemptAt')::bigint AS next_at,
            x->>'outcome' AS outcome, COALESCE((x->>'exhausted')::boolean, false) AS exhausted, x->'policy' AS policy, x->'next' AS nxt
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(x, n)
        ), written AS (
          UPDATE ${t.deliveries} d SET
            attempts = CASE WHEN input.attempt IS NULL THEN d.attempts ELSE d.attempts || jsonb_build_array(input.attempt) END,
            status = CASE WHEN input.release THEN d.status ELSE COALESCE((input.attempt->>'status')::int, d.status) END,
            response = CASE WHEN input.release THEN d.response ELSE input.response END,
            updated_at = CASE WHEN input.release THEN d.updated_at ELSE input.now END,
            state = CASE WHEN input.release THEN d.state ELSE input.state END,
            next_attempt_at = CASE WHEN input.release THEN d.next_attempt_at WHEN input.final THEN NULL ELSE COALESCE(input.next_at, input.now) END,
            lease_token = CASE WHEN input.held THEN d.lease_token END,
            lease_until = CASE WHEN input.held THEN input.hold END
          FROM input
          WHERE d.id = ANY(ids) AND d.id = input.id AND d.lease_token = input.token AND d.lease_until >= input.now AND d.state = 'pending'
          RETURNING input.i AS done, d.webhook_id AS wid, d.company AS co, d.next_attempt_at AS due
        )
        SELECT input.*, written.wid, written.co, written.due, written.done IS NOT NULL AS ok
        FROM input LEFT JOIN written ON written.done = input.i
        ORDER BY written.wid NULLS LAST, input.i
      LOOP
        IF NOT r.ok THEN
          RETURN QUERY SELECT r.i, false, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::boolean, NULL::double precision, NULL::bigint;
          CONTINUE;
        END IF;
        -- Unordered: a settle that ends its lease asks for any due delivery (claimed below, for all at once).
        IF r.nxt IS NOT NULL AND NOT COALESCE((r.nxt->>'ordered')::boolean, true) AND NOT r.held THEN
          wanting := wanting || r.i;
          want_owner := r.nxt->>'owner'; want_lease := (r.nxt->>'leaseMs')::bigint; want_now := r.now; want_after := r.co;
        END IF;
        -- The common case takes no queue row: an unordered delivery ending well (or plainly), neither a
        -- probe nor of a webhook whose circuit is open. Its queue learns of successes below, in one go.
        IF r.final AND r.outcome IS DISTINCT FROM 'failure' AND EXISTS (SELECT 1 FROM ${t.queues} qq WHERE qq.webhook_id = r.wid
            AND NOT qq.ordered AND qq.open_until IS NULL AND qq.probe_token IS DISTINCT FROM r.token) THEN
          IF r.outcome = 'success' THEN
            succeeded := succeeded || r.wid;
            succeeded_at := GREATEST(succeeded_at, r.now);
          END IF;
          RETURN QUERY SELECT r.i, true, CASE WHEN r.outcome IS NULL THEN NULL::jsonb ELSE '{"consecutiveFailures":0}'::jsonb END,
            NULL::jsonb, NULL::jsonb, NULL::boolean, NULL::double precision, NULL::bigint;
          CONTINUE;
        END IF;
        IF current_queue IS DISTINCT FROM r.wid THEN
          IF current_queue IS NOT NULL THEN
            ${writeQueue}
          END IF;
          SELECT * INTO q FROM ${t.queues} qq WHERE qq.webhook_id = r.wid FOR UPDATE;
          IF NOT FOUND THEN
            INSERT INTO ${t.queues} (webhook_id, company, open, out) VALUES (r.wid, r.co, 1, 1);
            SELECT * INTO q FROM ${t.queues} qq WHERE qq.webhook_id = r.wid FOR UPDATE;
          END IF;
          current_queue := r.wid;
        END IF;
        now := r.now;
        is_probe := q.probe_token IS NOT NULL AND q.probe_token = r.token;
        IF is_probe THEN
          q.probe_token := NULL;
          IF r.attempt IS NULL THEN q.probe_until := NULL; END IF;
        END IF;
        opened := false; closed := false; disable := NULL;
        pol := r.policy;
        IF r.outcome = 'success' THEN
          closed := q.open_until IS NOT NULL;
          q.failed_attempts := 0; q.open_until := NULL; q.cooldown_ms := 0; q.probe_until := NULL;
          q.last_success_at := now; q.consecutive_failures := 0; q.failing_since := NULL;
        ELSIF r.outcome = 'failure' THEN
          q.last_failure_at := now;
          q.failing_since := COALESCE(q.failing_since, now);
          IF (pol->>'failureThreshold')::int > 0 THEN
            q.failed_attempts := q.failed_attempts + 1;
            IF is_probe THEN
              -- Only the probe's own failure decides the next cool-down.
              q.cooldown_ms := LEAST(GREATEST(q.cooldown_ms, (pol->>'cooldownMs')::bigint) * 2, (pol->>'maxCooldownMs')::bigint);
              q.open_until := now + q.cooldown_ms; q.probe_until := NULL; opened := true;
            ELSIF q.open_until IS NULL AND q.failed_attempts >= (pol->>'failureThreshold')::int THEN
              q.cooldown_ms := (pol->>'cooldownMs')::bigint; q.open_until := now + q.cooldown_ms; opened := true;
            END IF;
          END IF;
          IF r.exhausted THEN
            q.consecutive_failures := q.consecutive_failures + 1;
            IF (pol->>'disableAfterFailures')::int > 0 AND q.consecutive_failures >= (pol->>'disableAfterFailures')::int THEN disable := 'failures';
            ELSIF (pol->>'disableAfterMs')::bigint > 0 AND now - q.failing_since >= (pol->>'disableAfterMs')::bigint THEN disable := 'failing-too-long';
            END IF;
          END IF;
        END IF;
        IF r.held THEN q.out_until := GREATEST(COALESCE(q.out_until, r.hold), r.hold); ELSE q.out := GREATEST(0, q.out - 1); END IF;
        g := ${gate('q')};
        nd := NULL; ne := NULL;
        IF q.ordered AND r.final THEN
          SELECT dd.seq, dd.next_attempt_at, dd.lease_until INTO head FROM ${t.deliveries} dd
            WHERE dd.webhook_id = q.webhook_id AND dd.state = 'pending' ORDER BY dd.seq LIMIT 1;
          IF NOT FOUND THEN
            q.open := 0; q.hint := NULL; q.hint_seq := NULL;
          ELSE
            avail := GREATEST(CASE WHEN head.lease_until IS NULL THEN head.next_attempt_at ELSE GREATEST(head.next_attempt_at, head.lease_until + 1) END, COALESCE(g, 0));
            IF q.out > (CASE WHEN head.lease_until IS NULL THEN 0 ELSE 1 END) AND q.out_until >= now THEN avail := GREATEST(avail, q.out_until + 1); END IF;
            IF COALESCE((r.nxt->>'ordered')::boolean, false) AND (EXISTS (SELECT 1 FROM ${t.queues} x WHERE x.company > r.co AND x.hint <= now)
                OR EXISTS (SELECT 1 FROM ${t.queues} x WHERE x.company < r.co AND x.hint <= now)) THEN
              -- Another company has due work: this one has had its turn, and the next goes by turns.
              q.hint := avail; q.hint_seq := head.seq;
              wanting_ordered := wanting_ordered || r.i;
              want_owner := r.nxt->>'owner'; want_lease := (r.nxt->>'leaseMs')::bigint; want_now := r.now; want_after := r.co;
            ELSIF COALESCE((r.nxt->>'ordered')::boolean, false) AND avail <= now AND q.open_until IS NULL THEN
              -- The queue passes straight to its next delivery, leased to the settling engine.
              IF q.rate_per_second IS NOT NULL THEN q.tokens := ${refilled('q', 'now')} - 1; q.tokens_at := now; END IF;
              UPDATE ${t.deliveries} dd SET lease_token = (r.nxt->>'owner') || ':' || md5(random()::text) || ':' || dd.seq,
                lease_until = now + (r.nxt->>'leaseMs')::bigint WHERE dd.seq = head.seq
                RETURNING ${deliveryJson('dd')} INTO nd;
              SELECT e.body INTO ne FROM ${t.events} e WHERE e.id = nd->>'event_id';
              q.out := q.out + CASE WHEN head.lease_until IS NULL THEN 1 ELSE 0 END;
              q.out_until := GREATEST(COALESCE(q.out_until, 0), now + (r.nxt->>'leaseMs')::bigint);
              q.hint := now + (r.nxt->>'leaseMs')::bigint + 1;
              q.hint_seq := head.seq;
            ELSE
              q.hint := avail; q.hint_seq := head.seq;
              notify_others := true;
            END IF;
          END IF;
        ELSIF q.ordered AND r.held THEN
          q.hint := r.hold + 1;
        ELSIF q.ordered THEN
          q.hint := GREATEST(COALESCE(r.due, now), COALESCE(g, 0));
          notify_others := true;
        ELSIF r.held THEN
          -- A hold may end sooner than the queue's hint.
          q.hint := LEAST(COALESCE(q.hint, r.hold + 1), GREATEST(r.hold + 1, COALESCE(g, 0)));
        ELSIF NOT r.final THEN
          avail := GREATEST(COALESCE(r.due, now), COALESCE(g, 0));
          IF q.hint IS NULL OR avail < q.hint THEN q.hint := avail; END IF;
          notify_others := true;
        END IF;
        -- The probe's claim pushed the hint past its lease; the queue's other deliveries may be due as
        -- soon as the gate lets them (a failed probe retries on its own schedule).
        IF is_probe AND NOT q.ordered THEN q.hint := LEAST(COALESCE(q.hint, now), GREATEST(now, COALESCE(g, now))); END IF;
        IF q.hint IS NOT NULL AND opened THEN q.hint := GREATEST(q.hint, q.open_until); END IF;
        IF q.hint IS NOT NULL AND closed THEN q.hint := LEAST(q.hint, now); END IF;
        RETURN QUERY SELECT r.i, true, CASE WHEN r.outcome IS NOT NULL THEN jsonb_strip_nulls(jsonb_build_object(
            'opened', CASE WHEN opened THEN q.open_until END, 'closed', CASE WHEN closed THEN true END,
            'openUntil', CASE WHEN q.open_until > now THEN q.open_until END, 'disable', disable,
            'consecutiveFailures', q.consecutive_failures, 'failingSince', q.failing_since)) END, nd, ne,
          CASE WHEN nd IS NULL THEN NULL ELSE false END, CASE WHEN nd IS NULL THEN NULL ELSE q.rate_per_second END, CASE WHEN nd IS NULL THEN NULL ELSE q.rate_burst END;
      END LOOP;
      IF current_queue IS NOT NULL THEN
        ${writeQueue}
      END IF;
      IF cardinality(succeeded) > 0 THEN
        -- A success ends a failing run and is the endpoint's latest; written only when that changes
        -- something (the last success is kept to the second), skipping rows others hold.
        UPDATE ${t.queues} qq SET version = qq.version + 1, failed_attempts = 0, consecutive_failures = 0, failing_since = NULL,
          cooldown_ms = 0, last_success_at = succeeded_at
        WHERE qq.webhook_id IN (SELECT qr.webhook_id FROM ${t.queues} qr WHERE qr.webhook_id = ANY(succeeded)
            AND (qr.failed_attempts > 0 OR qr.consecutive_failures > 0 OR qr.failing_since IS NOT NULL
              OR qr.last_success_at IS NULL OR qr.last_success_at < succeeded_at - 1000)
          ORDER BY qr.webhook_id FOR UPDATE SKIP LOCKED);
      END IF;
      IF cardinality(wanting) > 0 THEN
        -- One claim for every settle that asked: each gets one, in order, while there are any; turns
        -- start after the settling company.
        FOR c IN SELECT row_number() OVER () AS k, cl.* FROM ${f.claim}(want_now, cardinality(wanting), want_lease, want_owner || ':' || md5(random()::text), false, true, want_after) cl LOOP
          RETURN QUERY SELECT wanting[c.k], true, NULL::jsonb, c.delivery, c.event, c.probe, c.rate_per_second, c.rate_burst;
        END LOOP;
      END IF;
      IF cardinality(wanting_ordered) > 0 THEN
        FOR c IN SELECT row_number() OVER () AS k, cl.* FROM ${f.claim}(want_now, cardinality(wanting_ordered), want_lease, want_owner || ':' || md5(random()::text), true, true, want_after) cl LOOP
          RETURN QUERY SELECT wanting_ordered[c.k], true, NULL::jsonb, c.delivery, c.event, c.probe, c.rate_per_second, c.rate_burst;
        END LOOP;
      END IF;
      IF notify_others THEN ${notify}; END IF;
    END $fn$`,
  ]
}
