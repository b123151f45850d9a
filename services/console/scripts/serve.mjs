// A development server for the console: serves dist/ from disk the way the
// gateway serves its embedded copy (same paths, CSP and cache headers), so a
// rebuilt console can be tried without rebuilding the gateway. With an
// upstream, every POST (the console's gRPC-web calls) is forwarded to that
// gateway unchanged: the gateway speaks gRPC-web itself.
//
//   node scripts/serve.mjs [--port 50080] [--upstream http://127.0.0.1:50050]
//
// Not used in production: the gateway embeds dist/ (services/gateway/src/console.rs).
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The gateway's policy (services/gateway/src/console.rs, CONTENT_SECURITY_POLICY). */
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const TYPES = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' };
const COMMON = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** Starts the server; resolves to { server, url, close }. */
export async function serve({ port = 0, host = '127.0.0.1', upstream, dist } = {}) {
  const root = dist ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
  const server = http.createServer(async (req, res) => {
    if (req.method === 'POST' && upstream) {
      forward(req, res, upstream);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...COMMON, allow: 'GET, HEAD' }).end();
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // The same names the gateway embeds: the index and dist/assets/<file>, nothing else.
    let file;
    let cache;
    if (path === '/' || path === '/index.html') {
      file = join(root, 'index.html');
      cache = 'no-cache';
    } else if (/^\/assets\/[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(path)) {
      file = join(root, path);
      cache = 'public, max-age=31536000, immutable';
    }
    const body = file ? await readFile(file).catch(() => undefined) : undefined;
    if (!body) {
      res.writeHead(404, { ...COMMON, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : 'not found\n');
      return;
    }
    const type = TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream';
    res.writeHead(200, { ...COMMON, 'content-type': type, 'cache-control': cache, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    server,
    url: `http://${host}:${address.port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** One POST passed through as it is (headers, body, answer). */
function forward(req, res, upstream) {
  const target = new URL(req.url ?? '/', upstream);
  const out = http.request(target, { method: 'POST', headers: { ...req.headers, host: target.host } }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  out.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`upstream: ${e.message}\n`);
  });
  res.on('close', () => out.destroy());
  req.pipe(out);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const upstream = arg('--upstream', process.env.CONSOLE_UPSTREAM);
  const s = await serve({ port: Number(arg('--port', '50080')), upstream });
  console.log(`console on ${s.url}${upstream ? ` (calls forwarded to ${upstream})` : ''}`);
}
