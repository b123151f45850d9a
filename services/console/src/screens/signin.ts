import { h, replace } from '../dom.js';
import { Form, input } from '../forms.js';
import { signIn } from '../session.js';

export function signInScreen(m: {
  root: HTMLElement;
  signal: AbortSignal;
  reason: string | undefined;
  onSignedIn: () => void;
}): void {
  const form = new Form('Sign in', m.signal);
  const username = input({ autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true });
  const password = input({ type: 'password', autocomplete: 'current-password', required: true });
  form.el.append(
    form.alert,
    form.field('username', 'Username', username),
    form.field('password', 'Password', password),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  );
  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    void form.run(async () => {
      await signIn(username.value.trim(), password.value);
      password.value = '';
      m.onSignedIn();
    });
  });
  replace(
    m.root,
    h('h1', {}, 'Sign in'),
    m.reason ? h('p', { class: 'info', role: 'status' }, m.reason) : null,
    h('p', {}, 'Customers reserve and follow their reservations; booth staff, gates and operators do their part of the work.'),
    form.el,
  );
}
