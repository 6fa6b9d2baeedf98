// Attack mode in a real browser: after failures over the global budget, a browser
// that never signed in sees "temporarily restricted" (announced) even with a valid
// PIN. Screenshot in OUT_DIR.
//
// usage: node attack.mjs BASE_URL OUT_DIR
import { mkdirSync } from 'node:fs';
import { launch } from './browser.mjs';

const [base, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(base + '/.keypin/login');
  for (const pin of ['0001', '0002', '1234']) {
    await page.fill('#pin', pin);
    await page.click('button[type="submit"]');
    await page.locator('[role="alert"]').waitFor();
  }
  const text = await page.locator('[role="alert"]').textContent();
  if (!text.includes('temporarily restricted')) {
    throw new Error(`check failed: attack mode message, got "${text}"`);
  }
  console.log('ok - attack mode: an unknown browser is told sign-in is restricted, and when to retry');
  await page.screenshot({ path: `${outDir}/attack-mode.png`, fullPage: true });
} finally {
  await browser.close();
}
