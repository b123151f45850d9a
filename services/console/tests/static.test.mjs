// The built console on its own (no mesh): dist/ served as the gateway serves
// it, under the same CSP. The sign-in screen renders, is labelled, scans clean
// and breaks no CSP rule. Runs without a roaming binary.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { serve } from '../scripts/serve.mjs';
import { assertClean, axe, launch, newPage, shot } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await serve({ port: 0 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('index.html links content-hashed assets, and the headers fit them', async () => {
  const res = await fetch(server.url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  const html = await res.text();
  const assets = [...html.matchAll(/\/assets\/(app-[A-Z0-9]+\.(?:js|css))/g)].map((m) => m[1]);
  assert.equal(assets.length, 2, html);
  for (const a of assets) {
    const r = await fetch(new URL(`/assets/${a}`, server.url));
    assert.equal(r.status, 200);
    assert.match(r.headers.get('cache-control') ?? '', /immutable/);
  }
  assert.doesNotMatch(html, /<style|style=|<script>/, 'no inline style or script');
  const page = await newPage(browser);
  const nav = await page.goto(new URL('/assets/does-not-exist.js', server.url).href);
  assert.equal(nav?.status(), 404);
  await shot(page, 'static-not-found');
  await page.context().close();
});

test('the sign-in screen renders under the CSP, labelled, keyboard-first', async () => {
  const page = await newPage(browser);
  await page.goto(server.url);
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  const username = page.getByLabel('Username');
  const password = page.getByLabel('Password');
  await username.waitFor();
  await password.waitFor();
  // Keyboard only: Tab from the heading reaches the fields, then the button.
  await page.keyboard.press('Tab');
  assert.equal(await username.evaluate((el) => el === document.activeElement), true);
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  assert.equal(await password.evaluate((el) => el === document.activeElement), true);
  await page.keyboard.press('Tab');
  assert.equal(
    await page.getByRole('button', { name: 'Sign in' }).evaluate((el) => el === document.activeElement),
    true,
  );
  await shot(page, 'static-sign-in');
  assertClean(page);
  await page.context().close();
});

test('the sign-in screen has no serious or critical accessibility violation', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await page.goto(server.url);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const violations = await axe(page);
  assert.deepEqual(violations, []);
  await shot(page, 'static-sign-in-scanned');
  await page.context().close();
});

test('the scan itself reports an unlabelled control (so a clean scan means something)', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await page.setContent('<!doctype html><html lang="en"><title>t</title><main><input type="text"></main></html>');
  const violations = await axe(page);
  assert.ok(
    violations.some((v) => v.id === 'label'),
    `expected a "label" violation, got ${JSON.stringify(violations)}`,
  );
  await shot(page, 'static-unlabelled-control');
  await page.context().close();
});
