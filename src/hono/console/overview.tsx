import type { EngineStats } from '../../engine-stats.js'
import type { COTWebhook } from '../../model.js'
import { Layout, type PageContext } from './pages.js'

/**
 * The company's overview: what waits, what is held back, and how deliveries went over the last hour
 * (this instance's, by minute) as a server-rendered SVG: bars of succeeded and failed per minute and
 * the failure rate as a line.
 */

const WIDTH = 640
const HEIGHT = 160
const PAD = { left: 34, right: 40, top: 10, bottom: 22 }
const COLORS = { succeeded: '#2e9d57', failed: '#d0392b', rate: '#2155c4' }

/** A duration as people read it: "42 s", "7 min", "3 h". */
export function age(ms: number | null): string {
  if (ms === null) return '—'
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  return `${Math.round(ms / 3_600_000)} h`
}

/**
 * The last hour's deliveries by minute, with a text summary for screen readers.
 *
 * @example
 * ```tsx
 * <OutcomeChart recent={stats.recent} />
 * ```
 */
export function OutcomeChart({ recent }: { recent: EngineStats['recent'] }) {
  const succeeded = recent.reduce((n, m) => n + m.succeeded, 0)
  const failed = recent.reduce((n, m) => n + m.failed, 0)
  if (!succeeded && !failed) return <p class="muted" id="overview-chart">No deliveries ended here in the last hour.</p>
  const plotW = WIDTH - PAD.left - PAD.right
  const plotH = HEIGHT - PAD.top - PAD.bottom
  const max = Math.max(1, ...recent.map((m) => m.succeeded + m.failed))
  const slot = plotW / recent.length
  const barW = Math.max(2, slot * 0.7)
  const rate = recent.map((m, i) => (m.succeeded + m.failed ? { i, r: m.failed / (m.succeeded + m.failed) } : null)).filter((p) => p !== null)
  const point = ({ i, r }: { i: number; r: number }) => `${(PAD.left + slot * i + slot / 2).toFixed(1)},${(PAD.top + plotH - r * plotH).toFixed(1)}`
  const clock = (ms: number) => new Date(ms).toISOString().slice(11, 16)
  const summary = `Last hour: ${succeeded} deliveries succeeded, ${failed} failed (${Math.round((failed / (succeeded + failed)) * 100)}% failed); busiest minute ${max}`
  return (
    <figure style="margin:0" id="overview-chart">
      <svg role="img" aria-label={summary} viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width="100%" style={`max-width:${WIDTH}px;background:#fff;border:1px solid #dde1e8`}>
        <title>{summary}</title>
        <line x1={PAD.left} y1={PAD.top + plotH} x2={PAD.left + plotW} y2={PAD.top + plotH} stroke="#c4cad4" />
        <text x={PAD.left - 6} y={PAD.top + 8} text-anchor="end">{max}</text>
        <text x={PAD.left - 6} y={PAD.top + plotH} text-anchor="end">0</text>
        <text x={PAD.left + plotW + 4} y={PAD.top + 8}>100%</text>
        {recent.map((m, i) => {
          const x = (PAD.left + slot * i + (slot - barW) / 2).toFixed(1)
          const hs = (m.succeeded / max) * plotH
          const hf = (m.failed / max) * plotH
          return (
            <g>
              {m.succeeded ? <rect class="bar-succeeded" x={x} y={(PAD.top + plotH - hs).toFixed(1)} width={barW.toFixed(1)} height={hs.toFixed(1)} fill={COLORS.succeeded}><title>{`${clock(m.start)}: ${m.succeeded} succeeded`}</title></rect> : null}
              {m.failed ? <rect class="bar-failed" x={x} y={(PAD.top + plotH - hs - hf).toFixed(1)} width={barW.toFixed(1)} height={hf.toFixed(1)} fill={COLORS.failed}><title>{`${clock(m.start)}: ${m.failed} failed`}</title></rect> : null}
            </g>
          )
        })}
        {rate.length > 1 ? <polyline points={rate.map(point).join(' ')} fill="none" stroke={COLORS.rate} stroke-width="2" /> : null}
        {rate.map((p) => {
          const [cx, cy] = point(p).split(',')
          return <circle cx={cx} cy={cy} r="2.5" fill={COLORS.rate} />
        })}
        <text x={PAD.left} y={HEIGHT - 6}>{clock(recent[0]!.start)}</text>
        <text x={PAD.left + plotW} y={HEIGHT - 6} text-anchor="end">{clock(recent.at(-1)!.start)} UTC</text>
      </svg>
      <figcaption class="muted">
        <span style={`color:${COLORS.succeeded}`}>■</span> succeeded {succeeded} · <span style={`color:${COLORS.failed}`}>■</span> failed {failed} ·{' '}
        <span style={`color:${COLORS.rate}`}>—</span> failure rate, per minute
      </figcaption>
    </figure>
  )
}

/** The overview page: totals, the chart, and the webhooks to look at first. */
export function OverviewPage({ ctx, stats, names }: { ctx: PageContext; stats: EngineStats; names: Map<string, COTWebhook> }) {
  return (
    <Layout ctx={ctx} heading="Overview">
      <div class="card">
        <dl>
          <dt>Open deliveries</dt><dd id="open">{stats.open}</dd>
          <dt>Oldest waiting</dt><dd id="oldest">{age(stats.oldestOpenAgeMs)}</dd>
          <dt>Circuits open</dt><dd id="circuits">{stats.circuitsOpen}</dd>
        </dl>
      </div>
      <h2>Last hour</h2>
      <OutcomeChart recent={stats.recent} />
      <p class="muted">Deliveries this server brought to an end; other instances on the same store count their own.</p>
      <h2>Webhooks to look at</h2>
      {stats.webhooks.length === 0 ? (
        <p class="muted" id="nothing-waits">Nothing waits and no circuit is open.</p>
      ) : (
        <table id="backlogs">
          <thead>
            <tr><th>Webhook</th><th>Circuit</th><th>Open</th><th>Oldest waiting</th><th title="Deliveries that ran out of attempts, in a row">Failed in a row</th></tr>
          </thead>
          <tbody>
            {stats.webhooks.map((w) => (
              <tr>
                <td><a href={`${ctx.base}/w/${w.webhookId}`}>{names.get(w.webhookId)?.name ?? w.webhookId}</a></td>
                <td>{w.circuit === 'closed' ? 'closed' : <span class="badge bad">{w.circuit}</span>}</td>
                <td class="num">{w.open}</td>
                <td class="num">{age(w.oldestOpenAgeMs)}</td>
                <td class="num">{w.consecutiveFailures}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {stats.more ? <p class="muted">and {stats.more} more</p> : null}
    </Layout>
  )
}
