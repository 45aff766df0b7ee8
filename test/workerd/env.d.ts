// The bindings module of workerd tests (provided at run time by @cloudflare/vitest-pool-workers).
declare module 'cloudflare:workers' {
  export const env: Record<string, unknown>
}
