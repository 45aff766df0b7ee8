import type { Tables } from '../sql/schema.js'
import { deliveryJson, gate, notifyDeliveries, refilled, type FunctionNames } from './pg-sql.js'

/**
 * The settle function: many deliveries' attempts (and releases) in one call. The deliveries are written in
 * one statement; then each queue once, with every item of the batch that belongs to it.
 *
 * With `turns` (`settle_turns`, functions version 4 on): the claims it makes for `next` go on from the
 * engine's company turn (`p_after`), and it answers where it left the turn. Without (`settle`, as
 * functions version 3 made it): they start after the settling company. The second stays, with the
 * same result columns, for engines of earlier releases during a rolling deploy: a named statement they
 * prepared fails once the function it calls answers other columns.
 *
 * @example
 * ```ts
 * await client.query(settleFunction(tables('cotwebhook_'), functionNames(tables('cotwebhook_')), 'cotwebhook', true))
 * ```
 */
export function settleFunction(t: Tables, f: FunctionNames, channel: string, turns: boolean): string {
  const notify = notifyDeliveries(channel)
  // The parts that differ: where a settle's claims start their turns, and the `turn` column.
  const after = turns ? 'COALESCE(p_after, r.co)' : 'r.co'
  const noTurn = turns ? ', NULL::text' : ''
  // A queue passed straight on serves its company: the engine's turns go on after it.
  const passedTurn = turns ? ', CASE WHEN nd IS NULL THEN NULL ELSE r.co END' : ''
  const claimTurn = turns ? ', c.turn' : ''
  // The queue row variable `q` written back, whole (the settle holds the queue's lock meanwhile).
  const writeQueue = `UPDATE ${t.queues} qq SET version = qq.version + 1, open = q.open, hint = q.hint, hint_seq = q.hint_seq,
    out = q.out, out_until = q.out_until, consecutive_failures = q.consecutive_failures, failing_since = q.failing_since,
    last_success_at = q.last_success_at, last_failure_at = q.last_failure_at, failed_attempts = q.failed_attempts,
    open_until = q.open_until, cooldown_ms = q.cooldown_ms, probe_token = q.probe_token, probe_until = q.probe_until,
    tokens = q.tokens, tokens_at = q.tokens_at WHERE qq.webhook_id = q.webhook_id;`
  return `CREATE OR REPLACE FUNCTION ${turns ? `${f.settleTurns}(p_items jsonb, p_after text)` : `${f.settle}(p_items jsonb)`}
    RETURNS TABLE (i int, ok boolean, change jsonb, next_delivery jsonb, next_event jsonb, next_probe boolean, next_rate double precision, next_burst bigint${turns ? ', turn text' : ''})
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
          RETURN QUERY SELECT r.i, false, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::boolean, NULL::double precision, NULL::bigint${noTurn};
          CONTINUE;
        END IF;
        -- Unordered: a settle that ends its lease asks for any due delivery (claimed below, for all at once).
        IF r.nxt IS NOT NULL AND NOT COALESCE((r.nxt->>'ordered')::boolean, true) AND NOT r.held THEN
          wanting := wanting || r.i;
          want_owner := r.nxt->>'owner'; want_lease := (r.nxt->>'leaseMs')::bigint; want_now := r.now; want_after := ${after};
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
            NULL::jsonb, NULL::jsonb, NULL::boolean, NULL::double precision, NULL::bigint${noTurn};
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
              -- Another company has due work: the next goes by turns (with turns, this webhook's next
              -- once the rotation comes round to its company again).
              q.hint := avail; q.hint_seq := head.seq;
              wanting_ordered := wanting_ordered || r.i;
              want_owner := r.nxt->>'owner'; want_lease := (r.nxt->>'leaseMs')::bigint; want_now := r.now; want_after := ${after};
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
          CASE WHEN nd IS NULL THEN NULL ELSE false END, CASE WHEN nd IS NULL THEN NULL ELSE q.rate_per_second END, CASE WHEN nd IS NULL THEN NULL ELSE q.rate_burst END${passedTurn};
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
        -- One claim for every settle that asked: each gets one, in order, while there are any. With
        -- turns they go on from the settling engine's last (p_after; after the settling company for an
        -- engine that has served none): starting after the settling company, a quiet company's lone
        -- settle always handed its webhook's next to the busy one, and it waited for the busy one's
        -- next batch.
        FOR c IN SELECT row_number() OVER () AS k, cl.* FROM ${f.claim}(want_now, cardinality(wanting), want_lease, want_owner || ':' || md5(random()::text), false, true, want_after) cl LOOP
          RETURN QUERY SELECT wanting[c.k], true, NULL::jsonb, c.delivery, c.event, c.probe, c.rate_per_second, c.rate_burst${claimTurn};
          ${turns ? 'want_after := COALESCE(c.turn, want_after); -- the ordered claim below goes on after it' : ''}
        END LOOP;
      END IF;
      IF cardinality(wanting_ordered) > 0 THEN
        FOR c IN SELECT row_number() OVER () AS k, cl.* FROM ${f.claim}(want_now, cardinality(wanting_ordered), want_lease, want_owner || ':' || md5(random()::text), true, true, want_after) cl LOOP
          RETURN QUERY SELECT wanting_ordered[c.k], true, NULL::jsonb, c.delivery, c.event, c.probe, c.rate_per_second, c.rate_burst${claimTurn};
        END LOOP;
      END IF;
      IF notify_others THEN ${notify}; END IF;
    END $fn$`
}
