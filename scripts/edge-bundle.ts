/**
 * The edge bundle: the core plus the Hono face, bundled for Cloudflare Workers as a Worker would
 * bundle them (workerd conditions, no Node polyfills, `nodejs_compat` off). Fails if anything pulls
 * in a `node:` module or a Node builtin; prints the minified and gzipped sizes.
 * `npm run edge-bundle` (the edge-bundle test runs the same function).
 */
import { build } from 'esbuild'
import { builtinModules } from 'node:module'
import { gzipSync } from 'node:zlib'

export interface EdgeBundle {
  /** Minified bytes. */
  minified: number
  /** Gzipped bytes of the minified bundle. */
  gzipped: number
  /** Modules in the bundle (for diagnostics). */
  inputs: string[]
}

const NODE_BUILTINS = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)])

/** The entry of the bundle; a test passes another to prove the check fails. */
export const EDGE_ENTRY = "export * from 'cotwebhook'; export * from 'cotwebhook/hono'"

export async function edgeBundle(entry: string = EDGE_ENTRY): Promise<EdgeBundle> {
  const result = await workersBuild({ stdin: { contents: entry, resolveDir: new URL('..', import.meta.url).pathname, loader: 'ts' } })
  const code = result.outputFiles[0]!.contents
  return { minified: code.byteLength, gzipped: gzipSync(code).byteLength, inputs: Object.keys(result.metafile.inputs) }
}

/**
 * Bundles a Worker's entry file the same way (as wrangler would, without Node polyfills): the
 * module text to give to Miniflare.
 */
export async function workerScript(entryFile: string): Promise<string> {
  const result = await workersBuild({ entryPoints: [entryFile] })
  return result.outputFiles[0]!.text
}

function workersBuild(input: { stdin: { contents: string; resolveDir: string; loader: 'ts' } } | { entryPoints: string[] }) {
  return build({
    ...input,
    bundle: true,
    minify: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: ['cotwebhook-source', 'workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    metafile: true,
    logLevel: 'silent',
    // A Node builtin reaching the bundle is the failure this checks for: make it an error, not a polyfill.
    plugins: [
      {
        name: 'no-node-builtins',
        setup(b) {
          b.onResolve({ filter: /.*/ }, (args) => {
            if (NODE_BUILTINS.has(args.path)) {
              return { errors: [{ text: `${args.importer} imports ${args.path}: the edge bundle must not use Node modules` }] }
            }
            return undefined
          })
        },
      },
    ],
  })
}

if (process.argv[1]?.endsWith('edge-bundle.ts')) {
  const bundle = await edgeBundle()
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`
  console.log(`edge bundle (cotwebhook + cotwebhook/hono, workerd): ${kb(bundle.minified)} minified, ${kb(bundle.gzipped)} gzipped, ${bundle.inputs.length} modules, no node: imports`)
}
