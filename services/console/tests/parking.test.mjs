// Parking: a customer reserves a space; the gate lets the right plate in and
// refuses another; the grid shows the space occupied; the car leaves.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertClean, fillCard, launch, minuteUtc, myCard, nav, newPage, shot, signIn, startMesh, UUID, waitText,
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

const PLATE = '12GA3456';
const SPACE = 'P1-B1-003';

test('reserve, the gate admits the right plate and refuses another, exit', async () => {
  const customer = await newPage(browser);
  await signIn(customer, mesh.url, 'alice');
  await nav(customer, 'Reserve parking');
  await customer.getByLabel('Space', { exact: true }).selectOption(SPACE);
  await customer.getByLabel('From').fill(minuteUtc(0));
  await customer.getByLabel('Until').fill(minuteUtc(120));
  await customer.getByRole('button', { name: 'Get the price' }).click();
  const pay = customer.getByRole('button', { name: /^Pay KRW.+ and reserve$/ });
  await pay.waitFor();
  await customer.getByText(/KRW\s6,000/).first().waitFor();
  await customer.getByLabel('Vehicle plate').fill(PLATE);
  await fillCard(customer);
  await shot(customer, 'parking-01-quote');
  await pay.click();
  const done = customer.getByRole('status').filter({ hasText: 'Reserved and paid' });
  await done.waitFor();
  const id = (await done.getByText(UUID).textContent())?.trim() ?? '';
  await nav(customer, 'My reservations');
  const card = myCard(customer, id);
  await waitText(card.getByRole('status'), /Status: Reserved/);

  const gate = await newPage(browser);
  await signIn(gate, mesh.url, 'gate-p1');
  await gate.getByRole('heading', { name: 'Gate, lot P1', level: 1 }).waitFor();
  const grid = gate.getByRole('list', { name: 'Spaces of lot P1' });
  const cell = grid.getByRole('listitem').filter({ hasText: SPACE });
  // The view learns of the reservation from events: look again until it shows.
  for (let i = 0; ; i += 1) {
    await gate.getByRole('button', { name: 'Now' }).click();
    await gate.getByRole('status').filter({ hasText: /free, \d+ reserved/ }).waitFor();
    if ((await cell.textContent())?.includes('Reserved')) break;
    assert.ok(i < 30, `${SPACE} never showed as reserved: ${await cell.textContent()}`);
    await gate.waitForTimeout(1_000);
  }

  // Another plate in the reserved space: refused.
  await gate.getByLabel('Space', { exact: true }).selectOption(SPACE);
  await gate.getByLabel('Plate', { exact: true }).fill('99HO9999');
  await gate.getByRole('button', { name: 'Let in' }).click();
  await gate.getByRole('alert').filter({ hasText: 'Keep the gate closed' }).waitFor();
  await shot(gate, 'parking-02-refused');

  // The reserved plate: admitted.
  await gate.getByLabel('Plate', { exact: true }).fill(PLATE);
  await gate.getByRole('button', { name: 'Let in' }).click();
  await gate.getByRole('status').filter({ hasText: `Open the gate: ${PLATE} may park in ${SPACE}` }).waitFor();
  await waitText(cell, /Occupied/);
  await shot(gate, 'parking-03-admitted');
  await waitText(card.getByRole('status'), /Status: In use/);

  // Once the car is in, another plate is still refused.
  await gate.getByLabel('Plate', { exact: true }).fill('99HO9999');
  await gate.getByRole('button', { name: 'Let in' }).click();
  await gate.getByRole('alert').filter({ hasText: 'Keep the gate closed' }).waitFor();

  await gate.getByLabel('Plate', { exact: true }).fill(PLATE);
  await gate.getByRole('button', { name: 'Let out' }).click();
  await gate.getByRole('status').filter({ hasText: `Open the gate: ${PLATE} leaves ${SPACE}` }).waitFor();
  await waitText(cell, /Free/);
  await shot(gate, 'parking-04-left');
  await waitText(card.getByRole('status'), /Status: Completed/);
  await shot(customer, 'parking-05-completed');
  assert.ok(id);
  assertClean(customer);
  assertClean(gate);
  await customer.context().close();
  await gate.context().close();
});
