// Cancel before use with the refund shown; a declined card in plain words; a
// field violation shown at the field it names.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertClean, fillCard, launch, myCard, nav, newPage, quoteDevice, reserveDevice, shot, signIn, startMesh,
  todayUtc, waitText,
} from './harness.mjs';

let mesh;
let browser;

before(async () => {
  mesh = await startMesh();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await mesh?.stop();
});

/** The message a control's aria-describedby points at (its hint and error). */
async function description(locator) {
  return locator.evaluate((el) =>
    (el.getAttribute('aria-describedby') ?? '')
      .split(' ')
      .filter(Boolean)
      .map((id) => document.getElementById(id)?.textContent ?? '')
      .join(' '),
  );
}

test('cancel before use: the refund is shown', async () => {
  const page = await newPage(browser);
  await signIn(page, mesh.url, 'alice');
  const id = await reserveDevice(page, { pickup: 'ICN-T2', ret: 'GMP', start: todayUtc(1), end: todayUtc(2) });
  await nav(page, 'My reservations');
  const card = myCard(page, id);
  await waitText(card.getByRole('status'), /Status: (Reserved|Ready for pickup)/);
  await card.getByRole('button', { name: 'Cancel reservation' }).click();
  await card.getByText('KRW 10,000 will be refunded to your card').waitFor();
  await shot(page, 'cancel-01-confirm');
  await card.getByRole('button', { name: 'Yes, cancel it' }).click();
  await card.getByText(/Canceled\. Refund: KRW\s10,000 back to your card\./).waitFor();
  await waitText(card.getByRole('status'), /Status: Canceled/);
  // The payment service's refund reaches the page on the stream.
  await card.getByText(/^Refunded KRW\s10,000$/).waitFor({ timeout: 30_000 });
  assert.equal(await card.getByRole('button', { name: 'Cancel reservation' }).count(), 0);
  await shot(page, 'cancel-02-refunded');
  assertClean(page);
  await page.context().close();
});

test("a declined card's message", async () => {
  const page = await newPage(browser);
  await signIn(page, mesh.url, 'bob');
  await quoteDevice(page, { start: todayUtc(3), end: todayUtc(3) });
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).waitFor();
  await fillCard(page, '4000000000000002');
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).click();
  await page.getByRole('alert').filter({ hasText: /Your card was declined.*Nothing was reserved/ }).waitFor();
  await shot(page, 'cancel-03-declined');

  await fillCard(page, '4000000000009995');
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).click();
  await page.getByRole('alert').filter({ hasText: 'insufficient funds' }).waitFor();
  assertClean(page);
  await page.context().close();
});

test('a field violation is shown at its field', async () => {
  const page = await newPage(browser);
  await signIn(page, mesh.url, 'alice');
  // The server's BadRequest for the quote: a first day in the past.
  await quoteDevice(page, { start: todayUtc(-1), end: todayUtc(1) });
  const first = page.getByLabel('First day');
  await page.getByRole('alert').filter({ hasText: 'Some fields need a correction: see the message at each of them.' }).waitFor();
  assert.equal(await first.getAttribute('aria-invalid'), 'true');
  assert.match(await description(first), /^First day: /);
  assert.equal(await first.evaluate((el) => el === document.activeElement), true, 'focus moves to the field');
  await shot(page, 'cancel-04-violation-date');

  // The reserve call's BadRequest names payment.card_number: shown at "Card number".
  await first.fill(todayUtc(1));
  await page.getByRole('button', { name: 'Get the price' }).click();
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).waitFor();
  await fillCard(page, '4111111111111112');
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).click();
  const number = page.getByLabel('Card number');
  await page.getByText(/^Card number: .*checksum/).waitFor();
  assert.equal(await number.getAttribute('aria-invalid'), 'true');
  assert.match(await description(number), /Card number: .*checksum/);
  assert.equal(await first.getAttribute('aria-invalid'), null, 'the fixed field is clear again');
  await shot(page, 'cancel-05-violation-card');
  assertClean(page);
  await page.context().close();
});

test('a lost answer: paying again does not reserve twice', async () => {
  const page = await newPage(browser);
  await signIn(page, mesh.url, 'bob');
  await quoteDevice(page, { model: 'phone-5g', country: 'GB', pickup: 'GMP', ret: 'GMP', start: todayUtc(4), end: todayUtc(4) });
  const pay = page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ });
  await pay.waitFor();
  await fillCard(page);
  const keys = [];
  let first = true;
  await page.route('**/roaming.reservation.v1.ReservationService/ReserveRoaming', async (route) => {
    keys.push(route.request().postDataBuffer()?.toString('latin1').match(UUID_IN_BODY)?.[0]);
    if (first) {
      // The server takes the reservation, but its answer never reaches the page.
      first = false;
      await route.fetch();
      await route.abort('connectionreset');
    } else {
      await route.continue();
    }
  });
  await pay.click();
  await page.getByRole('alert').filter({ hasText: 'cannot reach the server' }).waitFor();
  await shot(page, 'cancel-06-lost-answer');
  await pay.click();
  await page.getByRole('status').filter({ hasText: 'Reserved and paid' }).waitFor();
  assert.equal(keys.length, 2);
  assert.ok(keys[0], 'the request carries a request_id');
  assert.equal(keys[1], keys[0], 'the second submission repeats the first one\'s request_id');
  await nav(page, 'My reservations');
  const mine = page.getByRole('list', { name: 'Reservations' }).getByRole('listitem').filter({ hasText: 'phone-5g' });
  await mine.first().waitFor();
  assert.equal(await mine.count(), 1, 'one reservation, charged once');
  assertClean(page);
  await page.context().close();
});

const UUID_IN_BODY = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
