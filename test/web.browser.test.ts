import { rmSync } from 'node:fs';
import { type Browser, type BrowserContext, type Locator, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM } from './support/conditional.js';
import { type ReadyServer, launchServer, serverExit, serverReady } from './helpers/process.js';
import { connectAs } from './helpers/mqtt.js';
import { TEST_SECRET, tempDir } from './helpers/server.js';

/**
 * Specification of the web client (web/) in Debian's Chromium against the real server (the
 * built one, `npm start`'s dist/main.js): what a person does with it, by the accessible names
 * of its fields and buttons.
 */
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let browser: Browser;
beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});
afterAll(async () => {
  await browser?.close();
});

/** A server of its own (dist/main.js) in a fresh data directory, and pages opened on it. */
function webServer(env: Record<string, string> = {}) {
  const dataDir = tempDir('chat-web-');
  const t = {
    dataDir,
    server: undefined as unknown as ReadyServer,
    /** Every request a page made that went anywhere but the server it came from. */
    foreign: [] as string[],
    async open(viewport = { width: 1100, height: 760 }): Promise<Page> {
      const context = await browser.newContext({ viewport });
      context.setDefaultTimeout(10_000); // a step that cannot happen fails by name, before the spec's timeout
      contexts.push(context);
      const page = await context.newPage();
      page.on('request', (r) => {
        if (new URL(r.url()).host !== new URL(t.server.url).host) t.foreign.push(r.url());
      });
      await page.goto(t.server.url);
      return page;
    },
    /** Two people sign up on pages of their own; the first opens a direct chat with the second. */
    async pair(first: string, second: string): Promise<[Page, Page]> {
      const a = await t.open();
      const b = await t.open();
      await signUp(a, first);
      await signUp(b, second);
      await startDirect(a, second);
      return [a, b];
    },
    /** A login over REST, and the id of that user's (only) direct chat. */
    async directChatOf(username: string): Promise<{ login: { token: string; user: { id: string; username: string } }; chatId: string }> {
      const login = (await t.server.http.post('/api/users/login', { username, password: PASSWORD })).body;
      const chatId = (await t.server.http.get(`/api/chats/one-to-one/${login.user.id}`, login.token)).body.chats[0].id as string;
      return { login, chatId };
    },
    /** Stops the server and starts it again on the same HTTP port and data. */
    async restart() {
      t.server.child.kill('SIGTERM');
      await serverExit(t.server);
      t.server = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, PORT: String(t.server.port), ...env }));
    },
  };
  const contexts: BrowserContext[] = [];
  beforeAll(async () => {
    t.server = await serverReady(launchServer({ DATA_DIR: dataDir, JWT_SECRET: TEST_SECRET, ...env }));
  });
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    t.server?.child.kill('SIGTERM');
    if (t.server) await serverExit(t.server);
    rmSync(dataDir, { recursive: true, force: true });
  });
  return t;
}

const PASSWORD = 'correct horse battery';
const signUp = async (page: Page, username: string) => {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
};
const startDirect = async (page: Page, other: string) => {
  await page.getByRole('button', { name: 'New chat' }).click();
  await page.getByLabel('Search').fill(other);
  await page.getByRole('button', { name: 'Message' }).first().click();
};
const send = async (page: Page, text: string) => {
  await page.getByLabel('Message').fill(text);
  await page.getByRole('button', { name: 'Send' }).click();
};
/** The texts of the chat messages shown in the open conversation, in the order shown. */
const shown = (page: Page) => page.locator('.messages li:not(.system):not(.pending) .text').allTextContents();
/** The seqs of every envelope shown, in the order shown. */
const seqs = (page: Page) => page.locator('.messages li[data-seq]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));

describe('the web client in Chromium', () => {
  const t = webServer();
  const open = (viewport?: { width: number; height: number }) => t.open(viewport);

  it('two people sign up, start a direct chat and exchange messages both ways; presence and typing show', async () => {
    const [ann, ben] = await t.pair('ann_web', 'ben_web');
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
    expect(t.foreign).toEqual([]);
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

  it('a group of three: the owner removes a member, who stops receiving; the others see it as a system message', async () => {
    const [gus, hal, ivy] = [await open(), await open(), await open()];
    await signUp(gus, 'gus_web');
    await signUp(hal, 'hal_web');
    await signUp(ivy, 'ivy_web');
    await gus.getByRole('button', { name: 'New chat' }).click();
    for (const who of ['hal_web', 'ivy_web']) {
      await gus.getByLabel('Search').fill(who);
      await gus.locator('.people li', { hasText: `@${who}` }).getByRole('button', { name: 'Add to group' }).click();
    }
    await gus.getByLabel('Group name').fill('Trio');
    await gus.getByRole('button', { name: 'Create group' }).click();
    await send(gus, 'hello all');
    for (const page of [hal, ivy]) {
      await page.getByRole('button', { name: /Trio/ }).click();
      await expect.poll(() => shown(page)).toEqual(['hello all']);
    }
    await send(ivy, 'hi from ivy');
    await expect.poll(() => shown(gus)).toEqual(['hello all', 'hi from ivy']);

    await gus.getByText('Members', { exact: true }).click();
    await gus.getByRole('button', { name: 'Remove ivy_web' }).click();
    await ivy.getByText('You are no longer in Trio.').waitFor();
    await expect.poll(() => ivy.getByRole('button', { name: /Trio/ }).count()).toBe(0);
    await expect.poll(() => hal.locator('.messages li.system').allTextContents()).toContain('gus_web removed ivy_web');
    await expect.poll(() => gus.locator('.messages li.system').allTextContents()).toContain('You removed ivy_web');

    await send(gus, 'ivy is gone');
    await expect.poll(() => shown(hal)).toEqual(['hello all', 'hi from ivy', 'ivy is gone']);
    // Hal has it; Ivy's page, live or after a reload, never shows it.
    expect(await ivy.getByText('ivy is gone').count()).toBe(0);
    await ivy.reload();
    await ivy.getByRole('button', { name: 'Log out' }).waitFor();
    expect(await ivy.getByRole('button', { name: /Trio/ }).count()).toBe(0);
    expect(await ivy.getByText('ivy is gone').count()).toBe(0);
  });

  it('works with the keyboard alone: sign up, start a chat, send; the focused control is outlined', async () => {
    const page = await open();
    /** Presses Tab until the target has the focus: it is reachable without a mouse. */
    const tabTo = async (target: Locator) => {
      for (let i = 0; i < 40; i++) {
        await page.keyboard.press('Tab');
        if (await target.evaluate((el) => el === document.activeElement)) return;
      }
      throw new Error(`Tab never reaches ${target.toString()}`);
    };
    await tabTo(page.getByLabel('Username'));
    await page.keyboard.type('kim_web');
    await tabTo(page.getByLabel('Password'));
    await page.keyboard.type(PASSWORD);
    const create = page.getByRole('button', { name: 'Create account' });
    await tabTo(create);
    expect(await create.evaluate((el) => getComputedStyle(el).outlineStyle)).toBe('solid');
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Log out' }).waitFor();

    await tabTo(page.getByRole('button', { name: 'New chat' }));
    await page.keyboard.press('Enter');
    await tabTo(page.getByLabel('Search'));
    await page.keyboard.type('ann_web');
    const message = page.getByRole('button', { name: 'Message' }).first();
    await message.waitFor();
    await tabTo(message);
    await page.keyboard.press('Enter');
    // The conversation opens with the composer focused: type, Enter sends.
    await expect.poll(() => page.getByLabel('Message').evaluate((el) => el === document.activeElement)).toBe(true);
    await page.keyboard.type('typed with keys');
    await page.keyboard.press('Enter');
    await expect.poll(() => shown(page)).toEqual(['typed with keys']);
  });

  it('a token revoked elsewhere sends the page back to the login form', async () => {
    const page = await open();
    await signUp(page, 'lou_web');
    const { token } = JSON.parse((await page.evaluate(() => localStorage.getItem('chat.login')))!) as { token: string };
    expect((await t.server.http.post('/api/users/logout', undefined, token)).status).toBe(204);
    await page.getByRole('button', { name: 'Log in' }).waitFor({ timeout: 15_000 });
    expect(await page.getByRole('alert').textContent()).toMatch(/session has ended/);
    expect(await page.evaluate(() => localStorage.getItem('chat.login'))).toBeNull();
  });
});

describe('the web client across a server restart', () => {
  const t = webServer();

  it('reconnects and catches up with ?after=: what the log holds, in seq order, no gap, no duplicate; a message written while the server was down is sent once', async () => {
    const [ann, ben] = await t.pair('ann_r', 'ben_r');
    await send(ann, 'before 1');
    await ben.getByRole('button', { name: /ann_r/ }).click();
    await expect.poll(() => shown(ben)).toEqual(['before 1']);
    await send(ben, 'before 2');
    await expect.poll(() => shown(ann)).toEqual(['before 1', 'before 2']);
    const { login, chatId } = await t.directChatOf('ann_r');

    // The server stops; Ben's network goes away; Ann writes while the server is down.
    t.server.child.kill('SIGTERM');
    await serverExit(t.server);
    await expect.poll(() => ann.locator('.status').textContent()).toBe('offline');
    await expect.poll(() => ben.locator('.status').textContent()).toBe('offline');
    await ben.context().setOffline(true);
    await send(ann, 'written while down');
    expect(await ann.locator('.messages li.pending .text').allTextContents()).toEqual(['written while down']);
    await t.restart();

    // While Ben is still away, Ann's phone sends 20 more: Ben can only learn them by catch-up.
    const phone = await connectAs(t.server, login);
    for (let i = 0; i < 20; i++) {
      await phone.client.publishAsync(`chats/${chatId}/messages`, JSON.stringify({ text: `from the phone ${i}`, clientMsgId: `phone-${i}` }), { qos: 1 });
    }
    await phone.client.endAsync();
    expect(await ben.locator('.status').textContent()).toBe('offline');
    await ben.context().setOffline(false);

    const log = async () => (await t.server.http.history(chatId, login.token)) as { type: string; seq: number; text?: string }[];
    await expect.poll(async () => (await log()).filter((e) => e.text === 'written while down').length, { timeout: 20_000 }).toBe(1);
    const held = await log();
    const texts = held.filter((e) => e.type === 'message').map((e) => e.text);
    expect(texts).toHaveLength(23);
    for (const page of [ann, ben]) {
      await expect.poll(() => seqs(page), { timeout: 20_000 }).toEqual(held.map((e) => e.seq));
      expect(await shown(page)).toEqual(texts);
      expect(await page.locator('.messages li.pending').count()).toBe(0);
    }
    expect(t.foreign).toEqual([]);
  });
});

describe('the web client when a send is refused', () => {
  // Two messages at once, then one every 4 s: the third of a quick three is refused.
  const t = webServer({ SEND_BURST: '2', SEND_RATE: '0.25' });

  it('shows the reason and keeps the message; Retry sends it with the same clientMsgId, stored once', async () => {
    const [ann] = await t.pair('ann_q', 'ben_q');
    for (const text of ['one', 'two', 'three']) await send(ann, text);
    const refused = ann.locator('.messages li.pending.failed');
    await expect.poll(() => refused.textContent()).toMatch(/Not sent \(rate limited\)/);
    expect(await refused.locator('.text').textContent()).toBe('three');
    const clientMsgId = await refused.getAttribute('data-client-msg-id');
    await expect.poll(() => shown(ann)).toEqual(['one', 'two']);

    await new Promise((r) => setTimeout(r, 4_500));
    await refused.getByRole('button', { name: 'Retry' }).click();
    await expect.poll(() => shown(ann)).toEqual(['one', 'two', 'three']);
    const { login: { token }, chatId } = await t.directChatOf('ben_q');
    const stored = ((await t.server.http.history(chatId, token)) as { text?: string; clientMsgId?: string }[]).filter((e) => e.text === 'three');
    expect(stored.map((e) => e.clientMsgId)).toEqual([clientMsgId]);
  });
});
