// keypin's pages in a real browser, light and dark: text on the sign-in page, its
// alert and its button meet WCAG AA contrast (4.5:1); a refused sign-in (429)
// comes back as a fresh form by itself when the wait ends (meta refresh, no
// script); 404 and 502 pages are styled like the sign-in page, under the same
// CSP and X-Frame-Options. Screenshots go to OUT_DIR.
//
// usage: node pages.mjs BASE_URL UNROUTED_URL OUT_DIR
import { mkdirSync } from 'node:fs';
import { check, launch } from './browser.mjs';

const [base, unrouted, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });


// WCAG contrast of an element's text against the first opaque background behind it.
async function contrast(page, selector) {
  return page.locator(selector).first().evaluate((el) => {
    const rgba = (c) => {
      const p = c.match(/[\d.]+/g).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    let under = el;
    let bg = rgba(getComputedStyle(under).backgroundColor);
    while (bg.a === 0 && under.parentElement) {
      under = under.parentElement;
      bg = rgba(getComputedStyle(under).backgroundColor);
    }
    const channel = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
    const [hi, lo] = [luminance(rgba(getComputedStyle(el).color)), luminance(bg)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  });
}

async function readable(page, scheme, selectors) {
  for (const selector of selectors) {
    const ratio = await contrast(page, selector);
    check(ratio >= 4.5, `${scheme}: ${selector} contrast ${ratio.toFixed(2)}:1 is at least 4.5:1`);
  }
}

// A page of keypin's: styled by its stylesheet (allowed by the CSP's nonce), never framed.
async function styledPage(page, response, scheme, status, name) {
  check(response.status() === status, `${scheme}: ${name} answers ${status}`);
  const headers = response.headers();
  check(headers['x-frame-options'] === 'DENY', `${scheme}: ${name} may not be framed`);
  const csp = headers['content-security-policy'] ?? '';
  check(csp.includes("frame-ancestors 'none'") && csp.includes("style-src 'nonce-"), `${scheme}: ${name} has the page CSP`);
  const radius = await page.locator('main').evaluate((el) => getComputedStyle(el).borderTopLeftRadius);
  check(radius === '12px', `${scheme}: ${name} is styled like the sign-in page`);
  await readable(page, scheme, ['h1', 'main p']);
  await page.screenshot({ path: `${outDir}/${scheme}-${status}.png`, fullPage: true });
}

const browser = await launch();
try {
  for (const scheme of ['light', 'dark']) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, colorScheme: scheme });
    const page = await context.newPage();
    await page.goto(base + '/.keypin/login?rd=/welcome');
    await readable(page, scheme, ['h1', 'main p', 'label', 'button[type="submit"]']);
    await page.fill('#pin', '0000');
    await page.click('button[type="submit"]');
    await page.locator('[role="alert"]').waitFor();
    await readable(page, scheme, ['[role="alert"]']);
    await page.screenshot({ path: `${outDir}/${scheme}-alert.png`, fullPage: true });

    if (scheme === 'light') {
      // Over the rate: refused, told when, and given the form back when that time comes.
      await page.fill('#pin', '0000');
      await page.click('button[type="submit"]');
      const alert = page.locator('[role="alert"]');
      await alert.waitFor();
      const said = await alert.textContent();
      check(/try again in \d+ seconds?/.test(said), `the wait is said in words: "${said.trim()}"`);
      const refresh = await page.locator('meta[http-equiv="refresh"]').getAttribute('content');
      check(/^\d+;url=\/\.keypin\/login\?rd=/.test(refresh), `the refused page refreshes itself (${refresh}), keeping rd`);
      const refused = Date.now();
      await alert.waitFor({ state: 'detached', timeout: 10000 });
      check(Date.now() - refused >= 500, 'not before the wait is over');
      check((await page.locator('#pin').count()) === 1, 'the form is back by itself when the wait ends');
      check(new URL(page.url()).searchParams.get('rd') === '/welcome', 'still going where it was going');
    }

    await styledPage(page, await page.goto(unrouted), scheme, 404, 'a host no route serves');
    await styledPage(page, await page.goto(base + '/down/report'), scheme, 502, 'an unreachable app');
    await context.close();
  }
} finally {
  await browser.close();
}
