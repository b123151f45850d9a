// A development server for the console: serves dist/ the way the gateway does
// (same paths, CSP and cache headers) and, with an upstream, translates the
// browser's gRPC-web (binary) calls to gRPC over HTTP/2 cleartext, so the
// console can be tried against a mesh whose gateway does not speak gRPC-web.
//
//   node scripts/serve.mjs [--port 50080] [--upstream http://127.0.0.1:50050]
//
// Not used in production: the gateway embeds dist/ and speaks gRPC-web itself.
import http from 'node:http';
import http2 from 'node:http2';
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const TYPES = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' };

/** Starts the server; resolves to { server, url, close }. */
export async function serve({ port = 0, host = '127.0.0.1', upstream, dist } = {}) {
  const root = dist ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
  let session;
  const upstreamSession = () => {
    if (!session || session.closed || session.destroyed) {
      session = http2.connect(upstream);
      session.on('error', () => undefined);
    }
    return session;
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const type = req.headers['content-type'] ?? '';
    if (req.method === 'POST' && type.startsWith('application/grpc-web') && upstream) {
      proxy(req, res, url.pathname, upstreamSession());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const common = {
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    let file;
    let cache;
    if (url.pathname === '/' || url.pathname === '/index.html') {
      file = join(root, 'index.html');
      cache = 'no-cache';
    } else if (/^\/assets\/[A-Za-z0-9._-]+$/.test(url.pathname)) {
      file = normalize(join(root, url.pathname));
      cache = 'public, max-age=31536000, immutable';
    }
    if (!file) {
      res.writeHead(404, { ...common, 'content-type': 'text/plain' }).end('not found');
      return;
    }
    try {
      const body = await readFile(file);
      const ext = file.slice(file.lastIndexOf('.'));
      res.writeHead(200, { ...common, 'content-type': TYPES[ext] ?? 'application/octet-stream', 'cache-control': cache });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { ...common, 'content-type': 'text/plain' }).end('not found');
    }
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    server,
    url: `http://${host}:${address.port}/`,
    close: () =>
      new Promise((resolve) => {
        session?.close();
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** One gRPC-web call as one gRPC call; the gRPC trailers become the gRPC-web trailer frame. */
function proxy(req, res, path, session) {
  if (!String(req.headers['content-type']).startsWith('application/grpc-web+proto') && req.headers['content-type'] !== 'application/grpc-web') {
    res.writeHead(415).end('only binary gRPC-web');
    return;
  }
  const headers = {
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc+proto',
    te: 'trailers',
  };
  for (const name of ['authorization', 'grpc-timeout', 'x-user-agent', 'traceparent']) {
    if (req.headers[name]) headers[name] = req.headers[name];
  }
  let stream;
  try {
    stream = session.request(headers);
  } catch (e) {
    res.writeHead(502).end(String(e));
    return;
  }
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    res.writeHead(200, { 'content-type': 'application/grpc-web+proto', 'cache-control': 'no-store' });
  };
  const trailerFrame = (fields) => {
    const text = Object.entries(fields)
      .filter(([k]) => k.startsWith('grpc-'))
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(',') : v}\r\n`)
      .join('');
    const body = Buffer.from(text, 'latin1');
    const head = Buffer.alloc(5);
    head[0] = 0x80;
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };
  let trailersOnly;
  stream.on('response', (h) => {
    start();
    if (h['grpc-status'] !== undefined) trailersOnly = h;
  });
  stream.on('data', (chunk) => {
    start();
    res.write(chunk);
  });
  stream.on('trailers', (t) => {
    start();
    res.write(trailerFrame(t));
  });
  stream.on('end', () => {
    start();
    if (trailersOnly) res.write(trailerFrame(trailersOnly));
    res.end();
  });
  stream.on('error', (e) => {
    if (!started) {
      res.writeHead(200, { 'content-type': 'application/grpc-web+proto' });
      started = true;
    }
    res.end(trailerFrame({ 'grpc-status': '14', 'grpc-message': encodeURIComponent(String(e.message)) }));
  });
  req.on('data', (c) => stream.write(c));
  req.on('end', () => stream.end());
  res.on('close', () => {
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const s = await serve({
    port: Number(arg('--port', '50080')),
    upstream: arg('--upstream', process.env.CONSOLE_UPSTREAM),
  });
  console.log(`console on ${s.url}${process.env.CONSOLE_UPSTREAM || arg('--upstream') ? ' (gRPC-web translated to the upstream)' : ''}`);
}
