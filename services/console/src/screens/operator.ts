// Operators: register devices (into a booth's stock) and parking spaces.
import { parking, rentals, reservations } from '../api.js';
import { announce, h, replace } from '../dom.js';
import { Form, input, notice, select, setOptions } from '../forms.js';
import { deviceStatus, money } from '../format.js';
import type { Mount } from '../main.js';
import { boothList } from './roaming.js';

function table(caption: string, head: string[], body: HTMLTableSectionElement): HTMLTableElement {
  return h(
    'table',
    { class: 'table' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))),
    body,
  );
}

export function devicesScreen(m: Mount): void {
  const page = notice();
  const form = new Form('Register a device', m.signal);
  const serial = input({ autocomplete: 'off', spellcheck: 'false' });
  const model = select([], {});
  const booth = input({ list: 'op-booths', autocomplete: 'off', spellcheck: 'false' });
  const body = h('tbody');

  async function list(): Promise<void> {
    try {
      const res = await rentals.listDevices({}, { signal: m.signal });
      replace(
        body,
        ...res.devices.map((d) =>
          h('tr', {}, h('td', {}, d.serial), h('td', {}, d.deviceModel), h('td', {}, d.booth), h('td', {}, deviceStatus(d.status))),
        ),
      );
    } catch (e) {
      page.show(e);
    }
  }

  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    void form.run(async () => {
      const res = await rentals.registerDevice(
        { serial: serial.value.trim(), deviceModel: model.value, booth: booth.value.trim().toUpperCase() },
        { signal: m.signal },
      );
      form.done(h('p', { class: 'success' }, `Registered ${res.device?.serial} (${res.device?.deviceModel}) at ${res.device?.booth}.`));
      announce('Device registered.');
      serial.value = '';
      serial.focus();
      await list();
    });
  });
  form.el.append(
    boothList('op-booths'),
    h(
      'div',
      { class: 'row' },
      form.field('serial', 'Serial number', serial),
      form.field('device_model', 'Model', model),
      form.field('booth', 'Booth', booth, { hint: 'Airport booth code, e.g. ICN-T1.' }),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Register device')),
    form.alert,
    form.result,
  );
  replace(
    m.root,
    h('h1', {}, 'Devices'),
    page.el,
    h('section', { 'aria-labelledby': 'reg-dev' }, h('h2', { id: 'reg-dev' }, 'Register a device'), form.el),
    h('section', { 'aria-labelledby': 'all-dev' }, h('h2', { id: 'all-dev' }, 'Every device'), table('Devices at every booth', ['Serial', 'Model', 'Booth', 'Status'], body)),
  );
  void reservations
    .listDeviceOffers({}, { signal: m.signal })
    .then((res) => setOptions(model, res.offers.map((o): [string, string] => [o.deviceModel, o.deviceModel])))
    .catch(page.show);
  void list();
}

export function spacesScreen(m: Mount): void {
  const page = notice();
  const form = new Form('Register a parking space', m.signal);
  const spaceId = input({ autocomplete: 'off', spellcheck: 'false' });
  const lot = input({ autocomplete: 'off', spellcheck: 'false' });
  const floor = input({ autocomplete: 'off', spellcheck: 'false' });
  const number = input({ type: 'number', min: 1, step: 1, inputmode: 'numeric' });
  const rate = input({ type: 'number', min: 0, step: 100, inputmode: 'numeric' });
  const body = h('tbody');

  async function list(): Promise<void> {
    try {
      const res = await parking.listSpaces({}, { signal: m.signal });
      replace(
        body,
        ...res.spaces.map((s) =>
          h('tr', {}, h('td', {}, s.spaceId), h('td', {}, s.lot), h('td', {}, s.floor), h('td', {}, String(s.number)), h('td', {}, money(s.hourlyRate))),
        ),
      );
    } catch (e) {
      page.show(e);
    }
  }

  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    void form.run(async () => {
      const res = await parking.registerSpace(
        {
          spaceId: spaceId.value.trim(),
          lot: lot.value.trim(),
          floor: floor.value.trim(),
          number: Number(number.value) || 0,
          hourlyRate: { currencyCode: 'KRW', minorUnits: BigInt(Math.max(0, Math.round(Number(rate.value) || 0))) },
        },
        { signal: m.signal },
      );
      form.done(h('p', { class: 'success' }, `Registered space ${res.space?.spaceId} (${money(res.space?.hourlyRate)} an hour).`));
      announce('Space registered.');
      spaceId.value = '';
      spaceId.focus();
      await list();
    });
  });
  form.el.append(
    h(
      'div',
      { class: 'row' },
      form.field('space_id', 'Space id', spaceId, { hint: 'e.g. P1-B1-011.' }),
      form.field('lot', 'Lot', lot, { hint: 'e.g. P1.' }),
      form.field('floor', 'Floor', floor, { hint: 'e.g. B1.' }),
      form.field('number', 'Number', number),
      form.field('hourly_rate.minor_units', 'Hourly rate (KRW)', rate),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Register space')),
    form.alert,
    form.result,
  );
  replace(
    m.root,
    h('h1', {}, 'Parking spaces'),
    page.el,
    h('section', { 'aria-labelledby': 'reg-space' }, h('h2', { id: 'reg-space' }, 'Register a space'), form.el),
    h('section', { 'aria-labelledby': 'all-space' }, h('h2', { id: 'all-space' }, 'Every space'), table('Spaces of every lot', ['Space', 'Lot', 'Floor', 'Number', 'Hourly rate'], body)),
  );
  void list();
}
