// keypin's sign-in in a real browser: Debian's Chromium, headless, driven by
// playwright-core (no browser download). For a desktop and a 390x844 mobile
// viewport: deep link -> PIN page (title, label, focus) -> wrong PIN and its
// message -> right PIN -> the deep link on the app -> sign out -> PIN page again.
// Screenshots go to OUT_DIR.
//
// usage: node login.mjs BASE_URL EXPECTED_TITLE OUT_DIR GREETING
import { mkdirSync } from 'node:fs';
import { check, launch } from './browser.mjs';

const [base, title, outDir, greeting] = process.argv.slice(2);
const deepLink = '/reports/q3?year=2026';
mkdirSync(outDir, { recursive: true });


const browser = await launch();

try {
  for (const [name, viewport] of [
    ['desktop', { width: 1280, height: 800 }],
    ['mobile', { width: 390, height: 844 }],
  ]) {
    // A fresh context is a fresh profile: no cookies. The dev certificate is
    // self-signed, so this context accepts it.
    const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true, isMobile: name === 'mobile' });
    const page = await context.newPage();

    await page.goto(base + deepLink);
    check(page.url().includes('/.keypin/login?rd='), `${name}: a deep link lands on the PIN page`);
    check((await page.title()) === title, `${name}: the page title is "${title}"`);
    const label = (await page.locator('label[for="pin"]').textContent()).trim();
    check(label === 'PIN', `${name}: the PIN field is labelled`);
    check((await page.getAttribute('#pin', 'inputmode')) === 'numeric', `${name}: a numeric keyboard on phones`);
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    check(focused === 'pin', `${name}: the PIN field has focus on load`);
    await page.screenshot({ path: `${outDir}/${name}-1-pin.png`, fullPage: true });

    await page.fill('#pin', '0000');
    await page.click('button[type="submit"]');
    const alert = page.locator('[role="alert"]');
    await alert.waitFor();
    check((await alert.textContent()).includes('Invalid PIN'), `${name}: a wrong PIN is announced`);
    await page.screenshot({ path: `${outDir}/${name}-2-wrong-pin.png`, fullPage: true });

    await page.fill('#pin', '1234');
    await page.click('button[type="submit"]');
    await page.waitForURL((url) => url.pathname === '/reports/q3');
    check(new URL(page.url()).search === '?year=2026', `${name}: back at the deep link with its query`);
    check((await page.content()).includes(greeting), `${name}: the app greets "${greeting}"`);
    await page.screenshot({ path: `${outDir}/${name}-3-app.png`, fullPage: true });

    await page.goto(base + '/.keypin/logout');
    await page.click('button[type="submit"]');
    await page.waitForURL((url) => url.pathname === '/.keypin/login');
    check((await page.locator('#pin').count()) === 1, `${name}: signed out, at the PIN page`);
    check((await page.content()).includes('You have been signed out.'), `${name}: the page says so`);
    check((await page.locator('#pin').getAttribute('title')) === '4 to 10 digits', `${name}: the PIN field says what it takes`);
    await page.goto(base + deepLink);
    check(page.url().includes('/.keypin/login'), `${name}: the session is gone`);
    await page.screenshot({ path: `${outDir}/${name}-4-signed-out.png`, fullPage: true });
    await context.close();
  }
} finally {
  await browser.close();
}
