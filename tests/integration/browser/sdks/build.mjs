// Bundles each SDK into one browser script under the directory given (default: ./dist), as a
// shop's build would: pinned versions from package-lock.json, nothing fetched from a CDN.
import { build } from 'esbuild'
import path from 'node:path'

const out = process.argv[2] ?? 'dist'
const here = path.dirname(new URL(import.meta.url).pathname)
// The 3.x plugin and tracker must share one copy of the 3.x core, or the plugin finds no tracker.
const core3 = path.join(here, 'node_modules/snowplow-browser-tracker-3/node_modules/@snowplow')
const bundles = {
  segment: {},
  snowplow4: {},
  snowplow3: {
    alias: {
      '@snowplow/browser-tracker-core': path.join(core3, 'browser-tracker-core'),
      '@snowplow/tracker-core': path.join(core3, 'tracker-core'),
    },
  },
}
for (const [name, options] of Object.entries(bundles)) {
  await build({
    entryPoints: [path.join(here, 'entries', `${name}.js`)],
    outfile: path.join(out, `${name}.js`),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2019',
    logLevel: 'warning',
    ...options,
  })
}
