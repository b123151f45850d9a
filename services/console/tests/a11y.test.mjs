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
  await page.getByRole('alert').filter({ hasText: 'Some fields need a correction' }).waitFor();
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

/** Presses Tab until the focused control's label (or text) matches `name`. */
async function tabTo(page, name, { back = false } = {}) {
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const label = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el) return '';
      const byLabel = el.labels?.[0]?.textContent;
      return (byLabel ?? el.getAttribute('aria-label') ?? el.textContent ?? '').trim();
    });
    if (typeof name === 'string' ? label === name : name.test(label)) return;
  }
  throw new Error(`Tab never reached ${name}`);
}

test('keyboard only: sign in, reserve a device, see it on my page', async () => {
  const page = await newPage(browser);
  await page.goto(mesh.url);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await tabTo(page, 'Username');
  await page.keyboard.type('bob');
  await tabTo(page, 'Password');
  await page.keyboard.type('demo');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'My reservations', level: 1 }).waitFor();

  await tabTo(page, 'Reserve a device', { back: true });
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Reserve a roaming device', level: 1 }).waitFor();
  await page.getByLabel('Device model').locator('option').first().waitFor({ state: 'attached' });
  await tabTo(page, 'Pickup booth');
  await page.keyboard.type('ICN-T1');
  await tabTo(page, 'Return booth');
  await page.keyboard.type('GMP');
  await tabTo(page, 'Get the price');
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ }).waitFor();
  await tabTo(page, 'Card number');
  await page.keyboard.type('4111 1111 1111 1111');
  await tabTo(page, 'Expiry month');
  await page.keyboard.type('12');
  await tabTo(page, 'Expiry year');
  await page.keyboard.type(String(new Date().getUTCFullYear() + 3));
  await tabTo(page, 'Name on card');
  await page.keyboard.type('Bob Lee');
  await tabTo(page, /^Pay KRW.+ and reserve$/);
  await page.keyboard.press('Enter');
  const done = page.getByRole('status').filter({ hasText: 'Reserved and paid' });
  await done.waitFor();
  // Focus went to the result, so the next Tab reaches its link.
  await tabTo(page, 'Follow it on My reservations');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'My reservations', level: 1 }).waitFor();
  await page.getByRole('list', { name: 'Reservations' }).getByRole('listitem').filter({ hasText: 'return at GMP' }).waitFor();
  await shot(page, 'keyboard-reserved');
  await page.context().close();
});
