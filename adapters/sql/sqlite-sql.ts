import type { Tables } from './schema.js'

/**
 * The statements of the SQLite dialect, shared by the better-sqlite3/`bun:sqlite` store and the
 * Cloudflare D1 store (D1 is SQLite): the same text, the same positional parameters, so a fix
 * to one is a fix to both.
 */
export function sqliteSql(t: Tables) {
  const deliverySelect = `SELECT d.seq, d.id, d.company, d.webhook_id, d.event_id, d.state, d.attempts, d.status, d.response,
      d.created_at, d.updated_at, d.next_attempt_at, d.trace, e.body AS event
    FROM ${t.deliveries} d JOIN ${t.events} e ON e.id = d.event_id`
  return {
    /** (version) */
    setVersion: `INSERT INTO ${t.meta} (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    readVersion: `SELECT value FROM ${t.meta} WHERE key = 'schema_version'`,
    /** (id, company, code, trigger, isActive 0|1, version, doc, secrets) */
    insertWebhook: `INSERT INTO ${t.webhooks} (id, company, code, trigger, is_active, version, doc, secrets)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    /** (id, company) */
    getWebhook: `SELECT doc, secrets FROM ${t.webhooks} WHERE id = ? AND company = ?`,
    /** (company[, isActive], limit, offset) */
    listWebhooks: (filtered: boolean) =>
      `SELECT doc FROM ${t.webhooks} WHERE company = ? ${filtered ? 'AND is_active = ?' : ''} ORDER BY seq LIMIT ? OFFSET ?`,
    /** (company[, isActive]) */
    countWebhooks: (filtered: boolean) => `SELECT COUNT(*) AS n FROM ${t.webhooks} WHERE company = ? ${filtered ? 'AND is_active = ?' : ''}`,
    /** (company, trigger) */
    activeWebhooks: `SELECT doc FROM ${t.webhooks} WHERE company = ? AND trigger = ? AND is_active = 1 ORDER BY seq`,
    /** (trigger, isActive 0|1, version, doc, secrets, id, company, expectedVersion, code) */
    updateWebhook: `UPDATE ${t.webhooks} SET trigger = ?, is_active = ?, version = ?, doc = ?, secrets = ?
      WHERE id = ? AND company = ? AND version = ? AND code = ?`,
    /** (company, key) */
    readIdempotency: `SELECT result FROM ${t.idempotency} WHERE company = ? AND key = ?`,
    /** (company, key, result, eventId, createdAt) */
    insertIdempotency: `INSERT INTO ${t.idempotency} (company, key, result, event_id, created_at) VALUES (?, ?, ?, ?, ?)`,
    /** (id, company, body, createdAt) */
    insertEvent: `INSERT INTO ${t.events} (id, company, body, created_at) VALUES (?, ?, ?, ?)`,
    /** (id, company, webhookId, eventId, createdAt, updatedAt, nextAttemptAt, trace) */
    insertDelivery: `INSERT INTO ${t.deliveries}
      (id, company, webhook_id, event_id, state, attempts, status, response, created_at, updated_at, next_attempt_at, trace)
      VALUES (?, ?, ?, ?, 'pending', '[]', NULL, '', ?, ?, ?, ?)`,
    /** (id, company) */
    getDelivery: `${deliverySelect} WHERE d.id = ? AND d.company = ?`,
    /** (webhookId, company, limit, offset) */
    listDeliveries: `${deliverySelect} WHERE d.webhook_id = ? AND d.company = ? ORDER BY d.seq DESC LIMIT ? OFFSET ?`,
    /** (webhookId, company) */
    countDeliveries: `SELECT COUNT(*) AS n FROM ${t.deliveries} WHERE webhook_id = ? AND company = ?`,
    /** (before, limit) each */
    pruneDeliveries: `DELETE FROM ${t.deliveries} WHERE seq IN (SELECT seq FROM ${t.deliveries}
      WHERE state <> 'pending' AND updated_at < ? ORDER BY updated_at LIMIT ?)`,
    pruneEvents: `DELETE FROM ${t.events} WHERE id IN (SELECT e.id FROM ${t.events} e
      WHERE e.created_at < ? AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.event_id = e.id) LIMIT ?)`,
    // A key stays while its event still has an open delivery: a repeated emit must not duplicate it.
    pruneIdempotency: `DELETE FROM ${t.idempotency} WHERE rowid IN (SELECT i.rowid FROM ${t.idempotency} i WHERE i.created_at < ?
      AND NOT EXISTS (SELECT 1 FROM ${t.deliveries} d WHERE d.event_id = i.event_id AND d.state = 'pending') LIMIT ?)`,
  }
}
