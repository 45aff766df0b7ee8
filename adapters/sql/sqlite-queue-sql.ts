import type { Tables } from './schema.js'

/** The statements of the queue logic (SQLite dialect, positional parameters). */
export function queueSql(t: Tables) {
  const deliveryColumns = `seq, id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at, lease_token, lease_until, trace`
  // A webhook's open deliveries, through the indexes that hold only open ones: the planner would
  // otherwise take the log's index (webhook_id, seq) and step over every delivery ever made.
  const open = `${t.deliveries} INDEXED BY ${t.index}deliveries_queue`
  const ready = `${t.deliveries} INDEXED BY ${t.index}deliveries_ready`
  return {
    /** (now, limit) */
    candidates: `SELECT * FROM ${t.queues} WHERE hint IS NOT NULL AND hint <= ? ORDER BY hint, hint_seq LIMIT ?`,
    /**
     * (after, now, limit, now, after, limit, now, limit): company turns. Up to `limit` companies with
     * due work, each with its earliest due queue: the companies after `after`, then from the first
     * round to `after`. Each step is one probe of the turns index, whatever the backlog.
     */
    turns: `WITH RECURSIVE
      a(n, company) AS (SELECT 0, ? UNION ALL SELECT n + 1, (SELECT company FROM ${t.queues}
        WHERE company > a.company AND hint IS NOT NULL AND hint <= ? ORDER BY company LIMIT 1) FROM a WHERE a.company IS NOT NULL AND n < ?),
      b(n, company) AS (SELECT 0, '' UNION ALL SELECT n + 1, (SELECT company FROM ${t.queues}
        WHERE company > b.company AND hint IS NOT NULL AND hint <= ? AND company <= ? ORDER BY company LIMIT 1) FROM b WHERE b.company IS NOT NULL AND n < ?),
      w(part, n, company) AS (SELECT 0, n, company FROM a WHERE n > 0 AND company IS NOT NULL
        UNION ALL SELECT 1, n, company FROM b WHERE n > 0 AND company IS NOT NULL)
      SELECT q.* FROM w JOIN ${t.queues} q ON q.webhook_id = (SELECT x.webhook_id FROM ${t.queues} x
        WHERE x.company = w.company AND x.hint IS NOT NULL AND x.hint <= ? ORDER BY x.hint, x.hint_seq LIMIT 1)
      ORDER BY w.part, w.n LIMIT ?`,
    /** (company, now, company, now): whether another company has a due queue */
    othersDue: `SELECT EXISTS (SELECT 1 FROM ${t.queues} WHERE company > ? AND hint IS NOT NULL AND hint <= ?)
      OR EXISTS (SELECT 1 FROM ${t.queues} WHERE company < ? AND hint IS NOT NULL AND hint <= ?) AS due`,
    /** (webhookId) */
    queue: `SELECT * FROM ${t.queues} WHERE webhook_id = ?`,
    /** (webhookId) */
    head: `SELECT seq, id, next_attempt_at, lease_until FROM ${open} WHERE webhook_id = ? AND state = 'pending' ORDER BY seq LIMIT 1`,
    /** (webhookId, now, now, limit) */
    ready: `SELECT seq, id, next_attempt_at, lease_until FROM ${ready}
      WHERE webhook_id = ? AND state = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
      ORDER BY next_attempt_at, seq LIMIT ?`,
    /** (webhookId, now): the earliest future due time and its delivery */
    nextDue: `SELECT next_attempt_at, seq FROM ${ready} WHERE webhook_id = ? AND state = 'pending' AND next_attempt_at > ?
      ORDER BY next_attempt_at, seq LIMIT 1`,
    /** (token, leaseUntil, seq, now): takes a delivery only if it is still free */
    lease: `UPDATE ${t.deliveries} SET lease_token = ?, lease_until = ?
      WHERE seq = ? AND state = 'pending' AND (lease_until IS NULL OR lease_until < ?)
      RETURNING ${deliveryColumns}`,
    /** (eventIds…) */
    eventBodies: (count: number) => `SELECT id, body FROM ${t.events} WHERE id IN (${Array(count).fill('?').join(', ')})`,
    /** (attempt|null, attempt|null, status|null, response, now, state, nextAttemptAt|null, leaseToken|null, leaseUntil|null, id, token, now) */
    settle: `UPDATE ${t.deliveries} SET
        attempts = CASE WHEN ? IS NULL THEN attempts ELSE json_insert(attempts, '$[#]', json(?)) END,
        status = COALESCE(?, status), response = ?, updated_at = ?, state = ?, next_attempt_at = ?,
        lease_token = ?, lease_until = ?
      WHERE id = ? AND lease_token = ? AND lease_until >= ? AND state = 'pending'
      RETURNING webhook_id, company, seq, next_attempt_at`,
    /** (id, token, now) */
    release: `UPDATE ${t.deliveries} SET lease_token = NULL, lease_until = NULL
      WHERE id = ? AND lease_token = ? AND lease_until >= ? AND state = 'pending'
      RETURNING webhook_id, company, seq, next_attempt_at`,
    /** (…columns, webhookId, version) */
    write: `UPDATE ${t.queues} SET version = version + 1, ordered = ?, open = ?, hint = ?, hint_seq = ?, out = ?, out_until = ?,
        consecutive_failures = ?, failing_since = ?, last_success_at = ?, last_failure_at = ?, failed_attempts = ?, open_until = ?,
        cooldown_ms = ?, probe_token = ?, probe_until = ?, rate_per_second = ?, rate_burst = ?, tokens = ?, tokens_at = ?
      WHERE webhook_id = ? AND version = ?`,
    /** (webhookId, company) */
    ensure: `INSERT INTO ${t.queues} (webhook_id, company) VALUES (?, ?) ON CONFLICT (webhook_id) DO NOTHING`,
    /** (webhookId, company, n, at, eventId, webhookId): an enqueue's share of a queue, after its deliveries */
    arrive: `INSERT INTO ${t.queues} (webhook_id, company, version, open, hint, hint_seq)
      VALUES (?, ?, 1, ?, ?, (SELECT MIN(seq) FROM ${t.deliveries} WHERE event_id = ? AND webhook_id = ?))
      ON CONFLICT (webhook_id) DO UPDATE SET version = version + 1, open = open + excluded.open,
        hint = CASE WHEN hint IS NULL OR max(excluded.hint, COALESCE(open_until, 0)) < hint THEN max(excluded.hint, COALESCE(open_until, 0)) ELSE hint END,
        hint_seq = CASE WHEN hint IS NULL OR max(excluded.hint, COALESCE(open_until, 0)) < hint THEN excluded.hint_seq ELSE hint_seq END`,
    nextWake: `SELECT MIN(hint) AS wake FROM ${t.queues} WHERE hint IS NOT NULL`,
    openCount: `SELECT COALESCE(SUM(open), 0) AS n FROM ${t.queues} WHERE hint IS NOT NULL`,
    /** (webhookId) */
    // A hint of 0 is never late: the next claim looks at the queue and sets it right.
    reset: `UPDATE ${t.queues} SET version = version + 1, consecutive_failures = 0, failing_since = NULL, failed_attempts = 0,
      open_until = NULL, cooldown_ms = 0, probe_token = NULL, probe_until = NULL,
      hint = CASE WHEN hint IS NULL THEN NULL ELSE 0 END WHERE webhook_id = ?`,
    /** (perSecond, burst, burst, webhookId) */
    setRate: `UPDATE ${t.queues} SET version = version + 1, rate_per_second = ?, rate_burst = ?, tokens = min(tokens, COALESCE(?, tokens)),
      hint = CASE WHEN hint IS NULL THEN NULL ELSE 0 END WHERE webhook_id = ?`,
  }
}
