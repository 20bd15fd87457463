// Drives the authorization code flow in a real browser (Debian's Chromium):
// open /authorize, type the email and password, approve consent, and land
// on the client's redirect URI. Prints {"url": final URL} as JSON.
//
// usage: node authorize.mjs AUTHORIZE_URL EMAIL PASSWORD REDIRECT_PREFIX OUT_DIR
import { chromium } from 'playwright-core';

const [authorizeUrl, email, password, redirectPrefix, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node authorize.mjs AUTHORIZE_URL EMAIL PASSWORD REDIRECT_PREFIX OUT_DIR');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 720, height: 640 } });
  page.setDefaultTimeout(15000);

  await page.goto(authorizeUrl);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.screenshot({ path: `${outDir}/login.png` });

  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();

  await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
  await page.screenshot({ path: `${outDir}/consent.png` });
  await page.getByRole('button', { name: 'Allow' }).click();

  await page.waitForURL((url) => url.href.startsWith(redirectPrefix));
  await page.getByText('signed in').waitFor();
  await page.screenshot({ path: `${outDir}/callback.png` });
  console.log(JSON.stringify({ url: page.url() }));
} finally {
  await browser.close();
}
