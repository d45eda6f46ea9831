import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { TestUser } from './identity.js';
import { totpCode } from './totp-codes.js';
import { openRelayHarness, type RelayHarness } from './relay.js';

/**
 * The console in a real browser: the app of a relay harness (identity, relay, fake providers) listening on a loopback port,
 * Debian's Chromium driven headless by playwright-core. Every page a test opens fails the test
 * on a CSP violation, a console error or an uncaught exception (`assertClean`), and `check`
 * runs axe-core on it (no serious or critical finding) and saves a screenshot into
 * test-output/console/ (kept out of git).
 */

export const CHROMIUM = process.env.CIPHERGATE_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.resolve('test-output/console');
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface ConsoleBrowser {
  harness: RelayHarness;
  /** http://127.0.0.1:PORT — loopback, where Chromium accepts the Secure `__Host-` cookies over http. */
  baseUrl: string;
  browser: Browser;
  /** A fresh browser profile (no cookies) with one page that records every problem it meets. */
  newPage(): Promise<WatchedPage>;
  close(): Promise<void>;
}

export interface WatchedPage {
  context: BrowserContext;
  page: Page;
  /** CSP violations, console errors and page errors so far. */
  problems: string[];
  /** Fails when anything went wrong on the page so far. */
  assertClean(): void;
  /** axe-core on the current page (zero serious or critical violations), a screenshot as `name`.png, and assertClean. */
  check(name: string): Promise<void>;
}

export async function openConsoleBrowser(): Promise<ConsoleBrowser> {
  const harness = await openRelayHarness('pglite');
  await harness.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = harness.app.server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const contexts: BrowserContext[] = [];

  return {
    harness,
    baseUrl,
    browser,
    async newPage() {
      const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
      contexts.push(context);
      const page = await context.newPage();
      const problems: string[] = [];
      // The DOM event, reported from the page: the one signal that covers inline script, inline
      // style, eval and third-party origins alike.
      await page.exposeFunction('__reportCspViolation', (text: string) => problems.push(`CSP violation: ${text}`));
      await context.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (event) => {
          (window as unknown as { __reportCspViolation(text: string): void }).__reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || '(inline)'} at ${event.sourceFile}:${event.lineNumber}`);
        });
      });
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      const watched: WatchedPage = {
        context,
        page,
        problems,
        assertClean() {
          assert.deepEqual(problems, [], `the page met problems: ${problems.join('; ')}`);
        },
        async check(name) {
          await page.evaluate(AXE_SOURCE);
          const result = await page.evaluate(async () => {
            const axe = (window as unknown as { axe: { run(context: Document, options: object): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: unknown }> }> }> } }).axe;
            return axe.run(document, { resultTypes: ['violations'] });
          });
          const serious = result.violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
          assert.deepEqual(
            serious.map((violation) => `${violation.id} (${violation.impact}): ${violation.help} at ${JSON.stringify(violation.nodes.map((node) => node.target))}`),
            [],
            `axe-core on ${name}`,
          );
          await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
          watched.assertClean();
        },
      };
      return watched;
    },
    async close() {
      for (const context of contexts) await context.close().catch(() => undefined);
      await browser.close();
      await harness.close();
    },
  };
}

/** Signs `user` in through the console's forms: email and password, then a TOTP code at `step` (each step is usable once per user). */
export async function signInThroughConsole(watched: WatchedPage, baseUrl: string, user: TestUser, step = 0): Promise<void> {
  const { page } = watched;
  await page.goto(`${baseUrl}/console`);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${baseUrl}/console/second-factor`);
  await page.getByLabel('Code', { exact: true }).fill(totpCode(user.totpSecret!, step));
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${baseUrl}/console/dashboard`);
}
