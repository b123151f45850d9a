// Signing in: a wrong password; the access token renewed before it expires,
// and again with the rotated (single-use) refresh token; an access token that
// did expire (the tab slept through its renewal) renewed on the
// UNAUTHENTICATED answer without the user noticing.
// The mesh runs with 60-second access tokens (the shortest it allows).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertClean, launch, newPage, shot, signIn, startMesh } from './harness.mjs';

let mesh;
let browser;
const TTL_SECS = 60;
/** The token check's clock-skew leeway (adapters/auth: LEEWAY_SECS). */
const LEEWAY_SECS = 5;

before(async () => {
  mesh = await startMesh({ ROAMING_AUTH_TOKEN_TTL_SECS: String(TTL_SECS) });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await mesh?.stop();
});

/** Counts the gRPC-web calls of `method` the page makes. */
function counter(page, method) {
  const c = { n: 0 };
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.endsWith(`/${method}`)) c.n += 1;
  });
  return c;
}

test('a wrong password', async () => {
  const page = await newPage(browser);
  await page.goto(mesh.url);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Screens' }).count(), 0);
  await shot(page, 'auth-01-wrong-password');
  assertClean(page);
  await page.context().close();
});

test('the access token is renewed before it expires', async () => {
  const page = await newPage(browser);
  await page.clock.install();
  const refreshes = counter(page, 'RefreshToken');
  await signIn(page, mesh.url, 'alice');
  assert.equal(refreshes.n, 0);
  // A 60-second token is renewed 30 s before it expires.
  const renewed = page.waitForResponse((r) => r.url().endsWith('/RefreshToken') && r.status() === 200);
  await page.clock.runFor((TTL_SECS - 30 + 1) * 1000);
  await renewed;
  assert.equal(refreshes.n, 1);
  // Refresh tokens are single-use: the second renewal must present the one
  // the first answered with (the first again would end the login).
  const again = page.waitForResponse((r) => r.url().endsWith('/RefreshToken'));
  await page.clock.runFor((TTL_SECS - 30 + 1) * 1000);
  await again;
  assert.equal(refreshes.n, 2);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByRole('heading', { name: 'My reservations', level: 1 }).waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Sign in' }).count(), 0, 'still signed in');
  assert.equal(await page.getByRole('alert').filter({ hasText: /\S/ }).count(), 0);
  await shot(page, 'auth-02-renewed');
  assertClean(page);
  await page.context().close();
});

test('an expired access token is renewed without the user noticing', async () => {
  const page = await newPage(browser);
  await page.clock.install();
  await signIn(page, mesh.url, 'alice');
  await page.getByRole('heading', { name: 'My reservations', level: 1 }).waitFor();
  // Freeze the page's timers (as a sleeping tab's are): the scheduled renewal
  // does not run, and the token expires on the server's clock.
  await page.clock.pauseAt(new Date(Date.now() + 1_000));
  await new Promise((r) => setTimeout(r, (TTL_SECS + LEEWAY_SECS + 3) * 1000));
  const refreshes = counter(page, 'RefreshToken');
  const lists = counter(page, 'ListMyReservations');
  const renewed = page.waitForResponse((r) => r.url().endsWith('/RefreshToken') && r.status() === 200);
  await page.getByRole('button', { name: 'Refresh' }).click();
  // The list call was refused (token expired), the token renewed, the call repeated.
  await renewed;
  await page.getByText('You have no reservations yet.').waitFor();
  await page.waitForFunction(() => !document.querySelector('form[aria-busy]'));
  assert.equal(refreshes.n, 1);
  assert.equal(lists.n, 2, 'the refused call was repeated once');
  assert.equal(await page.getByRole('heading', { name: 'Sign in' }).count(), 0);
  assert.equal(await page.getByRole('alert').filter({ hasText: /\S/ }).count(), 0);
  await shot(page, 'auth-03-expired-renewed');
  await page.clock.resume();
  assertClean(page);
  await page.context().close();
});
