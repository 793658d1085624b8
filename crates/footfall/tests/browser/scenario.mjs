// Browser scenario for tests/browser.rs, run by Node with Debian's Chromium driven through
// playwright-core. It serves two small test sites itself (shop.test with Footfall's
// script, news.test with the official @plausible-analytics/tracker package), browses them
// as three visitors, then signs in to the dashboard and reads what it shows. It prints one
// JSON object of observations on stdout; the Rust test holds the expected values.
//
// Environment: FOOTFALL_PORT (the server on 127.0.0.1), KEY (an API key for the sites),
// NODE_DEPS (the directory holding node_modules), ARTIFACTS (where screenshots go), MODE:
// "browse" (visit the test sites), "dashboard" (read the dashboard of shop.test and
// news.test) or "xss" (read the dashboard of xss.test and export its panels as CSV).
import { createServer } from 'node:http';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const { FOOTFALL_PORT, KEY, NODE_DEPS, ARTIFACTS, MODE } = process.env;
const { chromium } = await import(pathToFileURL(join(NODE_DEPS, 'node_modules/playwright-core/index.mjs')).href);
const trackerPath = join(NODE_DEPS, 'node_modules/@plausible-analytics/tracker/plausible.js');
mkdirSync(ARTIFACTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const FOOTFALL = `http://footfall.test:${FOOTFALL_PORT}`;

// ---- the test sites -----------------------------------------------------------------------

const shopPage = (port) => `<!doctype html><html><head><title>Shop</title>
<script defer src="${FOOTFALL}/js/script.js" data-domain="shop.test" data-outbound-links data-file-downloads></script>
<script defer src="/app.js"></script></head><body>
<a id="to-pricing" href="/pricing">Pricing</a>
<button id="signup">Sign up</button>
<a id="report" href="/files/report.pdf">Annual report</a>
<a id="out" href="http://elsewhere.test:${port}/landing">Partner</a>
</body></html>`;

const shopApp = `document.getElementById('to-pricing').addEventListener('click', (e) => {
  e.preventDefault();
  history.pushState({}, '', '/pricing');
});
document.getElementById('signup').addEventListener('click', () => {
  footfall('Signup', { props: { plan: 'pro' }, revenue: { amount: '9.99', currency: 'EUR' } });
});`;

const newsPage = `<!doctype html><html><head><title>News</title>
<script type="module">
  // Playwright sets navigator.webdriver, which the official tracker treats as a bot unless
  // window.__plausible is set (as Plausible's own tests do).
  window.__plausible = true;
  const { init, track } = await import('/plausible.js');
  init({ domain: 'news.test', endpoint: '${FOOTFALL}/api/event' });
  document.getElementById('next').addEventListener('click', () => history.pushState({}, '', '/article'));
  document.getElementById('sub').addEventListener('click', () => track('Subscribe', { props: { tier: 'gold' } }));
  document.body.dataset.ready = 'true';
</script></head><body>
<button id="next">Next article</button>
<button id="sub">Subscribe</button>
</body></html>`;

const server = createServer((req, res) => {
  const host = (req.headers.host || '').split(':')[0];
  const path = req.url.split('?')[0];
  const send = (type, body, extra = {}) => { res.writeHead(200, { 'Content-Type': type, ...extra }); res.end(body); };
  if (host === 'shop.test') {
    if (path === '/app.js') return send('text/javascript', shopApp);
    if (path === '/files/report.pdf') return send('application/pdf', '%PDF-1.4\n%%EOF\n', { 'Content-Disposition': 'attachment; filename="report.pdf"' });
    return send('text/html', shopPage(server.address().port));
  }
  if (host === 'news.test') {
    if (path === '/plausible.js') return send('text/javascript', readFileSync(trackerPath));
    return send('text/html', newsPage);
  }
  return send('text/html', '<!doctype html><title>Elsewhere</title><p>Partner site</p>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const SITE_PORT = server.address().port;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // The sites, the partner and Footfall are different origins, as in production.
    '--host-resolver-rules=MAP shop.test 127.0.0.1, MAP news.test 127.0.0.1, MAP elsewhere.test 127.0.0.1, MAP footfall.test 127.0.0.1',
  ],
});

const UA = {
  linuxChrome: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  iphone: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  windowsFirefox: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0',
};

const out = { dialogs: [] };

/**
 * Counts the requests to the collector that pages of the context issued and those that got
 * their answer; `wait(n)` waits (up to 10 s) until `n` were answered, `wait(n, false)` until
 * `n` were issued (for the outbound-link event: a keepalive fetch that outlives its page, whose
 * answer the page no longer sees).
 */
function countCollectorRequests(context) {
  const seen = { issued: 0, answered: 0 };
  const ours = (r) => r.url().startsWith(`${FOOTFALL}/api/event`);
  context.on('request', (r) => { if (ours(r)) seen.issued += 1; });
  context.on('requestfinished', (r) => { if (ours(r)) seen.answered += 1; });
  return async (n, answered = true) => {
    const count = () => (answered ? seen.answered : seen.issued);
    for (let i = 0; i < 100 && count() < n; i++) await sleep(100);
    return count();
  };
}

async function browse() {
  // Visitor A: desktop Chrome, from a newsletter; a pageview, an SPA navigation, a custom
  // event with revenue, a file download and an outbound link click.
  const a = await browser.newContext({ userAgent: UA.linuxChrome, acceptDownloads: true });
  const sentA = countCollectorRequests(a);
  const pa = await a.newPage();
  await pa.goto(`http://shop.test:${SITE_PORT}/?utm_source=newsletter`);
  await sentA(1);
  await pa.click('#to-pricing');
  await sentA(2);
  await pa.click('#signup');
  await sentA(3);
  const download = pa.waitForEvent('download');
  await pa.click('#report');
  await download;
  await sentA(4);
  await Promise.all([pa.waitForURL(/elsewhere\.test/), pa.click('#out')]);
  out.shopRequestsA = await sentA(5, false);
  // The keepalive request's answer is not visible to the test: give it time to arrive before
  // the context closes. The dashboard then shows whether it did (the Outbound Link goal).
  await sleep(1500);
  await a.close();

  // Visitor B: an iPhone arriving from Google; one pageview (a bounce).
  const b = await browser.newContext({ userAgent: UA.iphone, viewport: { width: 390, height: 844 } });
  const sentB = countCollectorRequests(b);
  const pb = await b.newPage();
  await pb.goto(`http://shop.test:${SITE_PORT}/`, { referer: 'https://www.google.com/' });
  out.shopRequestsB = await sentB(1);
  await b.close();

  // Visitor C: the official Plausible tracker on news.test; two pageviews and an event.
  const c = await browser.newContext({ userAgent: UA.windowsFirefox });
  const sentC = countCollectorRequests(c);
  const pc = await c.newPage();
  await pc.goto(`http://news.test:${SITE_PORT}/`);
  await pc.waitForSelector('body[data-ready="true"]');
  await sentC(1);
  await pc.click('#next');
  await sentC(2);
  await pc.click('#sub');
  out.newsRequests = await sentC(3);
  await c.close(); // may send an engagement event, which counts in no metric
}

async function dashboard(site, actions, viewport = { width: 1280, height: 1600 }) {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport });
  const page = await ctx.newPage();
  page.on('dialog', async (d) => { out.dialogs.push(d.message()); await d.dismiss(); });
  page.on('pageerror', (e) => { (out.pageErrors ||= []).push(String(e)); });
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
  await page.goto(`${FOOTFALL}/?site=${encodeURIComponent(site)}&period=day&interval=hour`);
  await page.fill('#key', KEY);
  const signedIn = Date.now();
  await page.press('#key', 'Enter');
  const settled = async () => {
    await page.waitForSelector('body[data-loading="false"]');
    await page.waitForFunction(() => document.querySelectorAll("[data-panel]").length === 7);
  };
  await settled();
  out.loadMs = Math.max(out.loadMs || 0, Date.now() - signedIn);
  const read = () => page.evaluate(() => {
    const cards = {};
    for (const el of document.querySelectorAll('.card .value')) cards[el.dataset.metric] = el.textContent;
    const panels = {};
    for (const p of document.querySelectorAll('[data-panel]')) {
      panels[p.dataset.panel] = [...p.querySelectorAll('tr[data-row]')].map((tr) => [
        tr.dataset.row, ...[...tr.querySelectorAll('td.num')].map((td) => td.textContent)]);
    }
    const series = [...document.querySelectorAll('table[data-series] tr')].slice(1)
      .map((tr) => [...tr.children].map((td) => td.textContent));
    return {
      cards, panels, series,
      filters: [...document.querySelectorAll('#filters button')].map((b) => b.textContent),
      freshness: document.getElementById('freshness').textContent,
      realtime: document.getElementById('realtime').dataset.visitors || null,
      url: location.search,
      error: document.getElementById('error').textContent,
    };
  });
  const result = await actions({ page, read, settled });
  result.cspViolations = cspViolations;
  await ctx.close();
  return result;
}

if (MODE === 'browse') {
  await browse();
} else if (MODE === 'dashboard') {
  out.shop = await dashboard('shop.test', async ({ page, read, settled }) => {
    const r = {};
    // The realtime panel polls on its own; wait for its first answer.
    await page.waitForFunction(() => document.getElementById('realtime').dataset.visitors !== undefined);
    r.initial = await read();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-shop.png'), fullPage: true });
    // A click on a page row filters the whole dashboard.
    await page.click('[data-panel="pages"] tr[data-row="/pricing"] button');
    await settled();
    r.pageFilter = await read();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-shop-filtered.png'), fullPage: true });
    // The state lives in the URL: a fresh load of it shows the same filtered view.
    const shared = page.url();
    await page.goto(shared);
    await settled();
    r.reloaded = await read();
    // Removing the chip, then filtering by device from the devices panel.
    await page.click('#filters button');
    await settled();
    await page.click('[data-panel="devices"] tr[data-row="Mobile"] button');
    await settled();
    r.deviceFilter = await read();
    // Keyboard: the chip can be removed with Tab + Enter.
    await page.focus('#filters button');
    await page.keyboard.press('Enter');
    await settled();
    r.afterKeyboard = await read();
    // Comparison with the previous period.
    await page.check('#compare');
    await settled();
    r.compared = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-change]')].map((e) => [e.dataset.change, e.textContent])));
    return r;
  });
  out.news = await dashboard('news.test', async ({ read }) => ({ initial: await read() }));
  // The same view on a phone-sized screen, for the eye (the layout falls to one column).
  out.phone = await dashboard('shop.test', async ({ page, read }) => {
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
    return { width: await page.evaluate(() => document.documentElement.scrollWidth), view: await read() };
  }, { width: 390, height: 844 });
} else if (MODE === 'xss') {
  out.xss = await dashboard('xss.test', async ({ page, read, settled }) => {
    const r = { view: await read() };
    await page.fill('[data-prop-form] input', 'note');
    await page.press('[data-prop-form] input', 'Enter');
    await page.waitForSelector('[data-panel="props"] tr[data-row]');
    r.props = await read();
    await page.click('[data-panel="sources"] button:text-is("Sources")');
    await settled();
    // The tab's rows arrive with their own request, which `settled` may see before it starts.
    await page.waitForSelector('[data-panel="sources"] tr[data-row]');
    r.sources = await read();
    r.injected = await page.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      script: document.querySelectorAll('script:not([src])').length,
      svgOnload: document.querySelectorAll('svg[onload], [onerror], [onload]').length,
      bold: document.querySelectorAll('#panels b').length,
    }));
    const csv = async (panel) => {
      const dl = page.waitForEvent('download');
      await page.click(`[data-csv="${panel}"]`);
      return readFileSync(await (await dl).path(), 'utf8');
    };
    r.csvSources = await csv('sources');
    r.csvGoals = await csv('goals');
    r.csvPages = await csv('pages');
    r.csvProps = await csv('props');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-xss.png'), fullPage: true });
    return r;
  });
}

await browser.close();
server.close();
process.stdout.write(`${JSON.stringify(out)}\n`);
