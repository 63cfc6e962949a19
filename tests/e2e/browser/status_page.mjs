// Drives Debian's chromium (headless, through playwright-core) on Lodestone's
// status page for tests/e2e/test_status_page.sh, and writes what it saw as
// JSON for the shell test to judge:
//
//   node status_page.mjs --url http://127.0.0.1:PORT/status?refresh=1 --out DIR
//                        --reload-cmd 'bash reload.sh' [--chromium /usr/bin/chromium]
//                        [--limit-s 60]
//
// 1. Loads the page and waits for its second render (rates need two scrapes);
//    every request is recorded and anything but the admin origin is refused;
//    console errors (CSP violations included), page errors and dialogs are
//    recorded; every /metrics body the page fetched is kept by the scrape
//    number the page put in its query.
// 2. Reads, in one turn of the page's event loop, the scrape number shown and
//    every table and overview value (cells as their text), and asks the
//    page's own Prometheus parser to parse hostile label values.
// 3. Screenshot: DIR/status-page.png (full page).
// 4. Auto-refresh: marks the window, runs --reload-cmd (a configuration
//    change), waits for the generation shown to change without a navigation.
// DIR/result.json holds all of it, plus the /metrics bodies of both reads.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: Object.fromEntries(['url', 'out', 'reload-cmd', 'chromium', 'limit-s'].map(k => [k, { type: 'string' }])),
});
const url = new URL(args.url);
const outDir = args.out;
const limitMs = Number(args['limit-s'] || 60) * 1000;
const killer = setTimeout(() => {
  console.error(`status_page.mjs: still running after ${limitMs / 1000} s`);
  process.exit(3);
}, limitMs);

const result = {
  requests: [], foreign_requests: [], console_errors: [], page_errors: [], dialogs: [], navigations: 0,
  metrics_bodies: {}, statuses: {},
};

// Everything the page shows, read at once so that it all comes from one scrape.
function snapshot() {
  const text = e => e.textContent;
  const tables = {};
  for (const t of document.querySelectorAll('table[id]')) {
    tables[t.id] = [...t.tBodies[0].rows].map(tr => ({
      key: tr.dataset.key ?? null,
      cls: tr.className,
      cells: Object.fromEntries([...tr.cells].map(td => [td.dataset.col ?? 'empty', text(td)])),
      classes: Object.fromEntries([...tr.cells].map(td => [td.dataset.col ?? 'empty', td.className])),
    }));
  }
  const overview = Object.fromEntries(
    [...document.querySelectorAll('#overview dd')].map(dd => [dd.dataset.key, text(dd)]));
  return {
    scrape: Number(document.body.dataset.scrape || 0), title: document.title, tables, overview,
    error_banner: document.getElementById('error').hidden ? null : text(document.getElementById('error')),
    scripts: document.querySelectorAll('script').length,
    // Any element but text inside a cell would mean markup was built from data.
    elements_in_cells: document.querySelectorAll('td *:not(span.bar)').length,
  };
}

// The page's parser on label values that need unescaping, and on lines that
// must be refused (counted, not shown).
function parserCheck() {
  const text = [
    '# HELP x_total a "help" with \\\\ and \\n',
    '# TYPE x_total counter',
    'x_total{certificate="a\\\\b\\"c\\nd",other="<script>alert(1)</script>"} 7',
    'x_total{certificate="plain"} 1.5e3',
    'x_total{certificate="inf"} +Inf',
    'y{a="1",} 2 1712345678000',
    'bad{a="unterminated} 1',
    'bad{a="x\\q"} 1',
    'bad{a="1",a="2"} 1',
    'bad 1 2 3',
    'bad{a="1"}2',
    'bad notanumber',
  ].join('\n');
  const m = window.lodeStatus.parseMetrics(text);
  return {
    errors: m.errors,
    names: [...m.byName.keys()],
    x: (m.byName.get('x_total') || []).map(s => ({ labels: Object.fromEntries(s.labels), value: String(s.value) })),
    y: (m.byName.get('y') || []).map(s => ({ labels: Object.fromEntries(s.labels), value: s.value })),
  };
}

const browser = await chromium.launch({
  executablePath: args.chromium || '/usr/bin/chromium',
  headless: true,
  // CI runs as root, where chromium refuses to start with its sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1000 }, serviceWorkers: 'block' });
  // Nothing but the admin address: anything else is recorded and refused.
  await context.route('**/*', route => {
    const u = new URL(route.request().url());
    if (u.origin === url.origin || u.protocol === 'data:') return route.continue();
    result.foreign_requests.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', msg => { if (msg.type() === 'error') result.console_errors.push(msg.text()); });
  page.on('pageerror', e => result.page_errors.push(String(e)));
  page.on('dialog', d => { result.dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('framenavigated', f => { if (f === page.mainFrame()) result.navigations++; });
  page.on('request', r => result.requests.push(`${r.method()} ${r.url()}`));
  page.on('response', async r => {
    const u = new URL(r.url());
    result.statuses[u.pathname] = r.status();
    if (u.pathname !== '/metrics') return;
    try {
      result.metrics_bodies[u.searchParams.get('scrape') ?? 'none'] = await r.text();
    } catch (e) {
      result.page_errors.push(`reading a /metrics body: ${e}`);
    }
  });

  const response = await page.goto(url.href, { waitUntil: 'load' });
  result.page_status = response.status();
  result.page_headers = await response.allHeaders();
  await page.waitForFunction(() => Number(document.body.dataset.scrape || 0) >= 2, null, { timeout: 20000 });

  result.first = await page.evaluate(snapshot);
  result.parser = await page.evaluate(parserCheck);
  result.screenshot = `${outDir}/status-page.png`;
  await page.screenshot({ path: result.screenshot, fullPage: true });

  // Auto-refresh: the same window (marker kept, no navigation) shows the
  // generation a configuration change made.
  const generation = result.first.overview.generation;
  await page.evaluate(() => { window.lodeMarker = 'kept'; });
  const navigationsBefore = result.navigations;
  execFileSync('bash', ['-c', args['reload-cmd']], { stdio: 'inherit', timeout: 15000 });
  try {
    await page.waitForFunction(
      g => document.querySelector('#overview dd[data-key="generation"]')?.textContent !== g, generation,
      { timeout: 20000 });
  } catch (e) {
    result.refresh_error = String(e).split('\n')[0];
  }
  result.second = await page.evaluate(snapshot);
  result.marker = await page.evaluate(() => window.lodeMarker ?? null);
  result.navigations_during_refresh = result.navigations - navigationsBefore;
  await page.screenshot({ path: `${outDir}/status-page-after-reload.png`, fullPage: true });
} catch (e) {
  result.driver_error = String(e && e.stack ? e.stack : e);
  exitCode = 2;
} finally {
  // Only the bodies the reads came from (their reading may still be under way).
  const keep = [result.first?.scrape, result.second?.scrape].filter(n => n !== undefined).map(String);
  for (let i = 0; i < 50 && !keep.every(k => k in result.metrics_bodies); i++) {
    await new Promise(r => setTimeout(r, 100));
  }
  await browser.close().catch(() => {});
  result.metrics_bodies = Object.fromEntries(Object.entries(result.metrics_bodies).filter(([k]) => keep.includes(k)));
  writeFileSync(`${outDir}/result.json`, JSON.stringify(result, null, 1));
  clearTimeout(killer);
}
process.exit(exitCode);
