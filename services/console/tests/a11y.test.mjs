// An accessibility scan (axe-core from node_modules, injected: no network) of
// every screen, in the states that show the most controls, with no serious or
// critical violation. Each screen is also saved as a screenshot.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  axe, fillCard, launch, myCard, nav, newPage, quoteDevice, reserveDevice, shot, signIn, startMesh, todayUtc, waitText,
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

async function scan(page, name) {
  await shot(page, `a11y-${name}`);
  const violations = await axe(page);
  assert.deepEqual(violations, [], `${name}: ${JSON.stringify(violations, null, 2)}`);
}

test('sign in', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await page.goto(mesh.url);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await scan(page, 'sign-in');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();
  await scan(page, 'sign-in-refused');
  await page.context().close();
});

test('customer screens', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await signIn(page, mesh.url, 'alice');
  const id = await reserveDevice(page);
  await scan(page, 'reserve-device-done');

  await quoteDevice(page, { start: todayUtc(-1) });
  await page.getByRole('alert').filter({ hasText: 'Please correct' }).waitFor();
  await scan(page, 'reserve-device-violation');
  await page.getByLabel('First day').fill(todayUtc(1));
  await page.getByLabel('Last day').fill(todayUtc(2));
  await page.getByRole('button', { name: 'Get the price' }).click();
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).waitFor();
  await fillCard(page);
  await scan(page, 'reserve-device-quoted');

  await nav(page, 'Reserve parking');
  await page.getByLabel('Space', { exact: true }).selectOption('P1-B1-005');
  await page.getByRole('button', { name: 'Get the price' }).click();
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).waitFor();
  await scan(page, 'reserve-parking-quoted');

  await nav(page, 'My reservations');
  const card = myCard(page, id);
  await waitText(card.getByRole('status'), /Status: Ready for pickup/);
  await card.getByRole('button', { name: 'Cancel reservation' }).click();
  await card.getByRole('button', { name: 'Yes, cancel it' }).waitFor();
  await scan(page, 'my-reservations');
  await page.context().close();
});

test('booth staff screen', async () => {
  const customer = await newPage(browser);
  await signIn(customer, mesh.url, 'bob');
  const id = await reserveDevice(customer);
  await customer.context().close();
  const page = await newPage(browser, { bypassCSP: true });
  await signIn(page, mesh.url, 'staff-icn-t1');
  await page
    .getByRole('region', { name: 'Pickups' })
    .getByRole('listitem')
    .filter({ hasText: id })
    .getByRole('button', { name: /^Hand over/ })
    .waitFor({ timeout: 30_000 });
  await scan(page, 'booth');
  await page.context().close();
});

test('gate screen', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await signIn(page, mesh.url, 'gate-p1');
  await page.getByRole('list', { name: 'Spaces of lot P1' }).getByRole('listitem').first().waitFor();
  await page.getByLabel('Plate', { exact: true }).fill('00XX0000');
  await page.getByRole('button', { name: 'Let in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Keep the gate closed' }).waitFor();
  await scan(page, 'gate');
  await page.context().close();
});

test('operator screens', async () => {
  const page = await newPage(browser, { bypassCSP: true });
  await signIn(page, mesh.url, 'ops');
  await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
  await page.getByLabel('Serial number').fill('ICN-T2-EGG-LTE-9');
  await page.getByLabel('Model').selectOption('egg-lte');
  await page.getByLabel('Booth').fill('ICN-T2');
  await page.getByRole('button', { name: 'Register device' }).click();
  await page.getByRole('status').filter({ hasText: 'Registered ICN-T2-EGG-LTE-9' }).waitFor();
  await page.getByRole('table', { name: 'Devices at every booth' }).getByRole('row').filter({ hasText: 'ICN-T2-EGG-LTE-9' }).waitFor();
  await scan(page, 'devices');

  await nav(page, 'Parking spaces');
  await page.getByLabel('Space id').fill('P1-B1-011');
  await page.getByLabel('Lot').fill('P1');
  await page.getByLabel('Floor').fill('B1');
  await page.getByLabel('Number').fill('11');
  await page.getByLabel('Hourly rate (KRW)').fill('3000');
  await page.getByRole('button', { name: 'Register space' }).click();
  await page.getByRole('status').filter({ hasText: 'Registered space P1-B1-011' }).waitFor();
  await scan(page, 'spaces');
  await page.context().close();
});
