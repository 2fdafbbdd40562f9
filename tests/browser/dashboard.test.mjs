// The dashboard in a real browser: opens the api-server's page in headless Chromium and checks
// what a person would see against what the JSON API answers at about the same time.
//
//   node dashboard.test.mjs <dashboard-url> --panels A,B,C --screenshot <file.png>
//       [--bill-pdf <file.pdf>]
//       [--token-url <url of an api-server with API_TOKEN set>]   (the token in $DASHBOARD_TOKEN)
//
// Chromium is `$CHROMIUM` (default /usr/bin/chromium), driven by playwright-core (`npm ci` in
// this directory installs it; it never downloads a browser); the printed bill is read back with
// pdfjs-dist. Started by
// crates/api-server/tests/browser.rs, which runs the pipeline behind the URL; it can also be
// pointed at any running api-server whose publisher sends a reading every few seconds.
//
// The figures change with every reading, so the page is never compared with one API answer
// fetched at some other moment. The script keeps fetching the API in the background and keeps
// the answers of the last minute; the page must show exactly what one of them said (the page
// refreshes its figures on its own schedule, so it shows the answer it fetched itself, which
// the background fetches saw too: the server caches an answer for a second). Checks wait and
// look again until the page agrees or their time is up, then say what differed. A CSV file is
// compared with the JSON answer read just before and just after it, and read again when those
// two differ (a reading arrived meanwhile).
//
// What each tariff charges now and each cost's split by tariff window are compared with
// /api/panel/today-usage like the other figures of today. The bill page is opened through the
// navigation: it must show the last whole month's bills of /api/bill, line by line, download
// its CSV file, hide everything but the bills in print media, and print (page.pdf(), in the
// dark colour scheme, to show that printing ignores it) one panel per page, with every panel's
// total and the grand total in the PDF's text (--bill-pdf keeps the file).
//
// With --token-url, the page of a server that asks for a token is signed in to, and its CSV
// links, the bill's included, must download (through a blob: URL, as a link cannot carry the
// token) the same rows as that server's JSON.
//
// Prints one line per check; exits 0 when all pass, 1 at the first failure (after saving a
// screenshot of the page as it was), 2 on bad arguments.

import { access, constants, readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
// How often the background fetches ask the API, and how long their answers are kept.
const API_POLL_MS = 400;
const API_HISTORY_MS = 60_000;
// The monthly figures the page fetches at load and every five minutes (MONTHLY_MS in app.js), so
// by the time they are checked the page may show an answer older than API_HISTORY_MS: those
// are kept as long as the page may keep its figures.
const MONTHLY_HISTORY_MS = 6 * 60_000;
// How recent an answer a figure the page refreshes after each reading must show: the page asks
// again 5 s after a reading, and readings come every few seconds.
const FRESH_MS = 15_000;
// The whole run; the Rust test gives the process a little more.
const RUN_TIMEOUT_MS = 150_000;

// ---- arguments ------------------------------------------------------------------------------

function usage(message) {
  console.error(`${message}\nusage: node dashboard.test.mjs <dashboard-url> --panels A,B,C --screenshot <file.png> `
    + '[--bill-pdf <file.pdf>] [--token-url <url>] (the token in $DASHBOARD_TOKEN)');
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      panels: { type: 'string' },
      screenshot: { type: 'string' },
      'bill-pdf': { type: 'string' },
      'token-url': { type: 'string' },
    },
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
const billPdfPath = parsed.values['bill-pdf'];
const tokenUrl = parsed.values['token-url'];
const token = process.env.DASHBOARD_TOKEN;
if (tokenUrl && !token) usage('--token-url needs the token in DASHBOARD_TOKEN');
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
// A price: as many decimals as it has, at least two.
const rateFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 });
const rate = (currency, value) => `${currency} ${rateFormat.format(value)}`;

// A cost's split by tariff window, shown under time of use (or whenever it has several
// windows): "LWBP 12,345.00 · WBP 6,789.00", a window named with its tariff when the figure
// spans several tariffs and with its version when it spans several versions.
function expectedSplit(figure, timeOfUse) {
  const windows = figure.by_window ?? [];
  if (!(windows.length > 1 || (timeOfUse && windows.length > 0))) return { shown: false };
  const tariffs = new Set(windows.map((w) => w.tariff));
  const versions = new Set(windows.map((w) => `${w.tariff} ${w.version}`));
  const label = (w) => `${tariffs.size > 1 ? `${w.tariff} ` : ''}${w.window}${versions.size > tariffs.size ? ` (${w.version})` : ''}`;
  return { shown: true, text: windows.map((w) => `${label(w)} ${fixed(w.cost, 2)}`).join(' · ') };
}

// The local date and HH:MM of an instant in `zone`.
function localParts(instant, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(instant)).map((part) => [part.type, part.value]));
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
}

// What the page says each tariff of a today-usage answer charges now: "B-3: WBP, IDR 1,553.67
// per kWh, until 22:00; new rates from 2027-01-01: LWBP IDR 1,200.00, WBP IDR 1,800.50".
function expectedTariffs(body) {
  return Object.fromEntries((body.tariffs ?? []).map((tariff) => {
    let text = `${tariff.tariff}: ${tariff.window}, ${rate(body.currency, tariff.rate)} per kWh`;
    if (tariff.window_until) {
      const local = localParts(tariff.window_until, body.timezone);
      text += `, until ${local.date === body.date ? local.time : `${local.time} on ${local.date}`}`;
    }
    const next = tariff.next_version;
    if (next) {
      text += `; new rates from ${next.valid_from}: `
        + `${next.windows.map((w) => `${w.window} ${rate(body.currency, w.rate)}`).join(', ')}`;
    }
    return [tariff.tariff, {
      window: tariff.window,
      version: tariff.version,
      rate: tariff.rate,
      until: tariff.window_until ?? null,
      next: next?.valid_from ?? null,
      text,
    }];
  }));
}

function tariffsOf(state) {
  return Object.fromEntries(state.tariffsNow.map((tariff) => [tariff.tariff, {
    window: tariff.window,
    version: tariff.version,
    rate: tariff.rate,
    until: tariff.until,
    next: tariff.next,
    text: tariff.text,
  }]));
}

// The footer's tariff: the one price, or "time of use" and the tariffs' names.
function expectedTariffSetting(today) {
  return typeof today.tariff_per_kwh === 'number'
    ? `${today.currency} ${fixed(today.tariff_per_kwh, 2)} per kWh`
    : `time of use (${(today.tariffs ?? []).map((tariff) => tariff.tariff).join(', ')})`;
}

// An "of which … estimated" note: shown only when something is estimated.
const estimatedNote = (value) => ({ shown: value > 0, text: fixed(value, 3), value });

// "December 2026" from "2026-12".
function monthName(month) {
  const [year, number] = month.split('-').map(Number);
  const name = new Date(Date.UTC(year, number - 1, 1)).toLocaleString('en-US', { month: 'long', timeZone: 'UTC' });
  return `${name} ${year}`;
}

const intervalsPath = (panel) => `/api/panel/${encodeURIComponent(panel)}/intervals`;

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
    card.todayEstimated = estimatedNote(today.estimated_kwh);
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
  const timeOfUse = typeof body.tariff_per_kwh !== 'number';
  // An "of which … estimated" note after a cost.
  const estimatedCost = (figure) => ({ shown: figure.estimated_cost > 0, text: money(body.currency, figure.estimated_cost) });
  return {
    date: `(${body.date})`,
    totalUsage: fixed(body.total.usage_kwh, 3),
    totalUsageValue: body.total.usage_kwh,
    totalEstimated: estimatedNote(body.total.estimated_kwh),
    totalCost: money(body.currency, body.total.cost),
    totalEstimatedCost: estimatedCost(body.total),
    totalWindows: expectedSplit(body.total, timeOfUse),
    cards: Object.fromEntries(body.panels.map((panel) => [panel.panel, {
      todayUsage: fixed(panel.usage_kwh, 3),
      todayUsageValue: panel.usage_kwh,
      todayEstimated: estimatedNote(panel.estimated_kwh),
      todayCost: money(body.currency, panel.cost),
      todayEstimatedCost: estimatedCost(panel),
      todayWindows: expectedSplit(panel, timeOfUse),
    }])),
  };
}

function todayOf(state) {
  return {
    date: state.todayDate,
    totalUsage: state.totalUsage,
    totalUsageValue: state.totalUsageValue,
    totalEstimated: state.totalEstimated,
    totalCost: state.totalCost,
    totalEstimatedCost: state.totalEstimatedCost,
    totalWindows: state.totalWindows,
    cards: Object.fromEntries(state.cards.map((card) => [card.panel, {
      todayUsage: card.todayUsage,
      todayUsageValue: card.todayUsageValue,
      todayEstimated: card.todayEstimated,
      todayCost: card.todayCost,
      todayEstimatedCost: card.todayEstimatedCost,
      todayWindows: card.todayWindows,
    }])),
  };
}

// The monthly charts as one monthly answer would draw them.
function expectedCharts(body) {
  return Object.fromEntries(body.panels.map((panel) => [panel.panel, {
    year: String(body.year),
    yearTotal: fixed(panel.total_kwh, 3),
    yearCost: money(body.currency, panel.total_cost),
    yearEstimated: estimatedNote(panel.total_estimated_kwh),
    months: Object.fromEntries(panel.months.map((month) => [month.month, {
      usage: month.usage_kwh,
      estimated: month.estimated_kwh,
      hatched: month.estimated_kwh > 0,
    }])),
  }]));
}

function chartsOf(state) {
  return Object.fromEntries(state.charts.map((chart) => [chart.panel, {
    year: chart.year,
    yearTotal: chart.yearTotal,
    yearCost: chart.yearCost,
    yearEstimated: chart.yearEstimated,
    months: Object.fromEntries(chart.bars.map((bar) => [bar.key, {
      usage: bar.value,
      estimated: bar.estimated,
      hatched: bar.hatch > 0,
    }])),
  }]));
}

// Today's load curve of the panel of `body` (an intervals answer) as the page should draw it.
function expectedCurve(body) {
  return {
    panel: body.panel,
    title: body.panel,
    date: body.date,
    dateText: `(${body.date})`,
    total: fixed(body.total_kwh, 3),
    totalValue: body.total_kwh,
    estimated: estimatedNote(body.total_estimated_kwh),
    csv: `${intervalsPath(body.panel)}?date=${body.date}&step=15m&format=csv`,
    count: body.intervals.length,
    tableRows: body.intervals.length,
    order: body.intervals.map((interval) => interval.start).join(' '),
    intervals: Object.fromEntries(body.intervals.map((interval) => [interval.start, {
      usage: interval.usage_kwh,
      estimated: interval.estimated_kwh,
      hatched: interval.estimated_kwh > 0,
    }])),
  };
}

function curveOf(curve) {
  return {
    panel: curve.panel,
    title: curve.title,
    date: curve.date,
    dateText: curve.dateText,
    total: curve.total,
    totalValue: curve.totalValue,
    estimated: curve.estimated,
    csv: curve.csv,
    count: curve.bars.length,
    tableRows: curve.tableRows,
    order: curve.bars.map((bar) => bar.key).join(' '),
    intervals: Object.fromEntries(curve.bars.map((bar) => [bar.key, {
      usage: bar.value,
      estimated: bar.estimated,
      hatched: bar.hatch > 0,
    }])),
  };
}

// This month's days of `panel` (from a daily answer) as the page should draw them.
function expectedDaily(body, panel) {
  const days = body.panels.find((entry) => entry.panel === panel)?.days ?? [];
  // The largest demand, on the first day that reached it.
  const peak = days.reduce((best, day) => (best === null || day.max_demand_kw > best.max_demand_kw ? day : best), null);
  return {
    panel,
    title: panel,
    month: body.month,
    monthText: monthName(body.month),
    csv: `/api/energy/daily?month=${body.month}&format=csv`,
    peak: { shown: Boolean(peak && peak.max_demand_kw > 0), kw: peak ? fixed(peak.max_demand_kw, 3) : '–', date: peak?.date ?? '' },
    count: days.length,
    dots: days.length,
    tableRows: days.length,
    order: days.map((day) => day.date).join(' '),
    days: Object.fromEntries(days.map((day) => [day.date, {
      usage: day.usage_kwh,
      estimated: day.estimated_kwh,
      hatched: day.estimated_kwh > 0,
      demand: day.max_demand_kw,
      dot: day.max_demand_kw,
    }])),
  };
}

function dailyOf(daily) {
  const dots = new Map(daily.dots.map((dot) => [dot.date, dot.value]));
  return {
    panel: daily.panel,
    title: daily.title,
    month: daily.month,
    monthText: daily.monthText,
    csv: daily.csv,
    peak: daily.peak,
    count: daily.bars.length,
    dots: daily.dots.length,
    tableRows: daily.tableRows,
    order: daily.bars.map((bar) => bar.key).join(' '),
    days: Object.fromEntries(daily.bars.map((bar) => [bar.key, {
      usage: bar.value,
      estimated: bar.estimated,
      hatched: bar.hatch > 0,
      demand: bar.demand,
      dot: dots.get(bar.key),
    }])),
  };
}

// The bars' shapes against their own figures: nothing drawn for 0, the tallest bar for the
// largest figure, and the hatched (estimated) part of a bar its estimated share of the bar
// (within a drawing unit: a figure above 0 is drawn at least one unit high).
function shapeProblems(what, bars) {
  const problems = [];
  const tallest = Math.max(...bars.map((bar) => bar.height));
  const largest = Math.max(...bars.map((bar) => bar.value));
  for (const bar of bars) {
    if ((bar.value > 0) !== (bar.height > 0)) problems.push(`${what} ${bar.key}: ${bar.value} kWh drawn ${bar.height} high`);
    if (largest > 0 && bar.value === largest && bar.height < tallest) {
      problems.push(`${what} ${bar.key}: the largest figure is not the tallest bar`);
    }
    const share = bar.value > 0 ? (bar.height * bar.estimated) / bar.value : 0;
    if (bar.hatch > bar.height + 0.05 || Math.abs(bar.hatch - share) > 1.1) {
      problems.push(`${what} ${bar.key}: ${bar.estimated} of ${bar.value} kWh estimated, `
        + `hatched ${bar.hatch} of ${bar.height} units`);
    }
  }
  return problems;
}

// ---- the API, asked in the background -------------------------------------------------------

class ApiHistory {
  constructor(path, keepMs = API_HISTORY_MS) {
    this.url = new URL(path, dashboardUrl).href;
    this.keepMs = keepMs;
    this.answers = []; // {at, body}, oldest first
    this.lastError = null;
  }

  async fetch() {
    const response = await fetch(this.url, { headers: { Accept: 'application/json' } });
    const body = await response.json();
    if (!response.ok) throw new Error(`GET ${this.url}: ${response.status} ${JSON.stringify(body)}`);
    const now = Date.now();
    this.answers.push({ at: now, body });
    while (this.answers.length > 0 && this.answers[0].at < now - this.keepMs) this.answers.shift();
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
const monthly = new ApiHistory('/api/energy/monthly', MONTHLY_HISTORY_MS);
const daily = new ApiHistory('/api/energy/daily');
// Each panel's quarter hours today, asked as the page asks for them.
const intervals = new Map(expectedPanels.map((panel) => [panel, new ApiHistory(`${intervalsPath(panel)}?step=15m`)]));
const histories = [realtime, todayUsage, monthly, daily, ...intervals.values()];

// ---- CSV files ------------------------------------------------------------------------------

// The rows of a CSV answer. These files hold ids, dates, times and numbers only: no field is
// quoted, so a quote anywhere is itself a fault.
function csvRows(text) {
  if (text.includes('"')) throw new CheckFailed(`a CSV file quotes a field:\n${text.slice(0, 300)}`);
  if (!text.endsWith('\r\n')) throw new CheckFailed(`a CSV file does not end in CRLF: ${JSON.stringify(text.slice(-40))}`);
  return text.slice(0, -2).split('\r\n').map((line) => line.split(','));
}

// The differences between CSV rows and the expected ones ([header, ...rows], text or number
// fields; a number must read back as that number).
function csvDifferences(rows, expected) {
  const problems = [];
  if (rows.length !== expected.length) problems.push(`${rows.length - 1} rows, the JSON answer has ${expected.length - 1}`);
  expected.forEach((fields, index) => {
    const row = rows[index] ?? [];
    const same = row.length === fields.length && fields.every((field, column) => (
      typeof field === 'number' ? row[column] !== '' && Number(row[column]) === field : row[column] === field));
    if (!same) problems.push(`row ${index}: ${JSON.stringify(row)}, expected ${JSON.stringify(fields)}`);
  });
  return problems.slice(0, 8);
}

// What the CSV of an intervals answer and of a daily answer hold.
function intervalsCsv(body) {
  return [
    ['panel', 'start', 'usage_kwh', 'avg_kw', 'estimated_kwh', 'window', 'cost', 'estimated_cost', 'currency'],
    ...body.intervals.map((i) => [
      body.panel, i.start, i.usage_kwh, i.avg_kw, i.estimated_kwh, i.window, i.cost, i.estimated_cost, body.currency,
    ]),
  ];
}

function dailyCsv(body) {
  return [
    ['panel', 'date', 'usage_kwh', 'estimated_kwh', 'cost', 'currency', 'max_demand_kw'],
    ...body.panels.flatMap((panel) => panel.days.map((day) => [
      panel.panel, day.date, day.usage_kwh, day.estimated_kwh, day.cost, body.currency, day.max_demand_kw,
    ])),
  ];
}

async function getJson(url, headers = {}) {
  const response = await fetch(url, { headers: { Accept: 'application/json', ...headers } });
  const body = await response.json();
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

// Reads a CSV file with `read` (which returns {text, problems, …}) between two reads of the
// JSON answer at `jsonUrl`, and returns the problems `check(answer, file)` finds. When the two
// JSON answers differ, a reading came in between and the file is read again.
async function csvAgainstJson(jsonUrl, headers, read, check) {
  const before = await getJson(jsonUrl, headers);
  const file = await read();
  const after = await getJson(jsonUrl, headers);
  if (JSON.stringify(before) !== JSON.stringify(after)) return ['a reading arrived while the file was read'];
  if (file.problems.length > 0) return file.problems;
  return check(after, file);
}

// The CSV file a click on `selector` makes the browser save.
async function download(page, selector) {
  try {
    const [file] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click(selector)]);
    const failure = await file.failure();
    if (failure) return { problems: [`the download from ${file.url()} failed: ${failure}`] };
    return {
      text: await readFile(await file.path(), 'utf8'),
      url: file.url(),
      filename: file.suggestedFilename(),
      problems: [],
    };
  } catch (error) {
    return { problems: [`clicking ${selector} saved no file: ${error.message.split('\n')[0]}`] };
  }
}

// What a downloaded CSV file must be: the rows of the JSON answer, under the server's name.
function fileProblems(file, rows, filename) {
  const problems = csvDifferences(csvRows(file.text), rows);
  if (file.filename !== filename) problems.push(`saved as ${file.filename}, the server names it ${filename}`);
  return problems;
}

// The two CSV links of the page: where their JSON answer is, what rows and file name an answer
// makes.
const csvLinks = [
  {
    what: "the load curve's",
    selector: '[data-field="curve_csv"]',
    json: (state) => `${intervalsPath(state.curve.panel)}?step=15m`,
    href: (state) => state.curve.csv,
    rows: intervalsCsv,
    filename: (body) => `intervals-${body.panel}-${body.date}-15m.csv`,
  },
  {
    what: "the daily bars'",
    selector: '[data-field="daily_csv"]',
    json: () => '/api/energy/daily',
    href: (state) => state.daily.csv,
    rows: dailyCsv,
    filename: (body) => `daily-${body.month}.csv`,
  },
];

// ---- the bill page --------------------------------------------------------------------------

// The month before the one of `date` (YYYY-MM-DD): the last whole month.
function lastWholeMonth(date) {
  const [year, month] = date.split('-').map(Number);
  return month === 1 ? `${year - 1}-12` : `${year}-${String(month - 1).padStart(2, '0')}`;
}

function billQuery(month, panel) {
  const query = new URLSearchParams({ month });
  if (panel) query.set('panel', panel);
  return query.toString();
}

const days = (n) => `${n} ${n === 1 ? 'day' : 'days'}`;

// A bill line's cells as the page writes them: item, version, quantity, rate, amount.
function lineCells(line, currency, amount) {
  const item = { energy: `Energy, ${line.name}`, tax: `Tax, ${line.name}` }[line.kind]
    ?? line.name.charAt(0).toUpperCase() + line.name.slice(1);
  const quantity = {
    kWh: `${fixed(line.quantity, 3)} kWh${line.estimated_kwh > 0 ? ` of which ${fixed(line.estimated_kwh, 3)} estimated` : ''}`,
    kW: `${fixed(line.quantity, 3)} kW`,
    days: days(line.quantity),
    base: amount(line.quantity),
  }[line.unit];
  const per = { energy: '/kWh', minimum_top_up: '/kWh', demand: '/kW', fixed: '/month' }[line.kind];
  const price = line.kind === 'tax' ? `${line.rate} %` : `${rate(currency, line.rate)}${per}`;
  return [item, line.version, quantity, price, amount(line.amount)];
}

// The bill page as one /api/bill answer (of `panel`, or '' for all) would draw it.
function expectedBills(body, panel) {
  const amount = (value) => `${body.currency} ${fixed(value, body.decimals)}`;
  const query = billQuery(body.month, panel);
  const row = (cells, value) => ({ cells: cells.join(' | '), value });
  return {
    hash: `#bill?${query}`,
    title: `Bill, ${monthName(body.month)}${panel ? `, ${panel}` : ''} – Energy monitor`,
    month: body.month,
    panel,
    monthInput: body.month,
    panelSelect: panel,
    csv: `/api/bill?${query}&format=csv`,
    error: '',
    order: body.panels.map((bill) => bill.panel).join(' '),
    sheets: Object.fromEntries(body.panels.map((bill) => {
      const charges = bill.lines.filter((line) => line.kind !== 'tax');
      const taxes = bill.lines.filter((line) => line.kind === 'tax');
      const sums = [
        row(['Subtotal', '', '', '', amount(bill.subtotal)], bill.subtotal),
        ...taxes.map((line) => row(lineCells(line, body.currency, amount), line.amount)),
        row(['Total', '', '', '', amount(bill.total)], bill.total),
      ];
      return [bill.panel, {
        visible: true,
        title: bill.panel,
        month: monthName(body.month),
        tariff: bill.tariff,
        versions: bill.versions.map((v) => `${v.valid_from} (${days(v.days)})`).join(', '),
        kva: typeof bill.contracted_kva === 'number' ? `${fixed(bill.contracted_kva, 0)} kVA` : null,
        usage: fixed(bill.usage_kwh, 3),
        demand: fixed(bill.max_demand_kw, 3),
        lineCount: charges.length,
        lines: Object.fromEntries(charges.map((line, index) => [index, row(lineCells(line, body.currency, amount), line.amount)])),
        sumCount: sums.length,
        sums: Object.fromEntries(sums.map((sum, index) => [index, sum])),
        total: amount(bill.total),
        totalValue: bill.total,
        estimated: `${fixed(bill.estimated_kwh, 3)} kWh, ${amount(bill.estimated_amount)}`,
        notes: bill.notes.join(' | '),
      }];
    })),
    summary: body.panels.length > 1
      ? {
        shown: true,
        rows: body.panels.map((bill) => [bill.panel, bill.tariff, fixed(bill.usage_kwh, 3), amount(bill.total)].join(' | ')).join(' / '),
        total: amount(body.total),
        totalValue: body.total,
      }
      : { shown: false },
  };
}

// The bill page, in the shape of expectedBills.
function readBills(page) {
  return page.evaluate(() => {
    const field = (name, root = document) => root.querySelector(`[data-field="${name}"]`);
    const text = (element) => (element ? element.innerText.replace(/\s+/g, ' ').trim() : null);
    const cells = (row) => [...row.cells].map(text).join(' | ');
    const row = (tr) => ({ cells: cells(tr), value: Number(tr.lastElementChild.getAttribute('data-value')) });
    const bills = document.querySelector('#bills');
    const sheets = [...bills.querySelectorAll(':scope > .bill-sheet')];
    const summary = bills.querySelector(':scope > .bill-summary');
    const panelSelect = document.querySelector('#bill-panel');
    return {
      view: document.querySelector('#bill').checkVisibility() && !document.querySelector('#dashboard').checkVisibility(),
      busy: bills.hasAttribute('aria-busy'),
      hash: window.location.hash,
      title: document.title,
      month: bills.getAttribute('data-month'),
      panel: bills.getAttribute('data-panel'),
      monthInput: document.querySelector('#bill-month').value,
      panelSelect: panelSelect.value,
      panelOptions: [...panelSelect.options].map((option) => option.value),
      csv: field('bill_csv').getAttribute('href'),
      error: text(field('bill_error')),
      order: sheets.map((sheet) => sheet.getAttribute('data-panel')).join(' '),
      sheets: Object.fromEntries(sheets.map((sheet) => {
        const lines = [...field('bill_lines', sheet).rows].map(row);
        const sums = [...field('bill_sums', sheet).rows].map(row);
        const total = field('bill_total', sheet);
        return [sheet.getAttribute('data-panel'), {
          visible: sheet.checkVisibility(),
          title: text(field('panel', sheet)),
          month: text(field('bill_month', sheet)),
          tariff: text(field('bill_tariff', sheet)),
          versions: text(field('bill_versions', sheet)),
          kva: field('bill_kva_row', sheet).checkVisibility() ? text(field('bill_kva_row', sheet).querySelector('dd')) : null,
          usage: text(field('bill_usage_kwh', sheet)),
          demand: text(field('bill_max_demand_kw', sheet)),
          lineCount: lines.length,
          lines: Object.fromEntries(lines.map((line, index) => [index, line])),
          sumCount: sums.length,
          sums: Object.fromEntries(sums.map((sum, index) => [index, sum])),
          total: text(total),
          totalValue: total ? Number(total.getAttribute('data-value')) : null,
          estimated: `${text(field('bill_estimated_kwh', sheet))} kWh, ${text(field('bill_estimated_amount', sheet))}`,
          notes: field('bill_notes_block', sheet).checkVisibility()
            ? [...field('bill_notes', sheet).children].map(text).join(' | ') : '',
        }];
      })),
      summary: summary
        ? {
          shown: summary.checkVisibility(),
          rows: [...summary.querySelectorAll('tbody tr')].map(cells).join(' / '),
          total: text(field('bills_total', summary)),
          totalValue: Number(field('bills_total', summary).getAttribute('data-value')),
        }
        : { shown: false },
    };
  });
}

// What the bill page shows against what it should show for `body`.
function billProblems(shown, body, panel) {
  const problems = [];
  if (!shown.view) problems.push('the bill view is not the one shown');
  if (shown.busy) problems.push('the bill is still loading');
  return [...problems, ...differences(shown, expectedBills(body, panel))];
}

// What the print style sheet leaves visible, and how.
function readPrinted(page) {
  return page.evaluate(() => {
    const visible = (selector) => [...document.querySelectorAll(selector)].filter((e) => e.checkVisibility()).length;
    const style = (element) => getComputedStyle(element);
    return {
      nav: visible('nav'),
      header: visible('.site-header'),
      footer: visible('.site-footer'),
      controls: visible('#bill-form, #bill-form button, #bill-form select, #bill-form input'),
      dashboard: visible('#dashboard, #cards, #charts, svg'),
      sheets: [...document.querySelectorAll('#bills > .bill-sheet')].map((sheet) => ({
        panel: sheet.getAttribute('data-panel'),
        visible: sheet.checkVisibility(),
        breakAfter: style(sheet).breakAfter,
      })),
      color: style(document.body).color,
      background: style(document.documentElement).backgroundColor,
      sheetBackground: [...document.querySelectorAll('#bills > *')].map((e) => style(e).backgroundColor),
    };
  });
}

// The text of each page of a PDF, read with pdfjs-dist.
async function pdfPages(pdf) {
  let pdfjs;
  try {
    pdfjs = await import('pdfjs-dist/legacy/build/pdf.mjs');
  } catch (error) {
    throw new CheckFailed(`pdfjs-dist is not installed (${error.code ?? error.message}): run \`npm ci\` in tests/browser (scripts/test.sh does)`);
  }
  const pdfDocument = await pdfjs.getDocument({ data: new Uint8Array(pdf), verbosity: 0, isEvalSupported: false }).promise;
  try {
    const pages = [];
    for (let number = 1; number <= pdfDocument.numPages; number += 1) {
      const content = await (await pdfDocument.getPage(number)).getTextContent();
      pages.push(content.items.map((item) => item.str ?? '').join(' '));
    }
    return pages;
  } finally {
    await pdfDocument.destroy();
  }
}

// Text without any white space, so that how the PDF splits its text runs does not matter.
const squash = (text) => text.replace(/\s+/g, '');
const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
// Whether `amount` ("IDR 1,234") is in `text` as a whole figure, not the start of a longer one.
const hasAmount = (text, amount) => new RegExp(`${escapeRegExp(squash(amount))}(?![0-9])`).test(squash(text));

// The printed bills: at least a page per panel (and one for all panels' totals), each panel's
// bill starting on a page of its own with its total on it, and the grand total.
function pdfProblems(pages, body) {
  const amount = (value) => `${body.currency} ${fixed(value, body.decimals)}`;
  const month = monthName(body.month);
  const problems = [];
  const summary = body.panels.length > 1 ? 1 : 0;
  if (pages.length < body.panels.length + summary) {
    problems.push(`${pages.length} pages for ${body.panels.length} panels${summary ? ' and their totals' : ''}`);
  }
  const headings = body.panels.map((bill) => squash(`${bill.panel}, ${month}`));
  pages.forEach((text, index) => {
    const on = headings.filter((heading) => squash(text).includes(heading));
    if (on.length > 1) problems.push(`page ${index + 1} starts the bills of several panels: ${on.join(', ')}`);
  });
  for (const bill of body.panels) {
    const first = pages.findIndex((text) => squash(text).includes(squash(`${bill.panel}, ${month}`)));
    if (first < 0) {
      problems.push(`no page has the bill of ${bill.panel}`);
      continue;
    }
    if (!hasAmount(pages[first], amount(bill.total))) {
      problems.push(`page ${first + 1}, the bill of ${bill.panel}, lacks its total ${amount(bill.total)}: `
        + `${JSON.stringify(pages[first].slice(0, 400))}…`);
    }
  }
  if (!pages.some((text) => hasAmount(text, amount(body.total)))) {
    problems.push(`no page has the grand total ${amount(body.total)}`);
  }
  return problems;
}

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
    const number = (element, name) => (element && element.hasAttribute(name) ? Number(element.getAttribute(name)) : null);
    // An "of which … estimated" note: whether it shows, and its figure.
    const note = (name, root = document) => {
      const wrapper = field(name, root);
      const figure = field(`${name}_kwh`, root);
      return wrapper ? { shown: wrapper.checkVisibility(), text: text(figure), value: value(figure) } : null;
    };
    // The same after a cost, and a cost's split by window.
    const costNote = (name, root = document) => {
      const wrapper = field(name, root);
      return wrapper ? { shown: wrapper.checkVisibility(), text: text(field(`${name}_amount`, root)) } : null;
    };
    const split = (name, root = document) => {
      const element = field(name, root);
      return element ? { shown: element.checkVisibility(), text: text(element) } : null;
    };
    // A chart's bars, each by its `data-<key>`, with the height of its hatched (estimated) part.
    const barsOf = (figure, key) => {
      const hatches = new Map([...figure.querySelectorAll('svg rect.estimated')]
        .map((rect) => [rect.getAttribute(`data-${key}`), Number(rect.getAttribute('height'))]));
      return [...figure.querySelectorAll('svg rect.bar')].map((bar) => ({
        key: bar.getAttribute(`data-${key}`),
        value: number(bar, 'data-value'),
        estimated: number(bar, 'data-estimated'),
        demand: number(bar, 'data-demand'),
        height: Number(bar.getAttribute('height')),
        hatch: hatches.get(bar.getAttribute(`data-${key}`)) ?? 0,
      }));
    };
    const curve = document.querySelector('#load-curve');
    const daily = document.querySelector('#daily-chart');
    const picker = document.querySelector('#panel');
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
        todayEstimated: note('today_estimated', card),
        todayCost: text(field('today_cost', card)),
        todayEstimatedCost: costNote('today_estimated_cost', card),
        todayWindows: split('today_windows', card),
      })),
      todayDate: text(field('today_date')),
      totalUsage: text(field('total_usage_kwh')),
      totalUsageValue: value(field('total_usage_kwh')),
      totalEstimated: note('total_estimated'),
      totalCost: text(field('total_cost')),
      totalEstimatedCost: costNote('total_estimated_cost'),
      totalWindows: split('total_windows'),
      tariffsNow: [...document.querySelectorAll('#tariffs-now > li')].map((item) => ({
        tariff: item.getAttribute('data-tariff'),
        window: item.getAttribute('data-window'),
        version: item.getAttribute('data-version'),
        rate: Number(item.getAttribute('data-rate')),
        until: field('tariff_until_clause', item).checkVisibility()
          ? field('tariff_until', item).getAttribute('datetime') : null,
        next: field('tariff_next_clause', item).checkVisibility()
          ? field('tariff_next', item).getAttribute('datetime') : null,
        // What a person reads: the hidden parts left out.
        text: item.innerText.replace(/\s+/g, ' ').trim(),
        visible: item.checkVisibility(),
      })),
      timezone: text(field('timezone')),
      tariff: text(field('tariff')),
      currency: text(field('currency')),
      offlineAfter: text(field('offline_after')),
      errors: ['today_error', 'detail_error', 'monthly_error'].map((name) => text(field(name))).filter(Boolean),
      charts: [...document.querySelectorAll('#charts > [data-panel]')].map((chart) => ({
        panel: chart.getAttribute('data-panel'),
        visible: chart.checkVisibility(),
        year: text(field('year', chart)),
        yearTotal: text(field('year_total_kwh', chart)),
        yearCost: text(field('year_total_cost', chart)),
        yearEstimated: note('year_estimated', chart),
        bars: barsOf(chart, 'month').map((bar) => ({ ...bar, key: Number(bar.key) })),
        tableRows: chart.querySelectorAll('tbody tr').length,
      })),
      picker: {
        visible: picker.checkVisibility(),
        options: [...picker.options].map((option) => option.value),
        value: picker.value,
      },
      curve: {
        visible: curve.checkVisibility(),
        panel: curve.getAttribute('data-panel'),
        title: text(field('panel', curve)),
        date: curve.getAttribute('data-date'),
        dateText: text(field('curve_date', curve)),
        total: text(field('curve_total_kwh', curve)),
        totalValue: value(field('curve_total_kwh', curve)),
        estimated: note('curve_estimated', curve),
        csv: field('curve_csv', curve).getAttribute('href'),
        bars: barsOf(curve, 'start'),
        tableRows: curve.querySelectorAll('tbody tr').length,
      },
      daily: {
        visible: daily.checkVisibility(),
        panel: daily.getAttribute('data-panel'),
        title: text(field('panel', daily)),
        month: daily.getAttribute('data-month'),
        monthText: text(field('daily_month', daily)),
        csv: field('daily_csv', daily).getAttribute('href'),
        peak: {
          shown: field('daily_peak', daily).checkVisibility(),
          kw: text(field('daily_peak_kw', daily)),
          date: text(field('daily_peak_date', daily)),
        },
        bars: barsOf(daily, 'date'),
        dots: [...daily.querySelectorAll('svg circle.demand')].map((dot) => ({
          date: dot.getAttribute('data-date'),
          value: number(dot, 'data-value'),
        })),
        tableRows: daily.querySelectorAll('tbody tr').length,
      },
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
  const faults = faultsOf(page);
  const requests = [];
  let navigations = 0;
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
    pass("every card's usage and cost today (its estimated part and split by tariff window) and the totals are "
      + 'those of /api/panel/today-usage');
    const split = state.cards.find((card) => card.todayWindows?.shown);
    if (split) pass(`e.g. ${split.panel}'s cost today by window: ${split.todayWindows.text}`);

    await waitFor('what each tariff charges now and its next change are those of /api/panel/today-usage', 20_000, async () => {
      state = await readPage(page);
      const answers = todayUsage.recent(API_HISTORY_MS);
      if (answers.length === 0) return [`no today-usage answer from the API yet (${todayUsage.lastError})`];
      if ((answers[0].tariffs ?? []).length === 0) return ['the API lists no tariff in today-usage'];
      const problems = closest(tariffsOf(state), answers.map(expectedTariffs));
      const shown = state.tariffsNow.map((tariff) => tariff.tariff);
      const listed = answers[0].tariffs.map((tariff) => tariff.tariff);
      if (JSON.stringify(shown) !== JSON.stringify(listed)) problems.push(`tariffs ${JSON.stringify(shown)}, API ${JSON.stringify(listed)}`);
      const hidden = state.tariffsNow.filter((tariff) => !tariff.visible).map((tariff) => tariff.tariff);
      if (hidden.length > 0) problems.push(`hidden: ${hidden.join(', ')}`);
      return problems;
    });
    for (const tariff of state.tariffsNow) pass(`tariff now: ${tariff.text}`);

    await waitFor('the footer shows the time zone, tariff, currency and offline rule', 10_000, async () => {
      state = await readPage(page);
      const today = todayUsage.latest();
      const offline = realtime.latest().offline_after_secs;
      return differences(state, {
        timezone: today.timezone,
        currency: today.currency,
        tariff: expectedTariffSetting(today),
        offlineAfter: offline % 60 === 0 ? `${offline / 60} min without a reading` : `${offline} s without a reading`,
      });
    });
    pass(`the footer shows ${state.timezone}, ${state.tariff}, ${state.currency}, offline after ${state.offlineAfter}`);

    // One panel's load curve and daily bars: the first panel at first, then each other one as
    // it is picked.
    for (const [index, panel] of expectedPanels.entries()) {
      if (index > 0) await page.selectOption('#panel', panel);
      await waitFor(`the load curve and daily bars of ${panel} are those of its intervals and /api/energy/daily`, 30_000, async () => {
        state = await readPage(page);
        const problems = [];
        const { picker, curve, daily: days } = state;
        if (JSON.stringify(picker.options) !== JSON.stringify(expectedPanels)) {
          problems.push(`the panel picker offers ${JSON.stringify(picker.options)}`);
        }
        if (picker.value !== panel) problems.push(`the panel picker shows ${picker.value}`);
        if (!picker.visible || !curve.visible || !days.visible) problems.push('the picker or a chart is hidden');
        problems.push(...shapeProblems('quarter hour', curve.bars), ...shapeProblems('day', days.bars));
        const curveAnswers = intervals.get(panel).recent(API_HISTORY_MS);
        const dailyAnswers = daily.recent(API_HISTORY_MS);
        if (curveAnswers.length === 0) return [...problems, `no intervals answer yet (${intervals.get(panel).lastError})`];
        if (dailyAnswers.length === 0) return [...problems, `no daily answer yet (${daily.lastError})`];
        problems.push(...closest(curveOf(curve), curveAnswers.map(expectedCurve)).map((line) => `load curve ${line}`));
        problems.push(...closest(dailyOf(days), dailyAnswers.map((body) => expectedDaily(body, panel)))
          .map((line) => `daily ${line}`));
        return problems;
      });
      const { curve, daily: days } = state;
      const estimated = curve.bars.filter((bar) => bar.hatch > 0).length;
      pass(`${index === 0 ? 'at first' : 'picked'}, ${panel}: its ${curve.bars.length} quarter hours today `
        + `(${estimated} with an estimated part, hatched) and ${days.bars.length} days of ${days.monthText} `
        + `(largest demand ${days.peak.kw} kW) are those of its intervals and /api/energy/daily`);
    }

    // Both follow new readings: today's last quarter hour and day grow, and the page shows an
    // answer of the last few seconds, without a reload.
    const shown = state;
    const picked = shown.curve.panel;
    const last = (bars) => bars[bars.length - 1];
    await waitFor(`the load curve and daily bars of ${picked} follow new readings`, 30_000, async () => {
      state = await readPage(page);
      const problems = [];
      if (state.curve.totalValue === shown.curve.totalValue) problems.push(`today's total is still ${state.curve.total} kWh`);
      if (last(state.daily.bars)?.value === last(shown.daily.bars)?.value) {
        problems.push(`today's daily bar is still ${last(state.daily.bars)?.value} kWh`);
      }
      const curveAnswers = intervals.get(picked).recent(FRESH_MS);
      const dailyAnswers = daily.recent(FRESH_MS);
      if (curveAnswers.length === 0 || dailyAnswers.length === 0) return [...problems, 'no recent answer from the API'];
      problems.push(...closest(curveOf(state.curve), curveAnswers.map(expectedCurve)).map((line) => `load curve ${line}`));
      problems.push(...closest(dailyOf(state.daily), dailyAnswers.map((body) => expectedDaily(body, picked)))
        .map((line) => `daily ${line}`));
      return problems;
    });
    if (!state.sameDocument || navigations !== 1) throw new CheckFailed(`the page was reloaded (${navigations} navigations)`);
    pass(`the load curve and daily bars follow new readings without a reload: ${picked} today `
      + `${shown.curve.total} -> ${state.curve.total} kWh`);

    await waitFor('the monthly chart has 12 bars per panel with the figures of /api/energy/monthly', 30_000, async () => {
      state = await readPage(page);
      const problems = [];
      const shown = state.charts.map((chart) => chart.panel);
      if (JSON.stringify(shown) !== JSON.stringify(expectedPanels)) {
        problems.push(`charts ${JSON.stringify(shown)}, publisher's panels ${JSON.stringify(expectedPanels)}`);
      }
      for (const chart of state.charts) {
        const months = chart.bars.map((bar) => bar.key);
        if (JSON.stringify(months) !== JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])) {
          problems.push(`${chart.panel}: ${chart.bars.length} bars for months ${JSON.stringify(months)}`);
        }
        if (chart.tableRows !== 12) problems.push(`${chart.panel}: ${chart.tableRows} table rows`);
        if (!chart.visible) problems.push(`${chart.panel}: the chart is hidden`);
        problems.push(...shapeProblems(`${chart.panel} month`, chart.bars));
      }
      const answers = monthly.recent(MONTHLY_HISTORY_MS);
      if (answers.length === 0) return [...problems, `no monthly answer from the API yet (${monthly.lastError})`];
      return [...problems, ...closest(chartsOf(state), answers.map(expectedCharts))];
    });
    const withData = state.charts[0].bars.filter((bar) => bar.value > 0).length;
    const hatched = state.charts.map((chart) => `${chart.bars.filter((bar) => bar.hatch > 0).length} for ${chart.panel}`);
    pass(`the monthly chart has 12 bars per panel with the figures of /api/energy/monthly, estimated parts hatched `
      + `(${withData} months with usage for ${state.charts[0].panel} in ${state.charts[0].year}; months with `
      + `estimated usage: ${hatched.join(', ')})`);

    // The CSV links of the panel chosen last, fetched as any client would and clicked in the
    // page.
    for (const link of csvLinks) {
      await waitFor(`${link.what} CSV link answers text/csv with the rows of the JSON answer`, 20_000, async () => {
        state = await readPage(page);
        const href = new URL(link.href(state), dashboardUrl).href;
        const fetchFile = async () => {
          const response = await fetch(href);
          const type = response.headers.get('content-type') ?? '';
          const text = await response.text();
          return { text, problems: response.ok && type.startsWith('text/csv') ? [] : [`GET ${href}: ${response.status} ${type}`] };
        };
        return csvAgainstJson(new URL(link.json(state), dashboardUrl).href, {}, fetchFile,
          (body, file) => csvDifferences(csvRows(file.text), link.rows(body)));
      });
      await waitFor(`clicking ${link.what} CSV link saves that file`, 30_000, async () => {
        state = await readPage(page);
        return csvAgainstJson(new URL(link.json(state), dashboardUrl).href, {}, () => download(page, link.selector),
          (body, file) => fileProblems(file, link.rows(body), link.filename(body)));
      });
      pass(`${link.what} CSV link (${link.href(state)}) is text/csv with the rows of ${link.json(state)}, and saves them when clicked`);
    }

    if (state.errors.length > 0) throw new CheckFailed(`the page shows errors: ${state.errors.join('; ')}`);
    if (faults.length > 0) throw new CheckFailed(`the page had faults:\n  ${faults.join('\n  ')}`);
    pass('no console error, uncaught exception, failed request or error message on the page');
  } finally {
    // Also when a check failed: the picture usually shows why.
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`screenshot ${screenshotPath}`);
  }
}

// The bill page: opened through the navigation on the last whole month, all panels; its CSV
// file; one panel; then printed to PDF.
// The page's console errors, uncaught exceptions, failed requests and error answers, as they
// happen. The stream is aborted when the page closes; anything else failing is a fault.
function faultsOf(page) {
  const faults = [];
  page.on('console', (message) => {
    if (message.type() === 'error') faults.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => faults.push(`uncaught exception: ${error.message}`));
  page.on('requestfailed', (request) => {
    if (!request.url().endsWith('/api/panel/stream')) {
      faults.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
    }
  });
  page.on('response', (response) => {
    if (response.status() >= 400) faults.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  return faults;
}

async function runBill(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const faults = faultsOf(page);
  try {
    await page.goto(dashboardUrl, { waitUntil: 'load' });
    await waitFor('the navigation shows a link to the bill', 20_000, async () => (
      await page.locator('nav a[href="#bill"]').isVisible() ? [] : ['no visible link to #bill in the navigation']));
    await page.click('nav a[href="#bill"]');
    const today = await todayUsage.fetch();
    const month = lastWholeMonth(today.date);
    const billUrl = (panel) => new URL(`/api/bill?${billQuery(month, panel)}`, dashboardUrl).href;
    const all = await getJson(billUrl(''));
    if (all.panels.length !== expectedPanels.length) {
      throw new CheckFailed(`/api/bill?month=${month} bills ${all.panels.length} panels, not ${expectedPanels.length}`);
    }
    let shown;
    await waitFor(`the bill page shows /api/bill of ${month}, the last whole month, for all panels`, 30_000, async () => {
      shown = await readBills(page);
      const offered = JSON.stringify(shown.panelOptions);
      return [
        ...billProblems(shown, all, ''),
        ...(offered === JSON.stringify(['', ...expectedPanels]) ? [] : [`the panel picker offers ${offered}`]),
      ];
    });
    const lines = Object.values(shown.sheets).reduce((sum, sheet) => sum + sheet.lineCount + sheet.sumCount, 0);
    pass(`the bill page (${shown.hash}) shows the bills of ${all.panels.length} panels for ${monthName(month)}, `
      + `${lines} lines in all, as /api/bill does; total ${shown.summary.total}`);
    const kinds = new Set(all.panels.flatMap((bill) => bill.lines.map((line) => line.kind)));
    pass(`its lines: ${[...kinds].join(', ')}; versions ${[...new Set(all.panels.flatMap((bill) => bill.versions.map((v) => v.valid_from)))].join(', ')}; `
      + `${all.panels.reduce((sum, bill) => sum + bill.notes.length, 0)} notes`);

    await waitFor("the bill's CSV link saves the server's CSV file", 20_000, async () => {
      const response = await fetch(new URL(shown.csv, dashboardUrl));
      const text = await response.text();
      const type = response.headers.get('content-type') ?? '';
      if (!response.ok || !type.startsWith('text/csv')) return [`GET ${shown.csv}: ${response.status} ${type}`];
      const file = await download(page, '[data-field="bill_csv"]');
      if (file.problems.length > 0) return file.problems;
      const problems = [];
      if (file.text !== text) problems.push(`the saved file differs from GET ${shown.csv}`);
      if (file.filename !== `bill-${month}.csv`) problems.push(`saved as ${file.filename}`);
      return problems;
    });
    pass(`the bill's CSV link (${shown.csv}) saves the server's file bill-${month}.csv`);

    // One panel, picked.
    const one = expectedPanels[0];
    await page.selectOption('#bill-panel', one);
    const single = await getJson(billUrl(one));
    await waitFor(`picked, ${one}: the bill page shows its bill only`, 30_000, async () => {
      shown = await readBills(page);
      return billProblems(shown, single, one);
    });
    pass(`picked, ${one}: its bill alone (${shown.hash}), total ${shown.sheets[one].total}`);
    await page.selectOption('#bill-panel', '');
    await waitFor('all panels again', 30_000, async () => {
      shown = await readBills(page);
      return billProblems(shown, all, '');
    });

    // Printing: the button calls window.print() (replaced here: headless Chromium has no print
    // dialog), and the print style sheet leaves the bills alone, black on white, even in the
    // dark colour scheme.
    await page.evaluate(() => {
      window.__printed = 0;
      window.print = () => { window.__printed += 1; };
    });
    await page.click('#bill-print');
    const printed = await page.evaluate(() => window.__printed);
    if (printed !== 1) throw new CheckFailed(`the Print button called window.print() ${printed} times`);
    pass('the Print button calls window.print()');
    if ((await readPrinted(page)).nav === 0) throw new CheckFailed('the navigation is hidden on screen');
    await page.emulateMedia({ media: 'print', colorScheme: 'dark' });
    const media = await readPrinted(page);
    const problems = [];
    for (const what of ['nav', 'header', 'footer', 'controls', 'dashboard']) {
      if (media[what] > 0) problems.push(`${media[what]} ${what} element(s) visible in print`);
    }
    for (const sheet of media.sheets) {
      if (!sheet.visible) problems.push(`the bill of ${sheet.panel} is hidden in print`);
      if (sheet.breakAfter !== 'page') problems.push(`the bill of ${sheet.panel} has break-after: ${sheet.breakAfter}`);
    }
    if (media.sheets.length !== expectedPanels.length) problems.push(`${media.sheets.length} bills in print`);
    if (media.color !== 'rgb(0, 0, 0)') problems.push(`text colour ${media.color} in print`);
    if (media.background !== 'rgb(255, 255, 255)') problems.push(`page background ${media.background} in print`);
    const coloured = media.sheetBackground.filter((colour) => !['rgb(255, 255, 255)', 'rgba(0, 0, 0, 0)'].includes(colour));
    if (coloured.length > 0) problems.push(`bill backgrounds ${coloured.join(', ')} in print`);
    if (problems.length > 0) throw new CheckFailed(`the print style sheet:\n  ${problems.join('\n  ')}`);
    pass('in print media (dark colour scheme): no navigation, header, footer, controls or charts; '
      + 'the bills black on white, each followed by a page break');

    const pdf = await page.pdf({ format: 'A4', printBackground: true });
    if (billPdfPath) await writeFile(billPdfPath, pdf);
    const pages = await pdfPages(pdf);
    const pdfIssues = pdfProblems(pages, all);
    if (pdfIssues.length > 0) throw new CheckFailed(`the printed bill (PDF):\n  ${pdfIssues.join('\n  ')}`);
    const amount = (value) => `${all.currency} ${fixed(value, all.decimals)}`;
    pass(`printed to PDF (${pdf.length} bytes, ${pages.length} pages for ${all.panels.length} panels): each panel's bill `
      + `on its own page with its total (${all.panels.map((bill) => `${bill.panel} ${amount(bill.total)}`).join(', ')}), `
      + `and the grand total ${amount(all.total)}`);
    await page.emulateMedia({ media: 'screen', colorScheme: 'light' });

    if (faults.length > 0) throw new CheckFailed(`the bill page had faults:\n  ${faults.join('\n  ')}`);
    pass('the bill page: no console error, uncaught exception or failed request');
  } finally {
    await page.close();
  }
}

// The page of a server that asks for a token: signed in to, its CSV links must still save the
// server's files. A link cannot send the token, so the page fetches the file with it and hands
// it to the browser as a blob: URL, which the page's Content-Security-Policy must not block.
async function runWithToken(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const faults = [];
  let signedIn = false; // before, the page's requests are refused with 401 on purpose
  // A request the page sent before signing in can be answered (401) after the form is sent:
  // only a refused request that carried the token is a fault. The browser logs every 401 as a
  // console error too; the answers themselves decide.
  const unauthorized = 'the server responded with a status of 401';
  page.on('console', (message) => {
    if (signedIn && message.type() === 'error' && !message.text().includes(unauthorized)) {
      faults.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => faults.push(`uncaught exception: ${error.message}`));
  page.on('response', async (response) => {
    if (!signedIn || response.status() < 400) return;
    const withToken = await response.request().headerValue('authorization').catch(() => null);
    if (response.status() === 401 && !withToken) return;
    faults.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  try {
    const response = await page.goto(tokenUrl, { waitUntil: 'load' });
    if (!response || response.status() !== 200) {
      throw new CheckFailed(`GET ${tokenUrl} answered ${response && response.status()}`);
    }
    await waitFor('the page of a server with a token asks for it', 20_000, async () => (
      await page.locator('#sign-in').isVisible() ? [] : ['no sign-in form']));
    signedIn = true;
    await page.fill('#token', token);
    await page.click('#token-form button[type="submit"]');
    let state;
    await waitFor('signed in, the page shows the first panel\'s load curve and daily bars', 30_000, async () => {
      state = await readPage(page);
      return state.curve.panel === expectedPanels[0] && state.curve.bars.length > 0 && state.daily.bars.length > 0
        ? [] : [`load curve of ${JSON.stringify(state.curve.panel)} with ${state.curve.bars.length} bars, `
          + `${state.daily.bars.length} daily bars`];
    });
    pass(`with a token (${tokenUrl}): signed in, the page shows ${state.curve.panel}'s load curve and daily bars`);
    const authorization = { Authorization: `Bearer ${token}` };
    for (const link of csvLinks) {
      await waitFor(`with a token, clicking ${link.what} CSV link saves the file through a blob: URL`, 30_000, async () => {
        state = await readPage(page);
        return csvAgainstJson(new URL(link.json(state), tokenUrl).href, authorization, () => download(page, link.selector),
          (body, file) => [
            ...fileProblems(file, link.rows(body), link.filename(body)),
            ...(file.url.startsWith('blob:') ? [] : [`saved from ${file.url}, not from a blob: URL`]),
          ]);
      });
      pass(`with a token, clicking ${link.what} CSV link saves the server's file (through a blob: URL)`);
    }
    // The bill's CSV link too.
    await page.click('nav a[href="#bill"]');
    await waitFor('with a token, the bill page shows the last whole month', 30_000, async () => {
      state = await readBills(page);
      return state.view && !state.busy && state.month && state.order === expectedPanels.join(' ')
        ? [] : [`bills of ${JSON.stringify(state.month)} for ${JSON.stringify(state.order)}; error ${JSON.stringify(state.error)}`];
    });
    await waitFor("with a token, clicking the bill's CSV link saves the file through a blob: URL", 30_000, async () => {
      const response = await fetch(new URL(state.csv, tokenUrl), { headers: authorization });
      const text = await response.text();
      if (!response.ok) return [`GET ${state.csv}: ${response.status}`];
      const file = await download(page, '[data-field="bill_csv"]');
      if (file.problems.length > 0) return file.problems;
      return [
        ...(file.text === text ? [] : [`the saved file differs from GET ${state.csv}`]),
        ...(file.filename === `bill-${state.month}.csv` ? [] : [`saved as ${file.filename}`]),
        ...(file.url.startsWith('blob:') ? [] : [`saved from ${file.url}, not from a blob: URL`]),
      ];
    });
    pass(`with a token, the bill page of ${state.month} saves its CSV file (through a blob: URL)`);
    if (faults.length > 0) throw new CheckFailed(`the page with a token had faults:\n  ${faults.join('\n  ')}`);
    pass('with a token: no console error (no Content-Security-Policy violation), exception or refused request');
  } finally {
    await page.close();
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
  const stops = histories.map((history) => history.start());
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
  try {
    console.log(`chromium ${browser.version()}, node ${process.version}`);
    await run(browser);
    await runBill(browser);
    if (tokenUrl) await runWithToken(browser);
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
