// The dashboard in a real browser: opens the api-server's page in headless Chromium and checks
// what a person would see against what the JSON API answers at about the same time.
//
//   node dashboard.test.mjs <dashboard-url> --panels A,B,C --screenshot <file.png>
//
// Chromium is `$CHROMIUM` (default /usr/bin/chromium), driven by playwright-core (`npm ci` in
// this directory installs it; it never downloads a browser). Started by
// crates/api-server/tests/browser.rs, which runs the pipeline behind the URL; it can also be
// pointed at any running api-server whose publisher sends a reading every few seconds.
//
// The figures change with every reading, so the page is never compared with one API answer
// fetched at some other moment. The script keeps fetching the API in the background and keeps
// the answers of the last minute; the page must show exactly what one of them said (the page
// refreshes its figures on its own schedule, so it shows the answer it fetched itself, which
// the background fetches saw too: the server caches an answer for a second). Checks wait and
// look again until the page agrees or their time is up, then say what differed.
//
// Prints one line per check; exits 0 when all pass, 1 at the first failure (after saving a
// screenshot of the page as it was), 2 on bad arguments.

import { access, constants } from 'node:fs/promises';
import { parseArgs } from 'node:util';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
// How often the background fetches ask the API, and how long their answers are kept.
const API_POLL_MS = 400;
const API_HISTORY_MS = 60_000;
// The whole run; the Rust test gives the process a little more.
const RUN_TIMEOUT_MS = 150_000;

// ---- arguments ------------------------------------------------------------------------------

function usage(message) {
  console.error(`${message}\nusage: node dashboard.test.mjs <dashboard-url> --panels A,B,C --screenshot <file.png>`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: { panels: { type: 'string' }, screenshot: { type: 'string' } },
  });
} catch (error) {
  usage(error.message);
}
const [dashboardUrl] = parsed.positionals;
if (!dashboardUrl || parsed.positionals.length !== 1) usage('give exactly one dashboard URL');
if (!parsed.values.panels) usage('--panels is required');
if (!parsed.values.screenshot) usage('--screenshot is required');
const expectedPanels = parsed.values.panels.split(',').filter(Boolean).sort();
const screenshotPath = parsed.values.screenshot;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

// ---- what the page should show --------------------------------------------------------------

// The page's own number format (en-US, fixed decimals): the spec of what a figure looks like.
const formats = new Map();
function fixed(value, decimals) {
  if (!formats.has(decimals)) {
    formats.set(decimals, new Intl.NumberFormat('en-US', {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    }));
  }
  return formats.get(decimals).format(value);
}
const money = (currency, value) => `${currency} ${fixed(value, 2)}`;

// Differences between `actual` and `expected` (objects of plain values), one per line.
function differences(actual, expected, prefix = '') {
  const lines = [];
  for (const key of Object.keys(expected)) {
    const a = actual === undefined || actual === null ? undefined : actual[key];
    const e = expected[key];
    if (e !== null && typeof e === 'object') {
      lines.push(...differences(a, e, `${prefix}${key}.`));
    } else if (a !== e) {
      lines.push(`${prefix}${key}: page ${JSON.stringify(a)}, API ${JSON.stringify(e)}`);
    }
  }
  return lines;
}

// The differences to whichever of `candidates` is closest to `actual` (none when one matches):
// the answer the page most likely shows, so only what is really wrong is reported.
function closest(actual, candidates) {
  let best = null;
  for (const expected of candidates) {
    const lines = differences(actual, expected);
    if (lines.length === 0) return [];
    if (best === null || lines.length < best.length) best = lines;
  }
  return best ?? ['nothing to compare with'];
}

function expectedCard(panel, today, currency) {
  const card = {
    panel: panel.panel,
    title: panel.panel,
    dataStatus: panel.status,
    status: panel.status,
    power: fixed(panel.power_kw, 2),
    powerValue: panel.power_kw,
    energy: fixed(panel.energy_kwh, 3),
    energyValue: panel.energy_kwh,
    lastSeen: panel.last_seen,
  };
  if (today) {
    card.todayUsage = fixed(today.usage_kwh, 3);
    card.todayUsageValue = today.usage_kwh;
    card.todayCost = money(currency, today.cost);
  }
  return card;
}

// The realtime fields of one card.
function realtimeOf(card) {
  const { panel, title, dataStatus, status, power, powerValue, energy, energyValue, lastSeen } = card;
  return { panel, title, dataStatus, status, power, powerValue, energy, energyValue, lastSeen };
}

// Today's part of the page as one today-usage answer would draw it.
function expectedToday(body) {
  return {
    date: `(${body.date})`,
    totalUsage: fixed(body.total.usage_kwh, 3),
    totalUsageValue: body.total.usage_kwh,
    totalCost: money(body.currency, body.total.cost),
    cards: Object.fromEntries(body.panels.map((panel) => [panel.panel, {
      todayUsage: fixed(panel.usage_kwh, 3),
      todayUsageValue: panel.usage_kwh,
      todayCost: money(body.currency, panel.cost),
    }])),
  };
}

function todayOf(state) {
  return {
    date: state.todayDate,
    totalUsage: state.totalUsage,
    totalUsageValue: state.totalUsageValue,
    totalCost: state.totalCost,
    cards: Object.fromEntries(state.cards.map((card) => [card.panel, {
      todayUsage: card.todayUsage,
      todayUsageValue: card.todayUsageValue,
      todayCost: card.todayCost,
    }])),
  };
}

// The monthly charts as one monthly answer would draw them.
function expectedCharts(body) {
  return Object.fromEntries(body.panels.map((panel) => [panel.panel, {
    year: String(body.year),
    yearTotal: fixed(panel.total_kwh, 3),
    yearCost: money(body.currency, panel.total_cost),
    months: Object.fromEntries(panel.months.map((month) => [month.month, month.usage_kwh])),
  }]));
}

function chartsOf(state) {
  return Object.fromEntries(state.charts.map((chart) => [chart.panel, {
    year: chart.year,
    yearTotal: chart.yearTotal,
    yearCost: chart.yearCost,
    months: Object.fromEntries(chart.bars.map((bar) => [bar.month, bar.value])),
  }]));
}

// ---- the API, asked in the background -------------------------------------------------------

class ApiHistory {
  constructor(path) {
    this.url = new URL(path, dashboardUrl).href;
    this.answers = []; // {at, body}, oldest first
    this.lastError = null;
  }

  async fetch() {
    const response = await fetch(this.url, { headers: { Accept: 'application/json' } });
    const body = await response.json();
    if (!response.ok) throw new Error(`GET ${this.url}: ${response.status} ${JSON.stringify(body)}`);
    const now = Date.now();
    this.answers.push({ at: now, body });
    while (this.answers.length > 0 && this.answers[0].at < now - API_HISTORY_MS) this.answers.shift();
    return body;
  }

  latest() {
    return this.answers.length > 0 ? this.answers[this.answers.length - 1].body : null;
  }

  // The answers of the last `ms` milliseconds, newest first.
  recent(ms) {
    const since = Date.now() - ms;
    return this.answers.filter((answer) => answer.at >= since).map((answer) => answer.body).reverse();
  }

  start() {
    let stopped = false;
    const loop = async () => {
      while (!stopped) {
        try {
          await this.fetch();
          this.lastError = null;
        } catch (error) {
          this.lastError = error;
        }
        await sleep(API_POLL_MS);
      }
    };
    const running = loop();
    return async () => {
      stopped = true;
      await running;
    };
  }
}

const realtime = new ApiHistory('/api/panel/realtime');
const todayUsage = new ApiHistory('/api/panel/today-usage');
const monthly = new ApiHistory('/api/energy/monthly');

// ---- running the checks ---------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class CheckFailed extends Error {}

// Calls `probe` until it returns no differences (an empty list or nothing); after `timeoutMs`
// fails with the last differences it returned.
async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const problems = await probe();
    if (!problems || problems.length === 0) return;
    if (Date.now() >= deadline) {
      throw new CheckFailed(`${what}: still not so after ${timeoutMs / 1000} s:\n  ${[].concat(problems).join('\n  ')}`);
    }
    await sleep(250);
  }
}

function pass(what) {
  console.log(`ok   ${what}`);
}

// Everything the checks look at, read from the page in one go.
function readPage(page) {
  return page.evaluate(() => {
    const field = (name, root = document) => root.querySelector(`[data-field="${name}"]`);
    const text = (element) => (element ? element.textContent.trim() : null);
    const value = (element) => (element && element.hasAttribute('data-value')
      ? Number(element.getAttribute('data-value')) : null);
    const connection = field('connection');
    return {
      sameDocument: window.__dashboardTestMarker === true,
      connectionState: connection.getAttribute('data-state'),
      connectionText: text(connection),
      cards: [...document.querySelectorAll('#cards > [data-panel]')].map((card) => ({
        panel: card.getAttribute('data-panel'),
        visible: card.checkVisibility(),
        title: text(field('panel', card)),
        dataStatus: card.getAttribute('data-status'),
        status: text(field('status', card)),
        power: text(field('power_kw', card)),
        powerValue: value(field('power_kw', card)),
        energy: text(field('energy_kwh', card)),
        energyValue: value(field('energy_kwh', card)),
        lastSeen: field('last_seen', card).getAttribute('datetime'),
        age: text(field('last_seen', card)),
        todayUsage: text(field('today_usage_kwh', card)),
        todayUsageValue: value(field('today_usage_kwh', card)),
        todayCost: text(field('today_cost', card)),
      })),
      todayDate: text(field('today_date')),
      totalUsage: text(field('total_usage_kwh')),
      totalUsageValue: value(field('total_usage_kwh')),
      totalCost: text(field('total_cost')),
      timezone: text(field('timezone')),
      tariff: text(field('tariff')),
      currency: text(field('currency')),
      offlineAfter: text(field('offline_after')),
      errors: ['today_error', 'monthly_error'].map((name) => text(field(name))).filter(Boolean),
      charts: [...document.querySelectorAll('#charts > [data-panel]')].map((chart) => ({
        panel: chart.getAttribute('data-panel'),
        visible: chart.checkVisibility(),
        year: text(field('year', chart)),
        yearTotal: text(field('year_total_kwh', chart)),
        yearCost: text(field('year_total_cost', chart)),
        bars: [...chart.querySelectorAll('svg rect.bar')].map((bar) => ({
          month: Number(bar.getAttribute('data-month')),
          value: Number(bar.getAttribute('data-value')),
          height: Number(bar.getAttribute('height')),
        })),
        tableRows: chart.querySelectorAll('tbody tr').length,
      })),
    };
  });
}

// Each expected panel's card must show that panel's state from one realtime answer of the last
// `withinMs`. Returns the differences against the newest answer when none fits.
function realtimeDifferences(state, withinMs) {
  const answers = realtime.recent(withinMs);
  if (answers.length === 0) return [`no realtime answer from the API yet (${realtime.lastError})`];
  const problems = [];
  for (const id of expectedPanels) {
    const card = state.cards.find((c) => c.panel === id);
    if (!card) {
      problems.push(`no card for ${id}`);
      continue;
    }
    const shown = realtimeOf(card);
    const candidates = answers
      .map((body) => body.panels.find((panel) => panel.panel === id))
      .filter(Boolean)
      .map((panel) => expectedCard(panel));
    if (candidates.length === 0) {
      problems.push(`the API does not list ${id}`);
    } else {
      problems.push(...closest(shown, candidates).map((line) => `${id} ${line}`));
    }
  }
  return problems;
}

// ---- the test -------------------------------------------------------------------------------

async function run(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const faults = []; // console errors, uncaught exceptions, failed requests
  const requests = [];
  let navigations = 0;
  page.on('console', (message) => {
    if (message.type() === 'error') faults.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => faults.push(`uncaught exception: ${error.message}`));
  page.on('requestfailed', (request) => {
    // The stream is aborted when the page closes; anything else failing is a fault.
    if (!request.url().endsWith('/api/panel/stream')) {
      faults.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
    }
  });
  page.on('response', (response) => {
    if (response.status() >= 400) faults.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  page.on('request', (request) => requests.push(new URL(request.url()).pathname));
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  const requestsTo = (path) => requests.filter((p) => p === path).length;

  try {
    const response = await page.goto(dashboardUrl, { waitUntil: 'load' });
    if (!response || response.status() !== 200) {
      throw new CheckFailed(`GET ${dashboardUrl} answered ${response && response.status()}`);
    }
    await page.evaluate(() => {
      window.__dashboardTestMarker = true;
    });
    pass(`the page loads (${dashboardUrl})`);

    let state;
    await waitFor('the page says it is live', 20_000, async () => {
      state = await readPage(page);
      return state.connectionState === 'live' && state.connectionText === 'Live'
        ? [] : [`connection state ${state.connectionState}: ${JSON.stringify(state.connectionText)}`];
    });
    pass('the connection state says "Live"');

    await waitFor('one visible card per panel, sorted by id', 20_000, async () => {
      state = await readPage(page);
      const shown = state.cards.map((card) => card.panel);
      const problems = [];
      if (JSON.stringify(shown) !== JSON.stringify(expectedPanels)) {
        problems.push(`cards ${JSON.stringify(shown)}, publisher's panels ${JSON.stringify(expectedPanels)}`);
      }
      const hidden = state.cards.filter((card) => !card.visible).map((card) => card.panel);
      if (hidden.length > 0) problems.push(`hidden cards: ${hidden.join(', ')}`);
      const listed = (realtime.latest()?.panels ?? []).map((panel) => panel.panel);
      if (JSON.stringify(listed) !== JSON.stringify(expectedPanels)) {
        problems.push(`the API lists ${JSON.stringify(listed)}`);
      }
      return problems;
    });
    pass(`a card per panel: ${expectedPanels.join(', ')}`);

    await waitFor('every card shows what /api/panel/realtime says', 20_000, async () => {
      state = await readPage(page);
      const problems = realtimeDifferences(state, 15_000);
      for (const card of state.cards) {
        if (card.status !== 'ONLINE') problems.push(`${card.panel} is ${card.status}`);
      }
      return problems;
    });
    pass('every card shows status, power, energy and last reading as /api/panel/realtime does');

    await waitFor('each card\'s "last seen" counts from its last reading', 10_000, async () => {
      state = await readPage(page);
      const problems = [];
      for (const card of state.cards) {
        const match = /^(\d+) s ago$/.exec(card.age ?? '');
        const actual = (Date.now() - Date.parse(card.lastSeen)) / 1000;
        if (!match || Math.abs(Number(match[1]) - actual) > 3) {
          problems.push(`${card.panel} says ${JSON.stringify(card.age)}; its reading is ${actual.toFixed(1)} s old`);
        }
      }
      return problems;
    });
    pass('each card\'s "last seen" counts from its last reading');

    // A new reading, without reloading, through the stream.
    const first = state.cards[0];
    await waitFor(`a new reading of ${first.panel} appears without a reload`, 20_000, async () => {
      state = await readPage(page);
      const card = state.cards.find((c) => c.panel === first.panel);
      return card && Date.parse(card.lastSeen) > Date.parse(first.lastSeen) && card.energyValue !== first.energyValue
        ? [] : [`${first.panel} still shows ${card?.energy} kWh, last seen ${card?.lastSeen}`];
    });
    const updated = state.cards.find((c) => c.panel === first.panel);
    const live = [];
    if (!state.sameDocument || navigations !== 1) live.push(`the page was reloaded (${navigations} navigations)`);
    if (state.connectionState !== 'live') live.push(`connection state ${state.connectionState}: ${state.connectionText}`);
    if (requestsTo('/api/panel/stream') < 1) live.push('the page never opened /api/panel/stream');
    // The page polls /api/panel/realtime only while the stream is down.
    if (requestsTo('/api/panel/realtime') > 0) {
      live.push(`the page fell back to polling /api/panel/realtime ${requestsTo('/api/panel/realtime')} times`);
    }
    if (live.length > 0) throw new CheckFailed(`the new reading did not come through the live stream:\n  ${live.join('\n  ')}`);
    pass(`a new reading appears without a reload, through the live stream: ${first.panel} `
      + `${first.energy} -> ${updated.energy} kWh, last seen ${first.lastSeen} -> ${updated.lastSeen}`);

    await waitFor('the new readings match /api/panel/realtime', 20_000, async () => {
      state = await readPage(page);
      return realtimeDifferences(state, 15_000);
    });
    pass('the updated cards match /api/panel/realtime');

    // Today's figures: the page refreshes them a few seconds after a reading.
    await waitFor("today's figures are those of /api/panel/today-usage", 30_000, async () => {
      state = await readPage(page);
      const answers = todayUsage.recent(API_HISTORY_MS);
      if (answers.length === 0) return [`no today-usage answer from the API yet (${todayUsage.lastError})`];
      return closest(todayOf(state), answers.map(expectedToday));
    });
    pass("every card's usage and cost today and the totals are those of /api/panel/today-usage");

    await waitFor('the footer shows the time zone, tariff, currency and offline rule', 10_000, async () => {
      state = await readPage(page);
      const today = todayUsage.latest();
      const offline = realtime.latest().offline_after_secs;
      return differences(state, {
        timezone: today.timezone,
        currency: today.currency,
        tariff: `${today.currency} ${fixed(today.tariff_per_kwh, 2)} per kWh`,
        offlineAfter: offline % 60 === 0 ? `${offline / 60} min without a reading` : `${offline} s without a reading`,
      });
    });
    pass(`the footer shows ${state.timezone}, ${state.tariff}, ${state.currency}, offline after ${state.offlineAfter}`);

    await waitFor('the monthly chart has 12 bars per panel with the figures of /api/energy/monthly', 30_000, async () => {
      state = await readPage(page);
      const problems = [];
      const shown = state.charts.map((chart) => chart.panel);
      if (JSON.stringify(shown) !== JSON.stringify(expectedPanels)) {
        problems.push(`charts ${JSON.stringify(shown)}, publisher's panels ${JSON.stringify(expectedPanels)}`);
      }
      for (const chart of state.charts) {
        const months = chart.bars.map((bar) => bar.month);
        if (JSON.stringify(months) !== JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])) {
          problems.push(`${chart.panel}: ${chart.bars.length} bars for months ${JSON.stringify(months)}`);
        }
        if (chart.tableRows !== 12) problems.push(`${chart.panel}: ${chart.tableRows} table rows`);
        if (!chart.visible) problems.push(`${chart.panel}: the chart is hidden`);
        // Heights follow the values: nothing drawn for 0, the tallest bar for the largest month.
        const tallest = Math.max(...chart.bars.map((bar) => bar.value));
        for (const bar of chart.bars) {
          if ((bar.value > 0) !== (bar.height > 0)) {
            problems.push(`${chart.panel} month ${bar.month}: ${bar.value} kWh drawn ${bar.height} high`);
          }
          if (tallest > 0 && bar.value === tallest && bar.height < Math.max(...chart.bars.map((b) => b.height))) {
            problems.push(`${chart.panel} month ${bar.month}: the largest month is not the tallest bar`);
          }
        }
      }
      const answers = monthly.recent(API_HISTORY_MS);
      if (answers.length === 0) return [...problems, `no monthly answer from the API yet (${monthly.lastError})`];
      return [...problems, ...closest(chartsOf(state), answers.map(expectedCharts))];
    });
    const withData = state.charts[0].bars.filter((bar) => bar.value > 0).length;
    pass(`the monthly chart has 12 bars per panel with the figures of /api/energy/monthly `
      + `(${withData} months with usage for ${state.charts[0].panel} in ${state.charts[0].year})`);

    if (state.errors.length > 0) throw new CheckFailed(`the page shows errors: ${state.errors.join('; ')}`);
    if (faults.length > 0) throw new CheckFailed(`the page had faults:\n  ${faults.join('\n  ')}`);
    pass('no console error, uncaught exception, failed request or error message on the page');
  } finally {
    // Also when a check failed: the picture usually shows why.
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`screenshot ${screenshotPath}`);
  }
}

async function main() {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (error) {
    throw new CheckFailed(`playwright-core is not installed (${error.code ?? error.message}): run \`npm ci\` in tests/browser (scripts/test.sh does)`);
  }
  try {
    await access(chromiumPath, constants.X_OK);
  } catch {
    throw new CheckFailed(`no Chromium at ${chromiumPath}: install Debian's \`chromium\` package (scripts/install-services.sh --for-tests does) or set CHROMIUM`);
  }
  const stops = [realtime, todayUsage, monthly].map((history) => history.start());
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
  try {
    console.log(`chromium ${browser.version()}, node ${process.version}`);
    await run(browser);
  } finally {
    await browser.close();
    await Promise.all(stops.map((stop) => stop()));
  }
}

const timer = setTimeout(() => {
  console.error(`FAIL the browser test did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS);
const started = Date.now();
main().then(
  () => {
    clearTimeout(timer);
    console.log(`all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
  (error) => {
    clearTimeout(timer);
    console.error(`FAIL ${error instanceof CheckFailed ? error.message : error.stack}`);
    process.exitCode = 1;
  },
);
