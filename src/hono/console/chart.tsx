import type { COTWebhookLog } from '../../model.js'

/**
 * A server-rendered SVG of a webhook's recent deliveries: bars of succeeded, failed and pending per
 * time slice, and the mean duration of their last attempts as a line. No script, no library.
 */

const WIDTH = 640
const HEIGHT = 160
const PAD = { left: 34, right: 40, top: 10, bottom: 22 }
const SLICES = 12
const COLORS = { succeeded: '#2e9d57', failed: '#d0392b', pending: '#9aa3b2' }

interface Slice {
  start: number
  succeeded: number
  failed: number
  pending: number
  durations: number[]
}

// The shortest time the chart spans: a few deliveries of the same second are one bar, not twelve.
const MIN_SPAN_MS = 60_000

/**
 * Groups deliveries into equal time slices between the oldest and the newest, over a minute at least
 * (ending at the newest).
 *
 * @example
 * ```ts
 * slices(logs).map((s) => s.succeeded) // [0, 0, …, 3]: three deliveries of one second
 * ```
 */
export function slices(logs: readonly COTWebhookLog[], count = SLICES): Slice[] {
  if (!logs.length) return []
  const times = logs.map((log) => Date.parse(log.createdAt))
  const to = Math.max(...times)
  const from = Math.min(Math.min(...times), to - MIN_SPAN_MS + 1)
  const span = to - from + 1
  const result: Slice[] = Array.from({ length: count }, (_, i) => ({ start: from + (span * i) / count, succeeded: 0, failed: 0, pending: 0, durations: [] }))
  logs.forEach((log, i) => {
    const slice = result[Math.min(count - 1, Math.floor(((times[i]! - from) / span) * count))]!
    slice[log.state]++
    if (log.durationMs !== null) slice.durations.push(log.durationMs)
  })
  return result
}

/**
 * The chart, with a text summary for screen readers.
 *
 * @example
 * ```tsx
 * <DeliveryChart logs={logs} />
 * ```
 */
export function DeliveryChart({ logs }: { logs: readonly COTWebhookLog[] }) {
  const data = slices(logs)
  if (!data.length) return <p class="muted">No deliveries yet.</p>
  const plotW = WIDTH - PAD.left - PAD.right
  const plotH = HEIGHT - PAD.top - PAD.bottom
  const maxCount = Math.max(1, ...data.map((s) => s.succeeded + s.failed + s.pending))
  const means = data.map((s) => (s.durations.length ? s.durations.reduce((a, b) => a + b, 0) / s.durations.length : null))
  const maxMs = Math.max(1, ...means.map((m) => m ?? 0))
  const slot = plotW / data.length
  const barW = Math.max(2, slot * 0.7)
  const totals = { succeeded: 0, failed: 0, pending: 0 }
  for (const s of data) for (const k of ['succeeded', 'failed', 'pending'] as const) totals[k] += s[k]
  const points = means
    .map((m, i) => (m === null ? null : `${(PAD.left + slot * i + slot / 2).toFixed(1)},${(PAD.top + plotH - (m / maxMs) * plotH).toFixed(1)}`))
    .filter((p): p is string => p !== null)
  const summary = `${logs.length} recent deliveries: ${totals.succeeded} succeeded, ${totals.failed} failed, ${totals.pending} pending; slowest slice averaged ${Math.round(maxMs)} ms`
  return (
    <figure style="margin:0">
      <svg role="img" aria-label={summary} viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width="100%" style={`max-width:${WIDTH}px;background:#fff;border:1px solid #dde1e8`}>
        <title>{summary}</title>
        <line x1={PAD.left} y1={PAD.top + plotH} x2={PAD.left + plotW} y2={PAD.top + plotH} stroke="#c4cad4" />
        <text x={PAD.left - 6} y={PAD.top + 8} text-anchor="end">{maxCount}</text>
        <text x={PAD.left - 6} y={PAD.top + plotH} text-anchor="end">0</text>
        <text x={PAD.left + plotW + 4} y={PAD.top + 8}>{Math.round(maxMs)} ms</text>
        {data.map((s, i) => {
          let y = PAD.top + plotH
          const x = PAD.left + slot * i + (slot - barW) / 2
          return (
            <g>
              {(['succeeded', 'failed', 'pending'] as const).map((k) => {
                const h = (s[k] / maxCount) * plotH
                y -= h
                return s[k] ? <rect class={`bar-${k}`} x={x.toFixed(1)} y={y.toFixed(1)} width={barW.toFixed(1)} height={h.toFixed(1)} fill={COLORS[k]}><title>{`${s[k]} ${k}`}</title></rect> : null
              })}
            </g>
          )
        })}
        {points.length > 1 ? <polyline points={points.join(' ')} fill="none" stroke="#2155c4" stroke-width="2" /> : null}
        {points.map((p) => {
          const [cx, cy] = p.split(',')
          return <circle cx={cx} cy={cy} r="2.5" fill="#2155c4" />
        })}
        <text x={PAD.left} y={HEIGHT - 6}>{new Date(data[0]!.start).toISOString().slice(5, 16).replace('T', ' ')}</text>
        <text x={PAD.left + plotW} y={HEIGHT - 6} text-anchor="end">{new Date(Math.max(...logs.map((l) => Date.parse(l.createdAt)))).toISOString().slice(5, 16).replace('T', ' ')} UTC</text>
      </svg>
      <figcaption class="muted">
        <span style={`color:${COLORS.succeeded}`}>■</span> succeeded {totals.succeeded} · <span style={`color:${COLORS.failed}`}>■</span> failed {totals.failed} ·{' '}
        <span style={`color:${COLORS.pending}`}>■</span> pending {totals.pending} · <span style="color:#2155c4">—</span> mean duration
      </figcaption>
    </figure>
  )
}
