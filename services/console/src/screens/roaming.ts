// Customer: quote, then reserve (and pay for) a roaming device.
import { reservations } from '../api.js';
import { announce, h, replace } from '../dom.js';
import { Form, input, notice, select, setOptions } from '../forms.js';
import { addDays, country, isoDate, money, status } from '../format.js';
import type { DeviceOffer, QuoteRoamingResponse } from '../gen/roaming/reservation/v1/reservation_pb.js';
import type { Mount } from '../main.js';
import { cardFields, Submission } from './payment.js';

/** Booths are not listed by the API: suggestions only, the server checks. */
export const KNOWN_BOOTHS = ['ICN-T1', 'ICN-T2', 'GMP'];

export function boothList(id: string): HTMLDataListElement {
  return h('datalist', { id }, ...KNOWN_BOOTHS.map((b) => h('option', { value: b })));
}

export function roamingScreen(m: Mount): void {
  const page = notice();
  const form = new Form('Reserve a roaming device', m.signal);
  let offers: DeviceOffer[] = [];

  const model = select([], {});
  const countrySel = select([], {});
  const pickup = input({ list: 'booths', autocomplete: 'off', spellcheck: 'false' });
  const ret = input({ list: 'booths', autocomplete: 'off', spellcheck: 'false' });
  const today = isoDate(new Date());
  const start = input({ type: 'date', value: today, min: today });
  const end = input({ type: 'date', value: addDays(today, 2), min: today });
  const card = cardFields(form);
  const quoteOut = h('div', { class: 'quote', role: 'status' });
  const payStep = h('div', { class: 'pay-step', hidden: true });
  const payButton = h('button', { type: 'submit', class: 'primary' }, 'Pay and reserve');
  const quoteButton = h('button', { type: 'button', class: 'secondary' }, 'Get the price');
  let quoted: QuoteRoamingResponse | undefined;

  const fillCountries = () => {
    const offer = offers.find((o) => o.deviceModel === model.value);
    setOptions(countrySel, (offer?.countries ?? []).map((c): [string, string] => [c, country(c)]));
  };
  const trip = () => ({
    deviceModel: model.value,
    country: countrySel.value,
    pickupBooth: pickup.value.trim().toUpperCase(),
    returnBooth: ret.value.trim().toUpperCase(),
    startDate: start.value,
    endDate: end.value,
  });
  // Any change to the trip voids the price: a new quote is needed before paying.
  const submission = new Submission();
  const invalidate = () => {
    submission.reset();
    if (!quoted) return;
    quoted = undefined;
    payStep.hidden = true;
    replace(quoteOut, h('p', {}, 'The trip changed: get the price again.'));
  };
  for (const c of [model, countrySel, pickup, ret, start, end]) {
    c.addEventListener('input', invalidate);
    c.addEventListener('change', invalidate);
  }
  model.addEventListener('change', fillCountries);

  const getQuote = () =>
    form.run(async () => {
      const q = await reservations.quoteRoaming(trip(), { signal: m.signal });
      quoted = q;
      replace(
        quoteOut,
        h('h2', {}, 'Price'),
        h(
          'p',
          { class: 'price' },
          `${money(q.price)} `,
          h('span', { class: 'muted' }, `(${q.days} ${q.days === 1 ? 'day' : 'days'} × ${money(q.dailyRate)} a day)`),
        ),
        h('p', {}, 'This is the price you pay now; it is computed by the server.'),
      );
      payButton.textContent = `Pay ${money(q.price)} and reserve`;
      payStep.hidden = false;
    });
  quoteButton.addEventListener('click', () => void getQuote());

  // One idempotency key per submission, kept while its outcome is unknown
  // (see Submission).
  const reserve = () => {
    const requestId = submission.id();
    return form.run(
      async () => {
        const res = await reservations.reserveRoaming(
          { requestId, ...trip(), payment: card.read() },
          { signal: m.signal },
        );
        const r = res.reservation;
        submission.reset();
        card.reset();
        payStep.hidden = true;
        quoted = undefined;
        replace(quoteOut);
        form.done(
          h('p', { class: 'success' }, `Reserved and paid: ${money(r?.price)}. Status: ${status(r?.status ?? 0)}.`),
          h('p', {}, 'Reservation number ', h('code', {}, r?.reservationId ?? '')),
          h('p', {}, h('a', { href: '#/my' }, 'Follow it on My reservations')),
        );
        announce('Reservation made.');
      },
      { again: () => void reserve(), failed: (p) => submission.failed(p) },
    );
  };
  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!quoted) {
      void getQuote();
      return;
    }
    void reserve();
  });

  payStep.append(card.el, h('div', { class: 'actions' }, payButton));
  form.el.append(
    boothList('booths'),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Trip'),
      form.field('device_model', 'Device model', model),
      form.field('country', 'Country', countrySel),
      h(
        'div',
        { class: 'row' },
        form.field('pickup_booth', 'Pickup booth', pickup, { hint: 'Airport booth code, e.g. ICN-T1.' }),
        form.field('return_booth', 'Return booth', ret, { hint: 'Where you bring it back.' }),
      ),
      h('div', { class: 'row' }, form.field('start_date', 'First day', start), form.field('end_date', 'Last day', end)),
    ),
    h('div', { class: 'actions' }, quoteButton),
    quoteOut,
    payStep,
    form.alert,
    form.result,
  );
  replace(
    m.root,
    h('h1', {}, 'Reserve a roaming device'),
    h('p', {}, 'Pick it up at an airport booth on the first day; bring it back by the last day.'),
    page.el,
    form.el,
  );

  void reservations
    .listDeviceOffers({}, { signal: m.signal })
    .then((res) => {
      offers = res.offers;
      setOptions(
        model,
        offers.map((o): [string, string] => [o.deviceModel, `${o.deviceModel} (${money(o.dailyRate)} a day)`]),
      );
      fillCountries();
    })
    .catch(page.show);
}
