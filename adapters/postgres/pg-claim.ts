import type { Tables } from '../sql/schema.js'
import { deliveryJson, gate, refilled, type FunctionNames } from './pg-sql.js'

/**
 * The claim function. Queues with nothing special about them (no circuit opened, no rate) are served in one
 * statement each way; the few with a circuit or a rate, one at a time before them.
 *
 * @example
 * ```ts
 * await client.query(claimFunction(tables('cotwebhook_'), functionNames(tables('cotwebhook_'))))
 * ```
 */
export function claimFunction(t: Tables, f: FunctionNames): string {
  return `CREATE OR REPLACE FUNCTION ${f.claim}(p_now bigint, p_limit int, p_lease_ms bigint, p_token text, p_ordered boolean, p_durable boolean, p_after text)
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
      -- Wake-ups from host transactions (and earlier releases) join their queues. Not in a claim a settle
      -- makes (p_durable): the settle already holds queue rows, and these upserts wait for theirs in
      -- another order, so two settles at once could deadlock. The next plain claim merges them.
      IF NOT p_durable AND EXISTS (SELECT 1 FROM ${t.wakeups}) THEN
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
    END $fn$`
}
