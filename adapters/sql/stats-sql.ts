import type { Dialect, Tables } from './schema.js'

/**
 * The statement behind `stats()`: each queue row with its open deliveries counted and its oldest open
 * one's enqueue time, both through the index of open deliveries (webhook_id, seq), so the cost follows
 * open deliveries, not the log. Takes the company as its only parameter when `byCompany`.
 */
export function statsSql(dialect: Dialect, t: Tables, byCompany: boolean): string {
  const open = dialect === 'sqlite' ? `${t.deliveries} d INDEXED BY ${t.index}deliveries_queue` : `${t.deliveries} d`
  return `SELECT q.*,
      (SELECT COUNT(*) FROM ${open} WHERE d.webhook_id = q.webhook_id AND d.state = 'pending') AS pending,
      (SELECT d.created_at FROM ${open} WHERE d.webhook_id = q.webhook_id AND d.state = 'pending' ORDER BY d.seq LIMIT 1) AS oldest
    FROM ${t.queues} q${byCompany ? ` WHERE q.company = ${dialect === 'sqlite' ? '?' : '$1'}` : ''}
    ORDER BY q.webhook_id`
}
