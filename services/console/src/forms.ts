// Forms: labelled fields, the server's field violations shown at the field
// they name, one message area per form, busy state, and RetryInfo's countdown.
import { h, uid, type Child } from './dom.js';
import { describe, isAborted, type Problem } from './errors.js';

type Control = HTMLInputElement | HTMLSelectElement;

interface Field {
  control: Control;
  label: string;
  error: HTMLElement;
  hintId: string | undefined;
}

export interface FieldOptions {
  hint?: string;
  /** The wrapper's extra class (e.g. `field-narrow`). */
  wide?: boolean;
}

/**
 * One form. `field('payment.card_number', 'Card number', input)` labels the
 * control and makes it the place where the server's violation of
 * `payment.card_number` is shown.
 */
export class Form {
  readonly el: HTMLFormElement;
  /** Errors (role=alert) and results (role=status). */
  readonly alert: HTMLElement;
  readonly result: HTMLElement;
  private readonly fields = new Map<string, Field>();
  private countdown: number | undefined;
  /** Submit buttons held disabled until RetryInfo's wait is over. */
  private held: HTMLButtonElement[] = [];

  constructor(name: string, signal: AbortSignal) {
    this.el = h('form', { class: 'form', 'aria-label': name, novalidate: true });
    this.alert = h('div', { class: 'alert', role: 'alert', hidden: true });
    this.result = h('div', { class: 'result', role: 'status' });
    signal.addEventListener('abort', () => window.clearInterval(this.countdown));
  }

  /** Labels `control` and registers it under the request field `path`. */
  field(path: string, label: string, control: Control, opts: FieldOptions = {}): HTMLElement {
    const id = control.id || uid('f');
    control.id = id;
    control.name ||= path;
    const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    const hintId = opts.hint ? `${id}-hint` : undefined;
    this.fields.set(path, { control, label, error, hintId });
    this.describe(path);
    return h(
      'div',
      { class: opts.wide ? 'field field-wide' : 'field' },
      h('label', { for: id }, label),
      opts.hint ? h('p', { class: 'hint', id: hintId }, opts.hint) : null,
      control,
      error,
    );
  }

  control(path: string): Control | undefined {
    return this.fields.get(path)?.control;
  }

  private describe(path: string): void {
    const f = this.fields.get(path);
    if (!f) return;
    const ids = [f.hintId, f.error.hidden ? undefined : f.error.id].filter(Boolean).join(' ');
    if (ids) f.control.setAttribute('aria-describedby', ids);
    else f.control.removeAttribute('aria-describedby');
  }

  clear(): void {
    window.clearInterval(this.countdown);
    this.release();
    this.alert.hidden = true;
    this.alert.replaceChildren();
    this.result.replaceChildren();
    for (const [path, f] of this.fields) {
      f.error.hidden = true;
      f.error.textContent = '';
      f.control.removeAttribute('aria-invalid');
      this.describe(path);
    }
  }

  /** Shows a success (or any neutral result) in the status area. */
  done(...children: Child[]): void {
    this.result.replaceChildren();
    for (const c of children) if (c) this.result.append(typeof c === 'number' ? String(c) : c);
    // The control that had focus may be gone or hidden now: keyboard users
    // continue from the result.
    const active = document.activeElement as HTMLElement | null;
    if (!active || active === document.body || !active.isConnected || active.offsetParent === null) {
      this.result.tabIndex = -1;
      this.result.focus();
    }
  }

  /**
   * Shows a refusal: its sentence, every field violation at its field (and
   * the ones with no field here in the message), and, with RetryInfo, a
   * "Try again" button that counts down and is enabled when the wait is over.
   */
  problem(p: Problem, retry?: () => void): void {
    this.alert.replaceChildren();
    const stray: string[] = [];
    let first: Control | undefined;
    for (const [path, description] of p.fields) {
      const f = this.fields.get(path);
      if (!f) {
        stray.push(`${path} ${description}`);
        continue;
      }
      f.error.textContent = `${f.label}: ${description}`;
      f.error.hidden = false;
      f.control.setAttribute('aria-invalid', 'true');
      this.describe(path);
      first ??= f.control;
    }
    const message = p.fields.size > 0 && stray.length === 0 ? 'Some fields need a correction: see the message at each of them.' : p.message;
    this.alert.append(h('p', { class: 'alert-message' }, message));
    for (const s of stray) this.alert.append(h('p', {}, s));
    if (p.detail && p.fields.size === 0 && p.detail !== message) {
      this.alert.append(h('p', { class: 'detail' }, `Details: ${p.detail}`));
    }
    if (p.retryAfterMs !== undefined && retry) {
      this.retryButton(p.retryAfterMs, retry);
    }
    this.alert.hidden = false;
    if (first) first.focus();
  }

  private release(): void {
    for (const b of this.held) b.disabled = false;
    this.held = [];
  }

  private retryButton(afterMs: number, retry: () => void): void {
    const until = Date.now() + afterMs;
    // Submitting again is a retry too: it waits as well.
    this.held = [...this.el.querySelectorAll<HTMLButtonElement>('button[type=submit]')];
    const button = h('button', { type: 'button', class: 'secondary' }, 'Try again');
    const wait = h('p', { class: 'countdown' });
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) {
        button.disabled = true;
        for (const b of this.held) b.disabled = true;
        wait.textContent = `You can try again in ${left} s.`;
      } else {
        window.clearInterval(this.countdown);
        this.release();
        button.disabled = false;
        wait.textContent = 'You can try again now.';
      }
    };
    button.addEventListener('click', () => {
      this.clear();
      retry();
    });
    tick();
    window.clearInterval(this.countdown);
    this.countdown = window.setInterval(tick, 250);
    this.alert.append(wait, button);
  }

  /**
   * Runs `work` with the form's buttons disabled, showing its refusal if it
   * fails. `again` (default: `work` itself) is what "Try again" runs.
   */
  async run(
    work: () => Promise<void>,
    opts: { overrides?: Record<string, string>; again?: () => void; failed?: (p: Problem) => void } = {},
  ): Promise<void> {
    this.clear();
    const buttons = [...this.el.querySelectorAll('button')];
    for (const b of buttons) b.disabled = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      await work();
    } catch (e) {
      if (isAborted(e)) return;
      const p = describe(e, opts.overrides);
      opts.failed?.(p);
      this.problem(p, opts.again ?? (() => void this.run(work, opts)));
    } finally {
      for (const b of buttons) if (!this.held.includes(b)) b.disabled = false;
      this.el.removeAttribute('aria-busy');
    }
  }
}

/** `<input>` with the given attributes. */
export function input(attrs: Record<string, string | number | boolean | undefined> = {}): HTMLInputElement {
  return h('input', { type: 'text', ...attrs });
}

/** `<select>` of `[value, text]` pairs. */
export function select(options: [string, string][], attrs: Record<string, string | boolean | undefined> = {}): HTMLSelectElement {
  const el = h('select', attrs);
  setOptions(el, options);
  return el;
}

export function setOptions(el: HTMLSelectElement, options: [string, string][]): void {
  const keep = el.value;
  el.replaceChildren(...options.map(([value, text]) => h('option', { value }, text)));
  if (options.some(([v]) => v === keep)) el.value = keep;
}

/** A page-level message area for screens that load data outside forms. */
export function notice(): { el: HTMLElement; show: (e: unknown) => void; clear: () => void } {
  const el = h('div', { class: 'alert', role: 'alert', hidden: true });
  return {
    el,
    show(e: unknown) {
      if (isAborted(e)) return;
      const p = describe(e);
      el.replaceChildren(h('p', { class: 'alert-message' }, p.message));
      if (p.detail && p.detail !== p.message) el.append(h('p', { class: 'detail' }, `Details: ${p.detail}`));
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.replaceChildren();
    },
  };
}
