// The parser the metrics test reads our exposition with ships no types.
declare module 'parse-prometheus-text-format' {
  interface MetricFamily {
    name: string
    help: string
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
    metrics: Array<{ value?: string; labels?: Record<string, string> }>
  }
  export default function parsePrometheusTextFormat(text: string): MetricFamily[]
}
