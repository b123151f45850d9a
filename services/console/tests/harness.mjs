// What every browser test shares: a fresh `roaming up`, Debian's Chromium
// driven by playwright-core, screenshots under <repo>/target/console-screenshots,
// and an axe-core scan injected from node_modules (no network).
//
// Environment:
//   CONSOLE_MESH_BIN        the roaming binary (default ../../target/debug/roaming)
//   CHROMIUM           the browser (default /usr/bin/chromium)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const consoleDir = resolve(here, '..');
export const repo = resolve(consoleDir, '..', '..');
export const screenshots = join(repo, 'target', 'console-screenshots');
const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');

export const PORT = 50050;
export const URL_ = `http://127.0.0.1:${PORT}/`;

/**
 * Starts `roaming up` in a new directory under target/tmp and waits for its
 * banner. `env` adds ROAMING_* settings (e.g. a short token lifetime).
 */
export async function startMesh(env = {}) {
  const bin = resolve(consoleDir, process.env.CONSOLE_MESH_BIN ?? '../../target/debug/roaming');
  if (!existsSync(bin)) {
    throw new Error(`no roaming binary at ${bin}: build it (cargo build -p services-roaming) or set CONSOLE_MESH_BIN`);
  }
  await mkdir(join(repo, 'target', 'tmp'), { recursive: true });
  const cwd = await mkdtemp(join(repo, 'target', 'tmp', 'console-'));
  const child = spawn(bin, ['up'], {
    cwd,
    env: {
      ...process.env,
      ROAMING_GATEWAY_LISTEN: `127.0.0.1:${PORT}`,
      ROAMING_ADMIN_LISTEN: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const up = new Promise((resolveUp, rejectUp) => {
    const timer = setTimeout(() => rejectUp(new Error(`roaming up did not come up in 120 s:\n${output.slice(-4000)}`)), 120_000);
    const seen = (chunk) => {
      output += chunk;
      if (output.includes('roaming mesh is up')) {
        clearTimeout(timer);
        resolveUp();
      }
    };
    child.stdout.setEncoding('utf8').on('data', seen);
    child.stderr.setEncoding('utf8').on('data', seen);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      rejectUp(new Error(`roaming up exited (${code ?? signal}) before it was up:\n${output.slice(-4000)}`));
    });
  });
  const exited = new Promise((r) => child.on('exit', r));
  try {
    await up;
  } catch (e) {
    child.kill('SIGKILL');
    await rm(cwd, { recursive: true, force: true });
    throw e;
  }
  return {
    url: URL_,
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killer);
      await rm(cwd, { recursive: true, force: true });
    },
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A tablet-sized page (768x1024, UTC). Console errors are collected: a test
 * ends with `assertClean(page)` (no CSP violation, no uncaught error).
 * `bypassCSP` only for the accessibility scan, whose script is injected inline.
 */
export async function newPage(browser, { bypassCSP = false } = {}) {
  const context = await browser.newContext({
    viewport: { width: 768, height: 1024 },
    timezoneId: 'UTC',
    locale: 'en-GB',
    bypassCSP,
  });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) {
      page.problems.push(msg.text());
    }
  });
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  return page;
}

export function assertClean(page) {
  if (page.problems.length) throw new Error(`the page reported:\n${page.problems.join('\n')}`);
}

export async function signIn(page, url, username, password = 'demo') {
  await page.goto(url);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Screens' }).waitFor();
}

export async function shot(page, name) {
  await mkdir(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

/** axe-core's serious and critical violations of the page as it is now. */
export async function axe(page) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** `YYYY-MM-DD` of today in UTC (the mesh's dates are UTC days). */
export function todayUtc(offsetDays = 0) {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

/** A list item (card or timeline entry) that mentions `text`. */
export function itemWith(scope, text) {
  return scope.getByRole('listitem').filter({ hasText: text });
}

/** Follows a link of the console's navigation. */
export async function nav(page, name) {
  await page.getByRole('navigation', { name: 'Screens' }).getByRole('link', { name }).click();
  await page.getByRole('heading', { level: 1 }).first().waitFor();
}

export const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
export const GOOD_CARD = '4111111111111111';

/** Fills the card fieldset (shown once the server's price is). */
export async function fillCard(page, number = GOOD_CARD) {
  await page.getByLabel('Card number').fill(number);
  await page.getByLabel('Expiry month').selectOption('12');
  await page.getByLabel('Expiry year').selectOption(String(new Date().getUTCFullYear() + 2));
  await page.getByLabel('Name on card').fill('Alice Kim');
  await page.getByLabel('Card company').selectOption('VISA');
}

/** Fills the trip of "Reserve a device" and asks for the price. */
export async function quoteDevice(page, trip = {}) {
  const t = { model: 'egg-lte', country: 'JP', pickup: 'ICN-T1', ret: 'ICN-T1', start: todayUtc(), end: todayUtc(), ...trip };
  await nav(page, 'Reserve a device');
  await page.getByLabel('Device model').selectOption(t.model);
  await page.getByLabel('Country').selectOption(t.country);
  await page.getByLabel('Pickup booth').fill(t.pickup);
  await page.getByLabel('Return booth').fill(t.ret);
  await page.getByLabel('First day').fill(t.start);
  await page.getByLabel('Last day').fill(t.end);
  await page.getByRole('button', { name: 'Get the price' }).click();
}

/** Quotes and pays; resolves to the new reservation's id. */
export async function reserveDevice(page, trip = {}, card = GOOD_CARD) {
  await quoteDevice(page, trip);
  const pay = page.getByRole('button', { name: /^Pay KRW.+ and reserve$/ });
  await pay.waitFor();
  await fillCard(page, card);
  await pay.click();
  const done = page.getByRole('status').filter({ hasText: 'Reserved and paid' });
  await done.waitFor();
  const id = (await done.getByText(UUID).textContent())?.trim() ?? '';
  if (!UUID.test(id)) throw new Error(`no reservation number on screen: ${await done.textContent()}`);
  return id;
}

/** `YYYY-MM-DDTHH:MM` (UTC, as the test browser's clock is) `minutes` from now. */
export function minuteUtc(minutes) {
  return new Date(Date.now() + minutes * 60_000).toISOString().slice(0, 16);
}

/** Waits until `locator` shows text matching `re` (live updates, refreshes). */
export async function waitText(locator, re, timeout = 30_000) {
  await locator.filter({ hasText: re }).first().waitFor({ timeout });
}

/** The card of reservation `id` on "My reservations". */
export function myCard(page, id) {
  return page.getByRole('list', { name: 'Reservations' }).getByRole('listitem').filter({ hasText: id });
}
