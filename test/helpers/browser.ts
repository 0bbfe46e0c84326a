/**
 * A headless Chromium for the browser tests, driven by puppeteer-core. The browser is the system's (Debian's
 * `chromium` package; `.ci/run` installs it), never downloaded: CHROMIUM_PATH or PUPPETEER_EXECUTABLE_PATH
 * name another one.
 */
import { existsSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome-stable', '/usr/bin/google-chrome'];

/** The browser executable to use, or null when this machine has none. */
export function findBrowser(env: NodeJS.ProcessEnv = process.env): string | null {
  const named = [env.CHROMIUM_PATH, env.PUPPETEER_EXECUTABLE_PATH].filter((p): p is string => !!p);
  return [...named, ...CANDIDATES].find((p) => existsSync(p)) ?? null;
}

export async function launchBrowser(executablePath: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath,
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start; the browser only ever loads the loopback server.
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--disable-gpu',
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-background-networking',
      '--disable-component-update',
    ],
    // A loaded 2-core machine: generous limits for each DevTools call.
    protocolTimeout: 180_000,
  });
}
