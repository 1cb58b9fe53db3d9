/**
 * Headless Chromium driven by playwright-core, as a child process so that it can run inside a
 * network namespace (`ip netns exec NS node dist/test/helpers/ui-driver.js`) and reach `braid up`'s
 * control port on that namespace's loopback. The test talks to it in JSON lines:
 *
 *   stdin:  {"id": 1, "op": "open", "url": "...", "width": 1600, "height": 1000}
 *   stdout: {"id": 1, "ok": true, "result": ...} | {"id": 1, "ok": false, "error": "..."}
 *
 * It exits (closing Chromium) on a "quit" op, when stdin closes (the test died), on SIGTERM, and
 * after a hard lifetime limit, so that no browser outlives the test.
 */
import readline from 'node:readline';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

const CHROMIUM = process.env.BRAID_CHROMIUM ?? '/usr/bin/chromium';
const OP_TIMEOUT_MS = 15_000;
const LIFETIME_MS = Number(process.env.BRAID_UI_DRIVER_LIFETIME_MS ?? 10 * 60_000);

type Req = { id: number; op: string } & Record<string, unknown>;

let browser: Browser | null = null;
let context: BrowserContext | null = null;
let page: Page | null = null;
const consoleProblems: string[] = [];

function send(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Clicks the switch whose label starts with `label` and waits until it shows the other state. */
async function toggleSwitch(label: string): Promise<boolean> {
  const p = need();
  const sw = p.getByRole('switch', { name: new RegExp(`^${label}`) });
  const before = await sw.getAttribute('aria-checked');
  await sw.click();
  const want = before === 'true' ? 'false' : 'true';
  // Flipped and enabled again: a status event can flip it while the call is still running (the
  // switch is disabled until the call returns, e.g. until transparent mode's table is gone).
  await until(`[...document.querySelectorAll('[role=switch]')].some((s) => s.textContent.trim().startsWith(${JSON.stringify(label)}) && s.getAttribute('aria-checked') === '${want}' && !s.disabled)`);
  return want === 'true';
}

function need(): Page {
  if (!page) throw new Error('no page: send "open" first');
  return page;
}

const str = (r: Req, k: string): string => {
  const v = r[k];
  if (typeof v !== 'string') throw new Error(`'${k}' must be a string`);
  return v;
};
const num = (r: Req, k: string): number => {
  const v = r[k];
  if (typeof v !== 'number') throw new Error(`'${k}' must be a number`);
  return v;
};

/** Reads the page with a string expression (the test build has no DOM types). */
async function read<T>(expr: string): Promise<T> {
  return (await need().evaluate(expr)) as T;
}

/**
 * Polls an expression until it is truthy. Not page.waitForFunction: that evaluates the string with
 * eval() inside the page, which the dashboard's CSP (rightly) forbids.
 */
async function until(expr: string, timeoutMs = OP_TIMEOUT_MS): Promise<unknown> {
  const start = Date.now();
  for (let i = 0; i < 10_000; i++) {
    const v = await read<unknown>(expr);
    if (v) return v;
    if (Date.now() - start > timeoutMs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${timeoutMs} ms: ${expr}`);
}

const ops: Record<string, (r: Req) => Promise<unknown>> = {
  async open(r) {
    if (!browser) {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        timeout: OP_TIMEOUT_MS,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
      });
    }
    await context?.close();
    context = await browser.newContext({
      viewport: { width: num(r, 'width'), height: num(r, 'height') },
      colorScheme: (r.colorScheme as 'light' | 'dark' | undefined) ?? 'light',
      reducedMotion: 'reduce',
    });
    page = await context.newPage();
    page.setDefaultTimeout(OP_TIMEOUT_MS);
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleProblems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleProblems.push(`pageerror: ${e.message}`));
    const res = await page.goto(str(r, 'url'), { waitUntil: 'load' });
    await page.locator('h1').waitFor();
    return { status: res?.status() ?? null, csp: res?.headers()['content-security-policy'] ?? null };
  },

  async viewport(r) {
    await need().setViewportSize({ width: num(r, 'width'), height: num(r, 'height') });
    return null;
  },

  async colorScheme(r) {
    const scheme = str(r, 'scheme');
    await need().emulateMedia({ colorScheme: scheme as 'light' | 'dark' });
    await until(`document.documentElement.dataset.theme === ${JSON.stringify(scheme)}`, 3000).catch(() => {});
    return read<string>('document.documentElement.dataset.theme');
  },

  async screenshot(r) {
    const file = str(r, 'path');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Let one more stats tick land, so the picture is not mid-relayout.
    await need().waitForTimeout(600);
    await need().screenshot({ path: file, fullPage: r.fullPage === true });
    return file;
  },

  /** What the page shows, read from the DOM (rates as data attributes, in bytes per second). */
  async snapshot() {
    return read(`(() => ({
      proxyOn: document.querySelector('[role=switch]')?.getAttribute('aria-checked') ?? null,
      proxyLabel: document.querySelector('[role=switch]')?.textContent?.trim() ?? null,
      link: document.querySelector('.link')?.textContent?.trim() ?? null,
      legend: [...document.querySelectorAll('.legend li[data-path]')].map((li) => ({ path: li.dataset.path, down: Number(li.dataset.down), up: Number(li.dataset.up) })),
      cards: [...document.querySelectorAll('article[data-interface]')].map((a) => ({
        name: a.dataset.interface, state: a.dataset.state, down: Number(a.dataset.down), up: Number(a.dataset.up),
        policy: a.querySelector('select')?.value ?? null, stateText: a.querySelector('.state')?.textContent?.trim() ?? null,
        text: a.innerText,
      })),
      connections: [...document.querySelectorAll('tr[data-connection]')].map((tr) => ({
        id: Number(tr.dataset.connection), destination: tr.dataset.destination, transport: tr.dataset.transport,
        paths: (tr.dataset.paths || '').split(' ').filter(Boolean), program: tr.dataset.program || null,
        programText: tr.querySelector('.prog')?.textContent?.trim() ?? null,
      })),
      errors: [...document.querySelectorAll('.errors .error')].map((e) => e.innerText),
      charts: [...document.querySelectorAll('.chart canvas')].map((c) => ({ width: c.width, height: c.height })),
      scroll: { width: document.documentElement.scrollWidth, client: document.documentElement.clientWidth },
    }))()`);
  },

  /** Chooses a policy in an interface card, by the select's accessible name. */
  async selectPolicy(r) {
    const select = need().getByLabel(`Policy for ${str(r, 'iface')}`, { exact: true });
    await select.selectOption(str(r, 'value'));
    return select.inputValue();
  },

  /** Types into the connections filter; returns the rows' destinations shown then. */
  async filterConnections(r) {
    await need().getByLabel('Filter connections by program or host').fill(str(r, 'text'));
    return read<string[]>(`[...document.querySelectorAll('tr[data-connection]')].map((tr) => tr.dataset.destination)`);
  },

  /** "Close the N shown" under a filter; returns the button's label. */
  async closeFiltered() {
    const button = need().getByRole('button', { name: /^Close the \d+ shown$/ });
    const label = await button.innerText();
    await button.click();
    return label;
  },

  async closeConnection(r) {
    await need().getByRole('button', { name: `Close connection to ${str(r, 'destination')}`, exact: true }).click();
    return null;
  },

  async importRelay(r) {
    const p = need();
    await p.getByLabel('Import a share link').fill(str(r, 'link'));
    await p.getByRole('button', { name: 'Import', exact: true }).click();
    const problem = p.locator('#relay-problem');
    await problem.waitFor();
    return { text: await problem.innerText(), role: await problem.getAttribute('role') };
  },

  /** Imports a share link that should be accepted; returns the relay card's text once it shows. */
  async importRelayLink(r) {
    const p = need();
    await p.getByLabel('Import a share link').fill(str(r, 'link'));
    await p.getByRole('button', { name: 'Import', exact: true }).click();
    await until(`document.querySelector('.relay-state') && !document.querySelector('#relay-problem')`);
    return read<string>(`document.querySelector('.relay-state').innerText`);
  },

  /** Clicks a control by its accessible name: a button, or another role (checkbox, …) when given. */
  async clickButton(r) {
    const role = (typeof r.role === 'string' ? r.role : 'button') as 'button' | 'checkbox';
    await need().getByRole(role, { name: str(r, 'name'), exact: true }).click();
    return null;
  },

  async toggleProxy() {
    return toggleSwitch('Proxy');
  },

  /** The "All apps" switch (transparent mode); returns its state after, and the notice under it. */
  async toggleAllApps() {
    const on = await toggleSwitch('All apps');
    const notice = await read<string[]>(`[...document.querySelectorAll('.notice')].map((n) => n.textContent.trim())`);
    return { on, notice };
  },

  /** Tab presses from a fresh focus; returns a description of each focused element. */
  async tabOrder(r) {
    const p = need();
    await p.evaluate('document.activeElement && document.activeElement.blur()');
    const out: string[] = [];
    for (let i = 0; i < num(r, 'count'); i++) {
      await p.keyboard.press('Tab');
      out.push(await read<string>(`(() => { const e = document.activeElement; if (!e) return ''; const label = e.getAttribute('aria-label') || (e.labels && e.labels[0] && e.labels[0].innerText) || e.innerText || ''; return e.tagName.toLowerCase() + (e.getAttribute('role') ? '[' + e.getAttribute('role') + ']' : '') + ' ' + label.trim().replace(/\\s+/g, ' '); })()`));
    }
    return out;
  },

  /**
   * Adds a per-destination rule with the dashboard's rule editor: `kind` host|cidr|port, `value`,
   * the paths it may use and those allowed as backup (checkbox labels). Returns the rules listed
   * afterwards and the editor's error, if it showed one.
   */
  async addRule(r) {
    const p = need();
    const form = p.getByRole('form', { name: 'Add a rule' });
    await form.getByLabel('Name').fill(str(r, 'name'));
    await form.getByLabel('What to match').selectOption(str(r, 'kind'));
    await form.getByLabel('Value to match').fill(str(r, 'value'));
    const want = (k: string): string[] => (Array.isArray(r[k]) ? (r[k] as string[]) : []);
    for (const [group, key] of [['May use', 'paths'], ['Backup only', 'backup']] as const) {
      const boxes = form.getByRole('group', { name: group }).getByRole('checkbox');
      for (let i = 0; i < (await boxes.count()); i++) {
        const box = boxes.nth(i);
        if (await box.isDisabled()) continue;
        const label = ((await box.locator('xpath=..').textContent()) ?? '').trim();
        await box.setChecked(want(key).includes(label));
      }
    }
    const before = await read<number>(`document.querySelectorAll('li[data-rule]').length`);
    await form.getByRole('button', { name: 'Add rule' }).click();
    await until(`document.querySelectorAll('li[data-rule]').length !== ${before} || document.querySelector('form[aria-label="Add a rule"] .error-text')`);
    return {
      rules: await read<string[]>(`[...document.querySelectorAll('li[data-rule]')].map((l) => l.dataset.rule)`),
      problem: await read<string | null>(`document.querySelector('form[aria-label="Add a rule"] .error-text')?.textContent ?? null`),
    };
  },

  async removeRule(r) {
    const before = await read<number>(`document.querySelectorAll('li[data-rule]').length`);
    await need().getByRole('button', { name: `Remove ${str(r, 'name')}`, exact: true }).click();
    await until(`document.querySelectorAll('li[data-rule]').length !== ${before}`);
    return read<string[]>(`[...document.querySelectorAll('li[data-rule]')].map((l) => l.dataset.rule)`);
  },

  async key(r) {
    await need().keyboard.press(str(r, 'key'));
    return null;
  },

  /** Console errors/warnings and uncaught exceptions since the last call. */
  async console() {
    return consoleProblems.splice(0);
  },

  async waitFor(r) {
    return until(str(r, 'expr'), typeof r.timeoutMs === 'number' ? r.timeoutMs : OP_TIMEOUT_MS);
  },

  async quit() {
    await shutdown(0);
    return null;
  },
};

let shuttingDown = false;
async function shutdown(code: number): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  const hard = setTimeout(() => process.exit(code), 5000);
  hard.unref();
  try {
    await browser?.close();
  } catch {
    /* already gone */
  }
  process.exit(code);
}

process.on('SIGTERM', () => void shutdown(143));
process.on('SIGINT', () => void shutdown(130));
setTimeout(() => {
  process.stderr.write(`ui-driver: lifetime of ${LIFETIME_MS} ms reached, exiting\n`);
  void shutdown(3);
}, LIFETIME_MS).unref();

const rl = readline.createInterface({ input: process.stdin });
rl.on('close', () => void shutdown(0));
// Requests run one at a time, in order.
let chain: Promise<void> = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let req: Req;
    try {
      req = JSON.parse(line) as Req;
    } catch {
      return send({ id: null, ok: false, error: 'not JSON' });
    }
    const fn = ops[req.op];
    if (!fn) return send({ id: req.id, ok: false, error: `unknown op '${req.op}'` });
    try {
      send({ id: req.id, ok: true, result: await fn(req) });
    } catch (err) {
      send({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  });
});
send({ ready: true, pid: process.pid });
