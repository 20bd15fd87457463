// The self-service pages in a real browser (Debian's Chromium), without a
// line of our JavaScript: sign up, verify the email with the mailed code,
// sign out, forgot password from the sign-in page of an authorization
// request, reset with the mailed code, back to the request and on to the
// client with a code; then the account page: change the name, see two
// sessions, sign the other one out, revoke the connected app, delete the
// account. Every page is screenshotted and checked with axe-core (no
// serious or critical violation), on a 720-px window, a 360-px phone and at
// 200 % zoom (no sideways scrolling).
//
// usage: node account.mjs CONFIG_JSON
//   {base, authorize_url, redirect, client_id, code_verifier, email,
//    password, new_password, mail_dir, out_dir}
// Talks to its driver in JSON lines on stdout: {"advance": SECONDS} asks it
// to move the server's clock (answered "ok" on stdin); the last line is
// {"report": ...}. Exits non-zero on any failure.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2] || 'null');
if (!config) {
  console.error('usage: node account.mjs CONFIG_JSON');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const report = { pages: [], violations: [] };
const driver = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the test to move the server's clock (the mailed-code budget is one a minute). */
async function advanceClock(seconds) {
  console.log(JSON.stringify({ advance: seconds }));
  const { value } = await driver.next();
  if (value !== 'ok') throw new Error(`the driver answered ${value}`);
}

/** The sessions listed on the account page. */
const sessionItems = (page) => page.getByRole('region', { name: 'Sessions' }).getByRole('listitem');

/** The 6-digit code of the `count`-th mail to `email` in the mail folder. */
async function mailedCode(email, count) {
  const deadline = Date.now() + 30000;
  for (;;) {
    let mails = [];
    try {
      mails = readdirSync(config.mail_dir)
        .filter((name) => name.endsWith('.eml'))
        .map((name) => `${config.mail_dir}/${name}`)
        .map((path) => ({ path, text: readFileSync(path, 'utf8'), at: statSync(path).mtimeMs }))
        .filter(({ text }) => text.split(/\r?\n/).some((l) => /^to:/i.test(l) && l.includes(email)))
        .sort((a, b) => a.at - b.at);
    } catch { /* the folder appears with the first mail */ }
    if (mails.length >= count) {
      const line = mails[count - 1].text.split(/\r?\n/).map((l) => l.trim()).find((l) => /^\d{6}$/.test(l));
      if (!line) throw new Error(`no code in mail ${count} to ${email}`);
      return line;
    }
    if (Date.now() > deadline) throw new Error(`no mail ${count} to ${email}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs axe-core on the page (serious and critical impacts fail the run). */
async function axeCheck(page, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await globalThis.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html) }));
  });
  for (const v of violations) {
    if (v.impact === 'serious' || v.impact === 'critical') report.violations.push({ page: name, ...v });
  }
}

/** No sideways scrolling: the page fits the viewport's width. */
async function fitsWidth(page, name, how) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`${name} scrolls sideways by ${overflow}px ${how}`);
}

/** Screenshot, axe, and the phone and 200 % zoom widths. */
async function check(page, name) {
  await page.screenshot({ path: `${config.out_dir}/${name}.png`, fullPage: true });
  await axeCheck(page, name);
  const size = page.viewportSize();
  await page.setViewportSize({ width: 360, height: 740 });
  await fitsWidth(page, name, 'on a 360-px phone');
  await page.screenshot({ path: `${config.out_dir}/${name}-phone.png`, fullPage: true });
  // 200 % zoom of a 1280-px window lays the page out in 640 CSS pixels.
  await page.setViewportSize({ width: 640, height: 400 });
  await fitsWidth(page, name, 'at 200 % zoom');
  await page.setViewportSize(size);
  report.pages.push(name);
}

/** Visible focus: tabbing to the first field draws an outline. */
async function focusIsVisible(page, name) {
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return el === document.body ? 'none' : style.outlineStyle;
  });
  if (outline === 'none') throw new Error(`${name}: focus is not visible`);
}

async function tokenRequest(form) {
  const response = await fetch(`${config.base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: response.status, body: await response.json() };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 720, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const { email, password, new_password: newPassword } = config;

  // Sign up: first with a too-short password (the message sits next to the field).
  await page.goto(`${config.base}/account/signup`);
  await page.getByRole('heading', { name: 'Create an account' }).waitFor();
  await focusIsVisible(page, 'signup');
  await check(page, 'signup');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('short');
  await page.getByLabel('First name').fill('Ada');
  await page.getByLabel('Last name').fill('Lovelace');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('must be 8 to 72 bytes long').waitFor();
  await check(page, 'signup-errors');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByText('Your account is ready.').waitFor();

  // Verify the email: a wrong code first (the message sits next to the field).
  await page.getByRole('button', { name: 'Send a code' }).click();
  await page.getByText('A 6-digit code is on its way').waitFor();
  await page.getByLabel('Code from the email').fill('12345');
  await page.getByRole('button', { name: 'Verify email' }).click();
  await page.getByText('the code is wrong, expired or already used').waitFor();
  await check(page, 'account-errors');
  await page.getByLabel('Code from the email').fill(await mailedCode(email, 1));
  await page.getByRole('button', { name: 'Verify email' }).click();
  await page.getByText('Your email address is verified.').waitFor();

  // Sign out, back to the account's sign-in form.
  await page.getByRole('button', { name: 'Sign out of this browser' }).click();
  await page.getByText('You are signed out.').waitFor();
  await check(page, 'account-signin');
  await advanceClock(61);

  // The authorization request's sign-in page → forgot → reset → back.
  await page.goto(config.authorize_url);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await check(page, 'authorize-login');
  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  await page.getByRole('heading', { name: 'Forgot your password?' }).waitFor();
  await check(page, 'forgot');
  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Send the code' }).click();
  await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  await check(page, 'reset');
  const resetCode = await mailedCode(email, 2);
  await page.getByLabel('Code from the email').fill(resetCode);
  await page.getByLabel('New password').fill(newPassword);
  await page.getByRole('button', { name: 'Set the new password' }).click();
  await page.waitForURL((url) => url.pathname === '/authorize');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(newPassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
  await check(page, 'consent');
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL((url) => url.href.startsWith(config.redirect));
  report.callback = page.url();
  const code = new URL(page.url()).searchParams.get('code');
  const exchanged = await tokenRequest({
    grant_type: 'authorization_code', client_id: config.client_id, code,
    redirect_uri: config.redirect, code_verifier: config.code_verifier,
  });
  if (exchanged.status !== 200) throw new Error(`code exchange: ${JSON.stringify(exchanged)}`);
  report.app_refresh_token = exchanged.body.refresh_token;

  // Another session: a login through the user API (another device).
  const login = await fetch(`${config.base}/api/users/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: newPassword }),
  });
  if (login.status !== 200) throw new Error(`API login: ${login.status}`);
  report.other_refresh_token = (await login.json()).refresh_token;

  // The account page: the browser session of the sign-in above.
  await page.goto(`${config.base}/account`);
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await page.getByLabel('First name').fill('Augusta Ada');
  await page.getByRole('button', { name: 'Save profile' }).click();
  await page.getByText('Your profile was saved.').waitFor();
  const sessions = await sessionItems(page).count();
  if (sessions !== 2) throw new Error(`${sessions} sessions listed, not 2`);
  await check(page, 'account');
  await focusIsVisible(page, 'account');

  // Sign out the other session (the API login), not this browser's.
  await sessionItems(page).filter({ hasNotText: 'this browser' }).getByRole('button', { name: /^Sign out/ }).click();
  await page.getByText('The session was signed out.').waitFor();
  const left = await sessionItems(page).count();
  if (left !== 1) throw new Error(`${left} sessions left, not 1`);
  report.other_refreshed = await tokenRequest({
    grant_type: 'refresh_token', client_id: 'tessera', refresh_token: report.other_refresh_token,
  });

  // Revoke the connected app.
  await page.getByRole('button', { name: 'Revoke Photo Prints' }).click();
  await page.getByText("The app's access was revoked.").waitFor();
  await page.getByText('You have not allowed any app.').waitFor();

  // Delete the account: a wrong password first.
  await page.getByRole('region', { name: 'Delete account' }).getByLabel('Password').fill('not my password');
  await page.getByRole('button', { name: 'Delete my account' }).click();
  await page.getByText('email or password is incorrect').waitFor();
  await page.getByRole('region', { name: 'Delete account' }).getByLabel('Password').fill(newPassword);
  await page.getByRole('button', { name: 'Delete my account' }).click();
  await page.getByText('Your account was deleted.').waitFor();
  await check(page, 'deleted');
  report.done = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify({ report }));
if (report.violations.length > 0) {
  console.error(JSON.stringify(report.violations, null, 2));
  process.exit(1);
}
process.exit(0);
