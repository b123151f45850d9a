// RetryInfo honoured: with the payment service failing every call, a reserve
// is refused "payments unavailable" with a RetryInfo; the console counts down
// and enables "Try again" only when the wait is over.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertClean, fillCard, launch, newPage, quoteDevice, shot, signIn, startMesh, todayUtc } from './harness.mjs';

let mesh;
let browser;

before(async () => {
  mesh = await startMesh({ ROAMING_PAYMENT_FAULT_FAILURE_RATE: '1.0' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await mesh?.stop();
});

test('a refusal with RetryInfo shows a countdown, then a retry', async () => {
  const page = await newPage(browser);
  await signIn(page, mesh.url, 'alice');
  await quoteDevice(page, { start: todayUtc(1), end: todayUtc(1) });
  const pay = page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ });
  await pay.waitFor();
  await fillCard(page);
  await pay.click();
  const alert = page.getByRole('alert').filter({ hasText: 'Payments are unavailable right now' });
  await alert.waitFor();
  const again = alert.getByRole('button', { name: 'Try again' });
  await alert.getByText(/You can try again in \d+ s\./).waitFor();
  assert.equal(await again.isDisabled(), true, 'no retry before the server said so');
  assert.equal(await pay.isDisabled(), true, 'paying again waits too');
  await shot(page, 'retry-01-countdown');
  await alert.getByText('You can try again now.').waitFor({ timeout: 60_000 });
  assert.equal(await again.isEnabled(), true);
  assert.equal(await pay.isEnabled(), true);
  // The retry is a new submission (a new request_id): refused again, the same way.
  const reserves = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/ReserveRoaming')) reserves.push(r);
  });
  await again.click();
  await page.getByRole('alert').filter({ hasText: 'Payments are unavailable right now' }).getByText(/You can try again/).waitFor();
  assert.equal(reserves.length, 1);
  assertClean(page);
  await page.context().close();
});
