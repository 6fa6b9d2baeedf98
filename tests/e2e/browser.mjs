// What every browser script shares: Debian's Chromium, headless, with nothing
// that reaches beyond loopback (no background networking, updates, sync or
// QUIC), and one way to report a check.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
}

// Throw unless `condition`; print "ok - what" (the Rust side counts these).
export function check(condition, what) {
  if (!condition) {
    throw new Error(`check failed: ${what}`);
  }
  console.log(`ok - ${what}`);
}
