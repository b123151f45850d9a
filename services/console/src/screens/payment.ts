// The card fields shared by both reserve screens (request paths `payment.*`).
import { h } from '../dom.js';
import { Code } from '@connectrpc/connect';
import { newRequestId } from '../api.js';
import type { Problem } from '../errors.js';
import { Form, input, select } from '../forms.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { PaymentCardSchema } from '../gen/roaming/common/v1/common_pb.js';

export const COMPANIES = ['VISA', 'MASTERCARD', 'AMEX', 'JCB', 'UNIONPAY'];

export function cardFields(form: Form): { el: HTMLElement; read: () => MessageInitShape<typeof PaymentCardSchema>; reset: () => void } {
  const number = input({ autocomplete: 'cc-number', inputmode: 'numeric', spellcheck: 'false' });
  const month = select(
    [['', 'Month'], ...Array.from({ length: 12 }, (_, i): [string, string] => [String(i + 1), String(i + 1).padStart(2, '0')])],
    { autocomplete: 'cc-exp-month' },
  );
  const thisYear = new Date().getFullYear();
  const year = select(
    [['', 'Year'], ...Array.from({ length: 12 }, (_, i): [string, string] => [String(thisYear + i), String(thisYear + i)])],
    { autocomplete: 'cc-exp-year' },
  );
  const holder = input({ autocomplete: 'cc-name' });
  const company = select(COMPANIES.map((c): [string, string] => [c, c]));
  const el = h(
    'fieldset',
    { class: 'card' },
    h('legend', {}, 'Card'),
    form.field('payment.card_number', 'Card number', number, { hint: 'Digits only; spaces are fine.' }),
    h(
      'div',
      { class: 'row' },
      form.field('payment.expiry_month', 'Expiry month', month),
      form.field('payment.expiry_year', 'Expiry year', year),
    ),
    form.field('payment.holder_name', 'Name on card', holder),
    form.field('payment.company', 'Card company', company),
  );
  return {
    el,
    read: () => ({
      cardNumber: number.value,
      expiryMonth: Number(month.value) || 0,
      expiryYear: Number(year.value) || 0,
      holderName: holder.value,
      company: company.value,
    }),
    reset: () => {
      number.value = '';
      month.value = '';
      year.value = '';
      holder.value = '';
    },
  };
}

/**
 * The idempotency key of one reserve submission. It is kept while the outcome
 * of a call with it is unknown (no answer, a lost connection, IN_PROGRESS, the
 * gateway's OUTCOME_UNKNOWN), so submitting again cannot reserve and charge
 * twice: the server answers with the reservation that key already made. Any
 * definite answer ends it.
 */
export class Submission {
  private key: string | undefined;

  id(): string {
    this.key ??= newRequestId();
    return this.key;
  }

  /** After a success, or when the request itself changed. */
  reset(): void {
    this.key = undefined;
  }

  failed(p: Problem): void {
    const unknown =
      p.reason === 'IN_PROGRESS' ||
      p.reason === 'OUTCOME_UNKNOWN' ||
      (!p.reason && [Code.Unknown, Code.Unavailable, Code.DeadlineExceeded, Code.Internal].includes(p.code));
    if (!unknown) this.reset();
  }
}
