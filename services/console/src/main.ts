// The console: one page, screens chosen by the roles in the token, routes in
// the URL's fragment (`#/my`) so the gateway only ever serves `/`.
import './style.css';
import { h, replace } from './dom.js';
import { claims, onSignedOut, signOut, type Claims } from './session.js';
import { signInScreen } from './screens/signin.js';
import { roamingScreen } from './screens/roaming.js';
import { parkingScreen } from './screens/parking.js';
import { myScreen } from './screens/my.js';
import { boothScreen } from './screens/booth.js';
import { gateScreen } from './screens/gate.js';
import { devicesScreen, spacesScreen } from './screens/operator.js';

/** What a screen gets: where to draw, and a signal aborted when it is left. */
export interface Mount {
  root: HTMLElement;
  signal: AbortSignal;
  claims: Claims;
  go: (path: string) => void;
}

interface Screen {
  path: string;
  /** The link's text and the page title. */
  title: string;
  roles: string[];
  mount: (m: Mount) => void | Promise<void>;
}

const SCREENS: Screen[] = [
  { path: '#/my', title: 'My reservations', roles: ['customer'], mount: myScreen },
  { path: '#/roaming', title: 'Reserve a device', roles: ['customer'], mount: roamingScreen },
  { path: '#/parking', title: 'Reserve parking', roles: ['customer'], mount: parkingScreen },
  { path: '#/booth', title: 'Booth', roles: ['booth_staff'], mount: boothScreen },
  { path: '#/gate', title: 'Gate', roles: ['gate'], mount: gateScreen },
  { path: '#/devices', title: 'Devices', roles: ['operator'], mount: devicesScreen },
  { path: '#/spaces', title: 'Parking spaces', roles: ['operator'], mount: spacesScreen },
];

const ROLE_NAMES: Record<string, string> = {
  customer: 'customer',
  booth_staff: 'booth staff',
  gate: 'parking gate',
  operator: 'operator',
};

const header = document.getElementById('top') as HTMLElement;
const main = document.getElementById('main') as HTMLElement;
let current: AbortController | undefined;
let signedOutReason: string | undefined;

function allowed(c: Claims): Screen[] {
  return SCREENS.filter((s) => s.roles.some((r) => c.roles.includes(r)));
}

function go(path: string): void {
  if (location.hash === path) route();
  else location.hash = path;
}

function route(): void {
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  const c = claims();
  if (!c) {
    drawHeader(undefined, []);
    document.title = 'Sign in · Roaming console';
    const reason = signedOutReason;
    signedOutReason = undefined;
    signInScreen({ root: main, signal, reason, onSignedIn: () => go(location.hash.startsWith('#/') ? location.hash : '') });
    focusHeading();
    return;
  }
  const screens = allowed(c);
  const screen = screens.find((s) => s.path === location.hash) ?? screens[0];
  drawHeader(c, screens, screen);
  if (!screen) {
    document.title = 'Roaming console';
    replace(
      main,
      h('h1', { tabindex: '-1' }, 'Nothing to show'),
      h('p', {}, 'Your account has no role this console has screens for.'),
    );
    focusHeading();
    return;
  }
  if (location.hash !== screen.path) {
    history.replaceState(null, '', screen.path);
  }
  document.title = `${screen.title} · Roaming console`;
  main.replaceChildren();
  void screen.mount({ root: main, signal, claims: c, go });
  focusHeading();
}

/** After a screen change, focus its heading so screen readers start there. */
function focusHeading(): void {
  const h1 = main.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus();
  }
}

function drawHeader(c: Claims | undefined, screens: Screen[], active?: Screen): void {
  const brand = h('p', { class: 'brand' }, 'Roaming console');
  if (!c) {
    replace(header, brand);
    return;
  }
  const place = c.booth ? ` at ${c.booth}` : c.lot ? ` at lot ${c.lot}` : '';
  const roles = c.roles.map((r) => ROLE_NAMES[r] ?? r).join(', ');
  replace(
    header,
    brand,
    h(
      'nav',
      { 'aria-label': 'Screens' },
      h(
        'ul',
        {},
        ...screens.map((s) =>
          h('li', {}, h('a', { href: s.path, 'aria-current': s === active ? 'page' : undefined }, s.title)),
        ),
      ),
    ),
    h(
      'div',
      { class: 'who' },
      h('p', {}, 'Signed in as ', h('strong', {}, c.sub), ` (${roles}${place})`),
      h('button', { type: 'button', class: 'secondary', onclick: () => signOut() }, 'Sign out'),
    ),
  );
}

onSignedOut((reason) => {
  signedOutReason = reason;
  route();
});

window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#/') || location.hash === '') route();
});

// The skip link moves focus without touching the route in the fragment.
document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

document.body.append(h('div', { id: 'announcer', class: 'sr-only', 'aria-live': 'polite' }));
route();
