// `npm run build`: bundles src/ into dist/ for the gateway to embed.
//
// dist/index.html            revalidated by browsers (no hash in its name)
// dist/assets/app-HASH.js    content-hashed: cached for good
// dist/assets/app-HASH.css
//
// Deterministic: the same sources and package-lock.json give byte-identical
// files (CI rebuilds and compares), so no timestamps, absolute paths or
// source maps go into the output.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.ts' },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  charset: 'utf8',
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  outdir: join(dist, 'assets'),
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) {
  throw new Error(`expected one .js and one .css output, got ${outputs.join(', ')}`);
}

const template = await readFile(join(root, 'src', 'index.html'), 'utf8');
const html = template
  .replace('%APP_CSS%', `/assets/${css}`)
  .replace('%APP_JS%', `/assets/${js}`);
if (html.includes('%APP_')) {
  throw new Error('src/index.html has a placeholder the build does not know');
}
await writeFile(join(dist, 'index.html'), html);
console.log(`dist/index.html, dist/assets/${js}, dist/assets/${css}`);
