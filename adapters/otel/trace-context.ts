import { createTraceState, isSpanContextValid, type SpanContext } from '@opentelemetry/api'

/**
 * The W3C trace context a delivery keeps: `traceparent`, then `tracestate` after a space when there is
 * one. Written here rather than through the global propagator, so it is kept whatever propagator the
 * host registered (or none).
 */

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** `00-<trace id>-<span id>-<flags>[ <tracestate>]`, or undefined for a span that records nothing anywhere. */
export function formatTrace(context: SpanContext): string | undefined {
  if (!isSpanContextValid(context)) return undefined
  const parent = `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`
  const state = context.traceState?.serialize()
  return state ? `${parent} ${state}` : parent
}

/** The span context of a kept trace, as a remote parent; undefined for none or for one not understood. */
export function parseTrace(text: string | undefined): SpanContext | undefined {
  if (!text) return undefined
  const space = text.indexOf(' ')
  const match = TRACEPARENT.exec(space < 0 ? text : text.slice(0, space))
  if (!match) return undefined
  const context: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16),
    isRemote: true,
    ...(space < 0 ? {} : { traceState: createTraceState(text.slice(space + 1)) }),
  }
  return isSpanContextValid(context) ? context : undefined
}
