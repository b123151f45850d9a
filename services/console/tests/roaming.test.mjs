// The roaming story in two browser contexts: a customer reserves and watches
// the status change live while the booth hands the device over, takes it
// back and retrieves it; the customer's page ends at Completed. Staff of
// another booth is refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertClean, itemWith, launch, myCard, nav, newPage, reserveDevice, shot, signIn, startMesh, waitText,
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

test('a customer follows hand-over, return and retrieval live, to Completed', async () => {
  const customer = await newPage(browser);
  const staff = await newPage(browser);
  await signIn(customer, mesh.url, 'alice');
  const id = await reserveDevice(customer);
  await shot(customer, 'roaming-01-reserved');

  await nav(customer, 'My reservations');
  const card = myCard(customer, id);
  await waitText(card.getByRole('status'), /Status: (Reserved|Ready for pickup)/);
  await card.getByText('Live', { exact: true }).waitFor({ timeout: 30_000 });
  // From here on the page is not reloaded: every change arrives on the stream.
  let lists = 0;
  customer.on('request', (r) => {
    if (r.url().includes('/roaming.view.v1.ViewService/ListMyReservations')) lists += 1;
  });
  await waitText(card.getByRole('status'), /Status: Ready for pickup/);
  await shot(customer, 'roaming-02-ready');

  await signIn(staff, mesh.url, 'staff-icn-t1');
  await staff.getByRole('heading', { name: 'Booth ICN-T1', level: 1 }).waitFor();
  const pickups = staff.getByRole('region', { name: 'Pickups' });
  const pickup = itemWith(pickups, id);
  await pickup.getByRole('button', { name: /^Hand over/ }).waitFor({ timeout: 30_000 });
  const serial = await pickup.getByLabel('Device to hand over').inputValue();
  assert.match(serial, /^ICN-T1-EGG-LTE-/i);
  await shot(staff, 'roaming-03-booth-before-hand-over');
  await pickup.getByRole('button', { name: /^Hand over/ }).click();
  await waitText(pickup, /Status: In use/);

  await waitText(card.getByRole('status'), /Status: In use/);
  await card.getByText(serial, { exact: true }).waitFor();
  await shot(customer, 'roaming-04-in-use');

  const returns = staff.getByRole('region', { name: 'Returns due' });
  const back = itemWith(returns, id);
  await back.getByRole('button', { name: /^Take return/ }).click();
  await waitText(back, /Status: Returned/);
  await waitText(card.getByRole('status'), /Status: Returned/);

  await back.getByRole('button', { name: /^Retrieve/ }).click();
  await waitText(back, /Status: Completed/);
  const stock = staff.getByRole('table', { name: 'Devices at booth ICN-T1' });
  await stock.getByRole('row').filter({ hasText: serial }).filter({ hasText: 'In stock' }).waitFor();
  await shot(staff, 'roaming-05-booth-after-retrieve');

  await waitText(card.getByRole('status'), /Status: Completed/);
  await card.getByText(/^Final:/).waitFor();
  await shot(customer, 'roaming-06-completed');
  assert.equal(lists, 0, 'the customer page followed the changes without listing again');
  assertClean(customer);
  assertClean(staff);
  await customer.context().close();
  await staff.context().close();
});

test('staff of another booth is refused', async () => {
  const customer = await newPage(browser);
  await signIn(customer, mesh.url, 'bob');
  const id = await reserveDevice(customer, { model: 'phone-5g', country: 'US' });
  const staff = await newPage(browser);
  await signIn(staff, mesh.url, 'staff-gmp');
  await staff.getByRole('heading', { name: 'Booth GMP', level: 1 }).waitFor();
  await staff.getByLabel('Reservation number').fill(id);
  await staff.getByLabel('Device serial (for a hand-over)').fill('GMP-PHONE-5G-1');
  await staff.getByRole('button', { name: 'Hand over by number' }).click();
  const refusal = staff.getByRole('alert').filter({ hasText: 'handled by another booth' });
  await refusal.waitFor();
  await shot(staff, 'roaming-07-other-booth-refused');
  assertClean(staff);
  await customer.context().close();
  await staff.context().close();
});
