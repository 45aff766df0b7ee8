import type { Tables } from '../sql/schema.js'

/**
 * The PostgreSQL store's operations as SQL functions, created by `migrate()`: an enqueue of many
 * emits, a claim, and a settle of many deliveries are each one call: one round trip, one commit. They
 * follow the rules the other stores follow (`../sql/queue-rules.ts` in TypeScript, here in PL/pgSQL;
 * the conformance suite holds them to the same answers).
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
  return [
    // ---- enqueue: the emits of several callers, grouped by the store into one call
    `CREATE OR REPLACE FUNCTION ${f.enqueue}(p_items jsonb) RETURNS TABLE (i int, duplicate boolean, stored jsonb)
    LANGUAGE plpgsql AS $fn$
    #variable_conflict use_column
    DECLARE
      r record;
      made int := 0;
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
          (SELECT count(*) FROM arrived)::int AS queues
        FROM input ORDER BY input.i
      LOOP
        made := r.queues;
        IF r.dup THEN
          -- A statement of its own: it sees the first enqueue of the key, committed meanwhile.
          RETURN QUERY SELECT r.i, true, k.result FROM ${t.idempotency} k WHERE k.company = r.company AND k.key = r.key;
        ELSE
          RETURN QUERY SELECT r.i, false, NULL::jsonb;
        END IF;
      END LOOP;
      IF made > 0 THEN ${notify}; END IF;
    END $fn$`,

    // ---- enqueue inside the host's transaction: no queue row is locked until the host commits; the
    // deliveries announce themselves through wake-ups, which the next claim folds into the queues.
    `CREATE OR REPLACE FUNCTION ${f.enqueueInTx}(p_company text, p_event_id text, p_body jsonb, p_ids text[], p_webhook_ids text[], p_now bigint, p_key text, p_result jsonb)
    RETURNS TABLE (duplicate boolean, stored jsonb) LANGUAGE plpgsql AS $fn$
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

    // ---- claim
    `CREATE OR REPLACE FUNCTION ${f.claim}(p_now bigint, p_limit int, p_lease_ms bigint, p_token text, p_ordered boolean, p_slack int)
    RETURNS TABLE (delivery jsonb, event jsonb, probe boolean, rate_per_second double precision, rate_burst bigint)
    LANGUAGE plpgsql AS $fn$
    #variable_conflict use_column
    DECLARE
      cand record;
      q record;
      head record;
      nxt record;
      taken int := 0;
      left_queues int;
      share int;
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
    BEGIN
      -- Wake-ups from host transactions (and earlier releases) join their queues.
      IF EXISTS (SELECT 1 FROM ${t.wakeups}) THEN
        WITH w AS (DELETE FROM ${t.wakeups} RETURNING webhook_id, company, n, at, first_seq)
        INSERT INTO ${t.queues} AS qq (webhook_id, company, version, open, hint, hint_seq)
        SELECT webhook_id, min(company), 1, sum(n), min(at), min(first_seq) FROM w GROUP BY webhook_id ORDER BY webhook_id
        ON CONFLICT (webhook_id) DO UPDATE SET version = qq.version + 1, open = qq.open + excluded.open,
          hint = LEAST(COALESCE(qq.hint, excluded.hint), excluded.hint),
          hint_seq = CASE WHEN qq.hint IS NULL OR excluded.hint < qq.hint THEN excluded.hint_seq ELSE qq.hint_seq END;
      END IF;
      SELECT count(*) INTO left_queues FROM (SELECT 1 FROM ${t.queues} c WHERE c.hint <= p_now LIMIT p_limit + p_slack) c;
      -- Candidates are read without locks (a loop fetches rows ahead); each is locked only when its turn
      -- comes, skipped if another claimer holds it, and looked at again under the lock.
      FOR cand IN SELECT qr.webhook_id FROM ${t.queues} qr WHERE qr.hint <= p_now ORDER BY qr.hint, qr.hint_seq LIMIT p_limit + p_slack LOOP
        EXIT WHEN taken >= p_limit;
        SELECT * INTO q FROM ${t.queues} qr WHERE qr.webhook_id = cand.webhook_id AND qr.hint <= p_now FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
          left_queues := left_queues - 1;
          CONTINUE;
        END IF;
        -- Each queue in turn gets its share of what is left, so no one backlog takes a whole claim.
        share := CEIL((p_limit - taken)::numeric / GREATEST(left_queues, 1))::int;
        left_queues := left_queues - 1;
        half_open := q.open_until IS NOT NULL;
        want := CASE WHEN p_ordered OR half_open THEN 1 ELSE share END;
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
              seqs := seqs || head.seq; probes := probes || half_open; rates := rates || q.rate_per_second; bursts := bursts || q.rate_burst;
            ELSE
              q.hint := avail;
              q.hint_seq := head.seq;
            END IF;
          ELSE
            q.open := 0; -- the count drifted: nothing is open
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
          IF got > 0 THEN
            seqs := seqs || seq_list;
            probes := probes || array_fill(half_open, ARRAY[got]);
            rates := rates || array_fill(q.rate_per_second, ARRAY[got]);
            bursts := bursts || array_fill(q.rate_burst, ARRAY[got]);
          END IF;
        END IF;
        IF got > 0 THEN
          q.out := q.out + fresh;
          q.out_until := GREATEST(COALESCE(q.out_until, until), until);
          IF half_open THEN q.probe_token := tok || ':' || first_seq; q.probe_until := until; END IF;
          IF q.rate_per_second IS NOT NULL THEN q.tokens := q.tokens - got; END IF;
          taken := taken + got;
        END IF;
        g := ${gate('q')};
        IF q.open <= 0 THEN
          q.open := 0; q.hint := NULL; q.hint_seq := NULL;
        ELSIF p_ordered AND got > 0 THEN
          -- Out until its lease ends, unless a settle hands the queue on sooner.
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
        UPDATE ${t.queues} qq SET version = qq.version + 1, ordered = p_ordered, open = q.open, hint = q.hint, hint_seq = q.hint_seq,
          out = q.out, out_until = q.out_until, probe_token = q.probe_token, probe_until = q.probe_until, tokens = q.tokens, tokens_at = q.tokens_at
          WHERE qq.webhook_id = q.webhook_id;
      END LOOP;
      RETURN QUERY SELECT ${deliveryJson('d')}, e.body, c.probe, c.rate, c.burst
        FROM unnest(seqs, probes, rates, bursts) AS c(seq, probe, rate, burst)
        JOIN ${t.deliveries} d ON d.seq = c.seq JOIN ${t.events} e ON e.id = d.event_id
        ORDER BY d.next_attempt_at, d.seq;
    END $fn$`,

    // ---- settle: many deliveries' attempts (and releases) in one call
    `CREATE OR REPLACE FUNCTION ${f.settle}(p_items jsonb)
    RETURNS TABLE (i int, ok boolean, change jsonb, next_delivery jsonb, next_event jsonb)
    LANGUAGE plpgsql AS $fn$
    #variable_conflict use_column
    DECLARE
      it record;
      x jsonb;
      d record;
      q record;
      head record;
      nd jsonb;
      ne jsonb;
      now bigint;
      final boolean;
      held boolean;
      hold bigint;
      is_probe boolean;
      opened boolean;
      closed boolean;
      disable text;
      g bigint;
      avail bigint;
      pol jsonb;
      notify_others boolean := false;
    BEGIN
      -- The queues first, in webhook id order: the lock order every writer follows.
      PERFORM 1 FROM ${t.queues} qq WHERE qq.webhook_id IN (
        SELECT dd.webhook_id FROM ${t.deliveries} dd WHERE dd.id IN (SELECT e->>'id' FROM jsonb_array_elements(p_items) e)
      ) ORDER BY qq.webhook_id FOR UPDATE;
      FOR it IN SELECT (n - 1)::int AS n, e AS x FROM jsonb_array_elements(p_items) WITH ORDINALITY AS a(e, n) LOOP
        x := it.x;
        now := (x->>'now')::bigint;
        final := x->>'state' <> 'pending';
        held := NOT final AND x ? 'holdUntil';
        hold := (x->>'holdUntil')::bigint;
        IF x->>'kind' = 'release' THEN
          UPDATE ${t.deliveries} dd SET lease_token = NULL, lease_until = NULL
            WHERE dd.id = x->>'id' AND dd.lease_token = x->>'token' AND dd.lease_until >= now AND dd.state = 'pending'
            RETURNING dd.webhook_id, dd.company, dd.next_attempt_at INTO d;
        ELSE
          UPDATE ${t.deliveries} dd SET
            attempts = CASE WHEN x ? 'attempt' THEN dd.attempts || jsonb_build_array(x->'attempt') ELSE dd.attempts END,
            status = COALESCE((x->'attempt'->>'status')::int, dd.status), response = x->>'response', updated_at = now,
            state = x->>'state',
            next_attempt_at = CASE WHEN final THEN NULL ELSE COALESCE((x->>'nextAttemptAt')::bigint, now) END,
            lease_token = CASE WHEN held THEN dd.lease_token END,
            lease_until = CASE WHEN held THEN hold END
            WHERE dd.id = x->>'id' AND dd.lease_token = x->>'token' AND dd.lease_until >= now AND dd.state = 'pending'
            RETURNING dd.webhook_id, dd.company, dd.next_attempt_at INTO d;
        END IF;
        IF NOT FOUND THEN
          RETURN QUERY SELECT it.n, false, NULL::jsonb, NULL::jsonb, NULL::jsonb;
          CONTINUE;
        END IF;
        SELECT * INTO q FROM ${t.queues} qq WHERE qq.webhook_id = d.webhook_id FOR UPDATE;
        IF NOT FOUND THEN
          INSERT INTO ${t.queues} (webhook_id, company, open, out) VALUES (d.webhook_id, d.company, 1, 1);
          SELECT * INTO q FROM ${t.queues} qq WHERE qq.webhook_id = d.webhook_id FOR UPDATE;
        END IF;
        is_probe := q.probe_token IS NOT NULL AND q.probe_token = x->>'token';
        IF is_probe THEN
          q.probe_token := NULL;
          IF NOT x ? 'attempt' THEN q.probe_until := NULL; END IF;
        END IF;
        opened := false; closed := false; disable := NULL;
        pol := x->'policy';
        IF x->>'outcome' = 'success' THEN
          closed := q.open_until IS NOT NULL;
          q.failed_attempts := 0; q.open_until := NULL; q.cooldown_ms := 0; q.probe_until := NULL;
          q.last_success_at := now; q.consecutive_failures := 0; q.failing_since := NULL;
        ELSIF x->>'outcome' = 'failure' THEN
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
          IF (x->>'exhausted')::boolean THEN
            q.consecutive_failures := q.consecutive_failures + 1;
            IF (pol->>'disableAfterFailures')::int > 0 AND q.consecutive_failures >= (pol->>'disableAfterFailures')::int THEN disable := 'failures';
            ELSIF (pol->>'disableAfterMs')::bigint > 0 AND now - q.failing_since >= (pol->>'disableAfterMs')::bigint THEN disable := 'failing-too-long';
            END IF;
          END IF;
        END IF;
        IF final THEN q.open := GREATEST(0, q.open - 1); END IF;
        IF held THEN q.out_until := GREATEST(COALESCE(q.out_until, hold), hold); ELSE q.out := GREATEST(0, q.out - 1); END IF;
        g := ${gate('q')};
        nd := NULL; ne := NULL;
        IF q.open = 0 THEN
          q.hint := NULL; q.hint_seq := NULL;
        ELSIF q.ordered AND final THEN
          SELECT dd.seq, dd.next_attempt_at, dd.lease_until INTO head FROM ${t.deliveries} dd
            WHERE dd.webhook_id = q.webhook_id AND dd.state = 'pending' ORDER BY dd.seq LIMIT 1;
          IF NOT FOUND THEN
            q.open := 0; q.hint := NULL; q.hint_seq := NULL;
          ELSE
            avail := GREATEST(CASE WHEN head.lease_until IS NULL THEN head.next_attempt_at ELSE GREATEST(head.next_attempt_at, head.lease_until + 1) END, COALESCE(g, 0));
            IF q.out > (CASE WHEN head.lease_until IS NULL THEN 0 ELSE 1 END) AND q.out_until >= now THEN avail := GREATEST(avail, q.out_until + 1); END IF;
            IF x ? 'next' AND avail <= now AND q.open_until IS NULL THEN
              -- The queue passes straight to its next delivery, leased to the settling engine.
              IF q.rate_per_second IS NOT NULL THEN q.tokens := ${refilled('q', 'now')} - 1; q.tokens_at := now; END IF;
              UPDATE ${t.deliveries} dd SET lease_token = (x->'next'->>'owner') || ':' || md5(random()::text) || ':' || dd.seq,
                lease_until = now + (x->'next'->>'leaseMs')::bigint WHERE dd.seq = head.seq
                RETURNING ${deliveryJson('dd')} INTO nd;
              SELECT e.body INTO ne FROM ${t.events} e WHERE e.id = nd->>'event_id';
              q.out := q.out + CASE WHEN head.lease_until IS NULL THEN 1 ELSE 0 END;
              q.out_until := GREATEST(COALESCE(q.out_until, 0), now + (x->'next'->>'leaseMs')::bigint);
              q.hint := now + (x->'next'->>'leaseMs')::bigint + 1;
              q.hint_seq := head.seq;
            ELSE
              q.hint := avail; q.hint_seq := head.seq;
              notify_others := true;
            END IF;
          END IF;
        ELSIF q.ordered AND held THEN
          q.hint := hold + 1;
        ELSIF q.ordered THEN
          q.hint := GREATEST(COALESCE(d.next_attempt_at, now), COALESCE(g, 0));
          notify_others := true;
        ELSIF held THEN
          -- A hold may end sooner than the queue's hint.
          q.hint := LEAST(COALESCE(q.hint, hold + 1), GREATEST(hold + 1, COALESCE(g, 0)));
        ELSIF NOT final THEN
          avail := GREATEST(COALESCE(d.next_attempt_at, now), COALESCE(g, 0));
          IF q.hint IS NULL OR avail < q.hint THEN q.hint := avail; END IF;
          notify_others := true;
        END IF;
        IF q.hint IS NOT NULL AND opened THEN q.hint := GREATEST(q.hint, q.open_until); END IF;
        IF q.hint IS NOT NULL AND closed THEN q.hint := LEAST(q.hint, now); END IF;
        UPDATE ${t.queues} qq SET version = qq.version + 1, open = q.open, hint = q.hint, hint_seq = q.hint_seq, out = q.out, out_until = q.out_until,
          consecutive_failures = q.consecutive_failures, failing_since = q.failing_since, last_success_at = q.last_success_at,
          last_failure_at = q.last_failure_at, failed_attempts = q.failed_attempts, open_until = q.open_until, cooldown_ms = q.cooldown_ms,
          probe_token = q.probe_token, probe_until = q.probe_until, tokens = q.tokens, tokens_at = q.tokens_at
          WHERE qq.webhook_id = q.webhook_id;
        RETURN QUERY SELECT it.n, true, CASE WHEN x ? 'outcome' THEN jsonb_strip_nulls(jsonb_build_object(
            'opened', CASE WHEN opened THEN q.open_until END, 'closed', CASE WHEN closed THEN true END,
            'openUntil', CASE WHEN q.open_until > now THEN q.open_until END, 'disable', disable,
            'consecutiveFailures', q.consecutive_failures, 'failingSince', q.failing_since)) END, nd, ne;
      END LOOP;
      IF notify_others THEN ${notify}; END IF;
    END $fn$`,
  ]
}
