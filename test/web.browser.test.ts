import { rmSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM } from './support/conditional.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * Specification of the web client (web/) in Debian's Chromium against the real server (the
 * built one, `npm start`'s dist/main.js): what a person does with it, by the accessible names
 * of its fields and buttons.
 */
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('the web client in Chromium', () => {
  const dataDir = tempDir('chat-web-');
  let server: ReadyServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  /** Every request a page made that went anywhere but the server it came from. */
  const foreign: string[] = [];

  beforeAll(async () => {
    server = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET }));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
    server.child.kill('SIGTERM');
    await serverExit(server);
    rmSync(dataDir, { recursive: true, force: true });
  });

  const open = async (viewport = { width: 1100, height: 760 }): Promise<Page> => {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.host !== new URL(server.url).host) foreign.push(r.url());
    });
    await page.goto(server.url);
    return page;
  };
  const signUp = async (page: Page, username: string) => {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('correct horse battery');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('button', { name: 'Log out' }).waitFor();
  };
  const startDirect = async (page: Page, other: string) => {
    await page.getByRole('button', { name: 'New chat' }).click();
    await page.getByLabel('Search').fill(other);
    await page.getByRole('button', { name: 'Message' }).first().click();
  };

  it('two people sign up, start a direct chat and exchange messages both ways; presence and typing show', async () => {
    const ann = await open();
    const ben = await open();
    await signUp(ann, 'ann_web');
    await signUp(ben, 'ben_web');

    await startDirect(ann, 'ben_web');
    await ann.getByLabel('Message').fill('hello Ben');
    await ann.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => ann.locator('.messages li.mine:not(.pending) .text').allTextContents()).toEqual(['hello Ben']);

    // Ben's list gets the chat (chat.added), named by the other member's display name.
    await ben.getByRole('button', { name: /ann_web/ }).click();
    await expect.poll(() => ben.locator('.messages li:not(.system) .text').allTextContents()).toEqual(['hello Ben']);
    await expect.poll(() => ben.locator('.chats .dot').first().getAttribute('aria-label')).toBe('online');

    // Typing shows on the other side, and clears on send.
    await ben.getByLabel('Message').pressSequentially('hi An');
    await expect.poll(() => ann.locator('.typing').textContent()).toMatch(/ben_web is typing/);
    await ben.getByLabel('Message').press('Enter');
    await expect.poll(() => ann.locator('.messages li:not(.system) .text').allTextContents()).toEqual(['hello Ben', 'hi An']);
    await expect.poll(() => ann.locator('.typing').textContent()).toBe('');

    // Ben closes his browser: Ann sees him offline.
    await ben.context().close();
    await expect.poll(() => ann.locator('.chats .dot').first().getAttribute('aria-label'), { timeout: 15_000 }).toBe('offline');

    // A reload keeps the session.
    await ann.reload();
    await ann.getByRole('button', { name: 'Log out' }).waitFor();
    expect(foreign).toEqual([]);
  });

  it('refuses a message of 1,001 code points before sending it, and sends one of 1,000', async () => {
    const page = await open();
    await signUp(page, 'cara_web');
    await startDirect(page, 'ann_web');
    await page.getByLabel('Message').fill('가'.repeat(1001));
    expect(await page.getByRole('button', { name: 'Send' }).isDisabled()).toBe(true);
    expect(await page.locator('.counter').textContent()).toBe('1001/1000');
    await page.getByLabel('Message').fill('😀'.repeat(1000));
    await page.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => page.locator('.messages li.mine:not(.pending) .text').count()).toBe(1);
  });

  it('at 360 px wide nothing overflows horizontally', async () => {
    const page = await open({ width: 360, height: 740 });
    await signUp(page, 'dan_web');
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(await overflow()).toBe(0);
    await startDirect(page, 'ann_web');
    await page.getByLabel('Message').fill('a long line '.repeat(40));
    await page.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => page.locator('.messages li.mine:not(.pending)').count()).toBe(1);
    expect(await overflow()).toBe(0);
  });

  it('logging out closes the connection and forgets the token', async () => {
    const page = await open();
    await signUp(page, 'eve_web');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('chat.login'))).toBeNull();
    await page.reload();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
  });
});
