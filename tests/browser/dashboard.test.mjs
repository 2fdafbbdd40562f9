// The dashboard in a real browser: opens the api-server's page in headless Chromium and checks
// what a person would see against what the JSON API answers at about the same time.
//
//   node dashboard.test.mjs <dashboard-url> --panels A,B,C --screenshot <file.png>
//       [--bill-pdf <file.pdf>]
//       [--token-url <url of an api-server with API_TOKEN set>]   (the token in $DASHBOARD_TOKEN)
//       [--firing-rule <alert rule that fires> --quiet-rule <alert rule that never fires>]
//   node dashboard.test.mjs <dashboard-url> --many <number of panels> --screenshot <file.png>
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
// token) the same rows as that server's JSON. That server has no METERS_FILE: its cards must
// stay one flat list.
//
// When the server has a METERS_FILE with buildings (GET /api/meters), the building view is
// checked too: the buildings start collapsed with no card created in them, their summaries
// count the panels ONLINE and show their virtual meters' figures of today (a negative one as
// it is, marked), opening one shows its virtual meters (marked "virtual", with their
// expression) and its floors with their panels, what is open stays open across the page's
// refreshes, and the search box filters, opens the groups with a match, counts, and gives the
// groups back as they were when emptied. Virtual meters are picked for the one-panel view
// like panels, and a negative figure is drawn below the zero line.
//
// With --firing-rule and --quiet-rule (a server with an ALERTS_FILE holding both rules), the
// Alerts section is compared with GET /api/alerts: the active alerts (rule, meter, message,
// since when), the firing rule's among them and the quiet rule's not, the marker on the card
// (and in the building's and floor's summaries) of the firing rule's meter and on no other, and
// the recent events, opened with the keyboard. Then the page's own requests to /api/alerts
// are answered with one more active alert, added by this script (the real rules fire once, at
// the server's first evaluation, before the page opens): without a reload the page must list
// it, mark its panel's card and announce it in its polite live region, and drop it again when
// the answers are the server's again.
//
// With --many (a server with that many panels in buildings, and no live publisher), the
// checks are those of a large site: the time from navigation to the first group, the buildings
// collapsed with no card created, no more than a few charts (the number of svg elements
// printed), the monthly charts of the panels that used the most and of the others added up,
// the search, lazily created cards and a negative loss meter.
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
    + '[--bill-pdf <file.pdf>] [--token-url <url>] (the token in $DASHBOARD_TOKEN) '
    + '[--firing-rule <rule> --quiet-rule <rule>]\n'
    + '       node dashboard.test.mjs <dashboard-url> --many <number of panels> --screenshot <file.png>');
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      panels: { type: 'string' },
      many: { type: 'string' },
      screenshot: { type: 'string' },
      'bill-pdf': { type: 'string' },
      'token-url': { type: 'string' },
      'firing-rule': { type: 'string' },
      'quiet-rule': { type: 'string' },
    },
  });
} catch (error) {
  usage(error.message);
}
const [dashboardUrl] = parsed.positionals;
if (!dashboardUrl || parsed.positionals.length !== 1) usage('give exactly one dashboard URL');
const manyPanels = parsed.values.many === undefined ? null : Number(parsed.values.many);
if (manyPanels !== null && !(manyPanels > 0)) usage('--many needs a number of panels');
if (!parsed.values.panels && manyPanels === null) usage('--panels or --many is required');
if (!parsed.values.screenshot) usage('--screenshot is required');
const expectedPanels = (parsed.values.panels ?? '').split(',').filter(Boolean).sort();
const screenshotPath = parsed.values.screenshot;
const billPdfPath = parsed.values['bill-pdf'];
const tokenUrl = parsed.values['token-url'];
const token = process.env.DASHBOARD_TOKEN;
if (tokenUrl && !token) usage('--token-url needs the token in DASHBOARD_TOKEN');
const firingRule = parsed.values['firing-rule'];
const quietRule = parsed.values['quiet-rule'];
if (Boolean(firingRule) !== Boolean(quietRule)) usage('--firing-rule and --quiet-rule go together');
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

// ---- the buildings ---------------------------------------------------------------------------

// What GET /api/meters declares (read in main()): id -> {kind, building, floor, tenant,
// expression, difference}; and every panel and virtual meter the page must list, sorted by id.
const declared = new Map();
let expectedEntries = expectedPanels;
let hierarchy = false;

function learnMeters(body, panels = expectedPanels) {
  for (const panel of body.panels) {
    declared.set(panel.panel, { kind: 'panel', building: panel.building, floor: panel.floor, tenant: panel.tenant, expression: null });
  }
  for (const meter of body.meters) {
    declared.set(meter.meter, {
      kind: 'virtual',
      building: meter.building,
      floor: meter.floor,
      tenant: meter.tenant,
      expression: meter.expression,
      difference: meter.terms.some((term) => term.coefficient < 0),
    });
  }
  hierarchy = [...declared.values()].some((entry) => entry.building !== null);
  expectedEntries = [...new Set([...panels, ...body.meters.map((meter) => meter.meter)])].sort();
}

const kindOf = (id) => declared.get(id)?.kind ?? 'panel';
const virtualIds = () => expectedEntries.filter((id) => kindOf(id) === 'virtual');
// "Floor 3" for a floor named by a number, else the name: the page's label, also searched.
const floorLabel = (floor) => (/^[0-9]+$/.test(floor) ? `Floor ${floor}` : floor);
const count = (value) => fixed(value, 0);
const plural = (n, one, many) => (n === 1 ? one : many);

// Where a card must be: its building's group ('' for "No building") and its floor's (null
// when it has none).
function placeOf(id) {
  const entry = declared.get(id);
  return { building: entry?.building ?? '', floor: entry?.floor ?? null };
}

// Whether `id` matches the search `query`: its id, building, floor (or its label) or tenant
// contains it, whatever the case.
function matchesQuery(id, query) {
  const q = query.trim().toLowerCase();
  const entry = declared.get(id);
  const haystack = [id, entry?.building, entry?.floor, entry?.floor && floorLabel(entry.floor), entry?.tenant]
    .filter(Boolean).join('\n').toLowerCase();
  return q === '' || haystack.includes(q);
}

// What the search box's count says for `ids` (panels and virtual meters) and a query.
function expectedCount(ids, query) {
  const searching = query.trim() !== '';
  const panels = ids.filter((id) => kindOf(id) !== 'virtual');
  const virtual = ids.filter((id) => kindOf(id) === 'virtual');
  const matching = (list) => list.filter((id) => matchesQuery(id, query)).length;
  const part = (list, name) => `${searching ? `${count(matching(list))} of ` : ''}${count(list.length)} ${name}`;
  return `${part(panels, plural(panels.length, 'panel', 'panels'))}`
    + `${virtual.length > 0 ? ` and ${part(virtual, `virtual ${plural(virtual.length, 'meter', 'meters')}`)}` : ''}`
    + `${searching ? ' match' : ''}`;
}

// The groups a realtime answer makes: each building ('' for "No building") and floor with
// its panels ONLINE and in all.
function expectedGroupCounts(body) {
  const groups = {};
  const add = (key, panel) => {
    groups[key] ??= { online: 0, total: 0 };
    if (panel.kind === 'virtual') return;
    groups[key].total += 1;
    if (panel.status === 'ONLINE') groups[key].online += 1;
  };
  for (const panel of body.panels) {
    const { building, floor } = placeOf(panel.panel);
    add(`building ${building}`, panel);
    if (floor !== null) add(`floor ${building} / ${floor}`, panel);
  }
  return groups;
}

function groupCountsOf(state) {
  return Object.fromEntries(state.groups.map((group) => [
    group.level === 'floor' ? `floor ${group.building} / ${group.floor}` : `building ${group.building}`,
    { online: group.online, total: group.total },
  ]));
}

// A group's summary figures: its own virtual meters' usage and cost of today, from a
// today-usage answer (the sign as it is, marked "negative" when below zero).
function expectedGroupMeters(body) {
  const groups = {};
  for (const id of virtualIds()) {
    const { building, floor } = placeOf(id);
    const key = floor === null ? `building ${building}` : `floor ${building} / ${floor}`;
    const today = body.panels.find((panel) => panel.panel === id);
    if (!today) continue;
    groups[key] ??= {};
    groups[key][id] = {
      kwh: fixed(today.usage_kwh, 3),
      kwhValue: today.usage_kwh,
      cost: money(body.currency, today.cost),
      negative: today.usage_kwh < 0,
    };
  }
  return groups;
}

function groupMetersOf(state) {
  const groups = {};
  for (const group of state.groups) {
    if (group.meters.length === 0) continue;
    const key = group.level === 'floor' ? `floor ${group.building} / ${group.floor}` : `building ${group.building}`;
    groups[key] = Object.fromEntries(group.meters.map((meter) => [meter.meter, {
      kwh: meter.kwh, kwhValue: meter.kwhValue, cost: meter.cost, negative: meter.negative,
    }]));
  }
  return groups;
}

// A group of the page by building (and floor).
const groupOf = (state, building, floor = null) => state.groups.find((group) => group.building === building
  && (floor === null ? group.level === 'building' : group.level === 'floor' && group.floor === floor));

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
    kind: panel.kind,
    // A virtual meter's members that are not ONLINE.
    offlineMembers: (panel.offline_members ?? []).join(', '),
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
  const { panel, title, dataStatus, status, power, powerValue, energy, energyValue, lastSeen, kind, offlineMembers } = card;
  return { panel, title, dataStatus, status, power, powerValue, energy, energyValue, lastSeen, kind, offlineMembers };
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
      todayNegative: panel.usage_kwh < 0,
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
      todayNegative: card.todayNegative,
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
    virtual: panel.kind === 'virtual',
    year: String(body.year),
    yearTotal: fixed(panel.total_kwh, 3),
    yearCost: money(body.currency, panel.total_cost),
    yearEstimated: estimatedNote(panel.total_estimated_kwh),
    months: Object.fromEntries(panel.months.map((month) => [month.month, {
      usage: month.usage_kwh,
      estimated: month.estimated_kwh,
      hatched: month.estimated_kwh !== 0 && month.usage_kwh !== 0,
    }])),
  }]));
}

function chartsOf(state) {
  return Object.fromEntries(state.charts.map((chart) => [chart.panel, {
    virtual: chart.virtual,
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
    negativeTotal: body.total_kwh < 0,
    negativeLegend: body.intervals.some((interval) => interval.usage_kwh < 0),
    intervals: Object.fromEntries(body.intervals.map((interval) => [interval.start, {
      usage: interval.usage_kwh,
      estimated: interval.estimated_kwh,
      hatched: interval.estimated_kwh !== 0 && interval.usage_kwh !== 0,
      negative: interval.negative,
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
    negativeTotal: curve.negativeTotal,
    negativeLegend: curve.negativeLegend,
    intervals: Object.fromEntries(curve.bars.map((bar) => [bar.key, {
      usage: bar.value,
      estimated: bar.estimated,
      hatched: bar.hatch > 0,
      negative: bar.negative,
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
    csv: `/api/energy/daily?month=${body.month}&format=csv&panel=${encodeURIComponent(panel)}`,
    peak: { shown: Boolean(peak && peak.max_demand_kw > 0), kw: peak ? fixed(peak.max_demand_kw, 3) : '–', date: peak?.date ?? '' },
    count: days.length,
    dots: days.length,
    tableRows: days.length,
    order: days.map((day) => day.date).join(' '),
    days: Object.fromEntries(days.map((day) => [day.date, {
      usage: day.usage_kwh,
      estimated: day.estimated_kwh,
      hatched: day.estimated_kwh !== 0 && day.usage_kwh !== 0,
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
// largest figure (whatever its sign), a figure above zero drawn above the zero line and one
// below zero below it (a virtual meter's difference), and the hatched (estimated) part of a bar
// its estimated share of the bar (within a drawing unit: a figure other than 0 is drawn at
// least one unit high; an estimated part larger than the figure hatches the whole bar).
function shapeProblems(what, bars, zero = null) {
  const problems = [];
  const tallest = Math.max(...bars.map((bar) => bar.height));
  const largest = Math.max(...bars.map((bar) => Math.abs(bar.value)));
  for (const bar of bars) {
    if ((bar.value !== 0) !== (bar.height > 0)) problems.push(`${what} ${bar.key}: ${bar.value} kWh drawn ${bar.height} high`);
    if (largest > 0 && Math.abs(bar.value) === largest && bar.height < tallest) {
      problems.push(`${what} ${bar.key}: the largest figure is not the tallest bar`);
    }
    if (zero !== null && bar.value < 0 && (bar.y < zero - 0.05 || !bar.negative)) {
      problems.push(`${what} ${bar.key}: ${bar.value} kWh is not drawn below the zero line (y ${bar.y}, zero ${zero})`);
    }
    if (zero !== null && bar.value > 0 && (bar.y + bar.height > zero + 0.05 || bar.negative)) {
      problems.push(`${what} ${bar.key}: ${bar.value} kWh is not drawn above the zero line`);
    }
    const share = bar.value !== 0 ? Math.min(bar.height, (bar.height * Math.abs(bar.estimated)) / Math.abs(bar.value)) : 0;
    if (bar.hatch > bar.height + 0.05 || Math.abs(bar.hatch - share) > 1.1) {
      problems.push(`${what} ${bar.key}: ${bar.estimated} of ${bar.value} kWh estimated, `
        + `hatched ${bar.hatch} of ${bar.height} units`);
    }
  }
  return problems;
}

// ---- the API, asked in the background -------------------------------------------------------

class ApiHistory {
  // `loops` requests at a time, started one after the other: for an answer that takes longer
  // than the server caches it (a second), so that one of them is the one the page got.
  constructor(path, keepMs = API_HISTORY_MS, loops = 1) {
    this.url = new URL(path, dashboardUrl).href;
    this.keepMs = keepMs;
    this.loops = loops;
    this.answers = []; // {at, body}, oldest first
    this.lastError = null;
  }

  async fetch() {
    const response = await fetch(this.url, { headers: { Accept: 'application/json' } });
    const body = await response.json();
    if (!response.ok) throw new Error(`GET ${this.url}: ${response.status} ${JSON.stringify(body)}`);
    const now = Date.now();
    this.answers.push({ at: now, body });
    this.answers.sort((a, b) => a.at - b.at);
    while (this.answers.length > 0 && this.answers[0].at < now - this.keepMs) this.answers.shift();
    return body;
  }

  // Keeps an answer the server gave someone else (the page).
  keep(body) {
    this.answers.push({ at: Date.now(), body });
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
    const loop = async (index) => {
      await sleep((index * API_POLL_MS) / this.loops);
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
    const running = Array.from({ length: this.loops }, (_, index) => loop(index));
    return async () => {
      stopped = true;
      await Promise.all(running);
    };
  }
}

const realtime = new ApiHistory('/api/panel/realtime');
const todayUsage = new ApiHistory('/api/panel/today-usage');
// With virtual meters a monthly answer takes longer than a second (their largest demand comes
// from their members' quarter hours): asked by three loops at once.
const monthly = new ApiHistory('/api/energy/monthly', MONTHLY_HISTORY_MS, 3);
const daily = new ApiHistory('/api/energy/daily');
// Each panel's and virtual meter's quarter hours today, asked as the page asks for them (made in
// main(), once the virtual meters are known).
const intervals = new Map();
const alertsApi = new ApiHistory('/api/alerts');
const histories = [realtime, todayUsage, monthly, daily, ...(firingRule ? [alertsApi] : [])];

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
    // The page asks for the days of the panel it shows, and links to that panel's CSV.
    json: (state) => `/api/energy/daily?panel=${encodeURIComponent(state.daily.panel)}`,
    href: (state) => state.daily.csv,
    rows: dailyCsv,
    filename: (body) => `daily-${body.month}-${body.panels[0]?.panel}.csv`,
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
        y: Number(bar.getAttribute('y')),
        height: Number(bar.getAttribute('height')),
        negative: bar.classList.contains('negative'),
        hatch: hatches.get(bar.getAttribute(`data-${key}`)) ?? 0,
      }));
    };
    const zeroOf = (figure) => number(figure.querySelector('svg'), 'data-zero');
    const search = field('search_count');
    const curve = document.querySelector('#load-curve');
    const daily = document.querySelector('#daily-chart');
    const picker = document.querySelector('#panel');
    const connection = field('connection');
    return {
      sameDocument: window.__dashboardTestMarker === true,
      connectionState: connection.getAttribute('data-state'),
      connectionText: text(connection),
      mode: document.querySelector('#cards').getAttribute('data-mode'),
      svgs: document.querySelectorAll('svg').length,
      search: {
        value: document.querySelector('#search').value,
        visible: document.querySelector('#search').checkVisibility(),
        label: text(document.querySelector('label[for="search"]')),
        type: document.querySelector('#search').type,
        count: text(search),
        matches: number(search, 'data-matches'),
        total: number(search, 'data-total'),
        virtualMatches: number(search, 'data-virtual-matches'),
        virtualTotal: number(search, 'data-virtual-total'),
        empty: field('search_empty').checkVisibility(),
      },
      groups: [...document.querySelectorAll('#cards details.group')].map((group) => ({
        level: group.classList.contains('group-floor') ? 'floor' : 'building',
        building: group.getAttribute('data-building'),
        floor: group.getAttribute('data-floor'),
        open: group.open,
        visible: group.checkVisibility(),
        name: text(field('group_name', group)),
        count: text(field('group_count', group)),
        online: number(field('group_count', group), 'data-online'),
        total: number(field('group_count', group), 'data-total'),
        cards: group.querySelectorAll(':scope > .group-body > .cards > .card').length,
        alerts: field('group_alerts', group).checkVisibility() ? text(field('group_alerts', group)) : null,
        meters: [...field('group_meters', group).children].map((meter) => ({
          meter: meter.getAttribute('data-meter'),
          kwh: text(field('meter_kwh', meter)),
          kwhValue: value(field('meter_kwh', meter)),
          cost: text(field('meter_cost', meter)),
          negative: field('meter_negative', meter).checkVisibility(),
          visible: meter.checkVisibility(),
        })),
      })),
      cards: [...document.querySelectorAll('#cards .card[data-panel]')].map((card) => ({
        panel: card.getAttribute('data-panel'),
        visible: card.checkVisibility(),
        direct: card.parentElement === document.querySelector('#cards'),
        building: card.closest('details.group-building')?.getAttribute('data-building') ?? null,
        floor: card.closest('details.group-floor')?.getAttribute('data-floor') ?? null,
        kind: card.getAttribute('data-kind'),
        virtualMark: field('virtual', card).checkVisibility() ? text(field('kind', card)) : null,
        expression: field('expression', card).checkVisibility() ? text(field('expression', card)) : null,
        offlineMembers: field('offline_members_row', card).checkVisibility() ? text(field('offline_members', card)) : '',
        tags: field('tags', card).checkVisibility() ? text(field('tags', card)) : '',
        alert: field('alert', card).checkVisibility() ? text(field('alert', card)) : null,
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
        todayNegative: field('today_negative', card).checkVisibility(),
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
      errors: ['today_error', 'detail_error', 'monthly_error', 'alerts_error'].map((name) => text(field(name))).filter(Boolean),
      announcer: text(field('announcer')),
      alerts: {
        visible: document.querySelector('#alerts').checkVisibility(),
        summary: text(field('alerts_summary')),
        none: field('alerts_none').checkVisibility(),
        active: [...document.querySelectorAll('#alerts-active > li')].map((item) => ({
          id: item.getAttribute('data-id'),
          rule: text(field('alert_rule', item)),
          meter: text(field('alert_meter', item)),
          message: text(field('alert_message', item)),
          since: field('alert_since', item).getAttribute('datetime'),
          sinceText: text(field('alert_since', item)),
          ago: text(field('alert_ago', item)),
          visible: item.checkVisibility(),
        })),
        recentShown: document.querySelector('#alerts-recent').checkVisibility(),
        recentOpen: document.querySelector('#alerts-recent').open,
        recentCount: text(field('alerts_recent_count')),
        recent: [...document.querySelectorAll('#alerts-events > li')].map((item) => ({
          id: item.getAttribute('data-id'),
          rule: item.getAttribute('data-rule'),
          transition: item.getAttribute('data-transition'),
          transitionText: text(field('event_transition', item)),
          at: field('event_at', item).getAttribute('datetime'),
          atText: text(field('event_at', item)),
          message: text(field('event_message', item)),
          pending: field('event_pending', item).checkVisibility() ? text(field('event_pending', item)) : '',
          visible: item.checkVisibility(),
        })),
      },
      charts: [...document.querySelectorAll('#charts > [data-panel]')].map((chart) => ({
        panel: chart.getAttribute('data-panel'),
        visible: chart.checkVisibility(),
        virtual: field('kind', chart).checkVisibility(),
        zero: zeroOf(chart),
        year: text(field('year', chart)),
        yearTotal: text(field('year_total_kwh', chart)),
        yearCost: text(field('year_total_cost', chart)),
        yearEstimated: note('year_estimated', chart),
        bars: barsOf(chart, 'month').map((bar) => ({ ...bar, key: Number(bar.key) })),
        tableRows: chart.querySelectorAll('tbody tr').length,
      })),
      others: [...document.querySelectorAll('#charts > [data-others]')].map((chart) => ({
        others: number(chart, 'data-others'),
        title: text(field('panel', chart)),
        yearTotalValue: value(field('year_total_kwh', chart)),
        bars: barsOf(chart, 'month').map((bar) => ({ ...bar, key: Number(bar.key) })),
      })),
      monthlyNote: field('monthly_note').checkVisibility() ? text(field('monthly_note')) : null,
      picker: {
        visible: picker.checkVisibility(),
        options: [...picker.options].map((option) => option.value),
        texts: [...picker.options].map((option) => option.textContent),
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
        negativeTotal: field('curve_negative', curve).checkVisibility(),
        negativeLegend: field('negative_legend', curve).checkVisibility(),
        csv: field('curve_csv', curve).getAttribute('href'),
        zero: zeroOf(curve),
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
        zero: zeroOf(daily),
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
  for (const id of expectedEntries) {
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

    if (hierarchy) state = await checkBuildings(page);

    await waitFor(`one visible card per panel and virtual meter${hierarchy ? ', each in its building and floor' : ', sorted by id'}`, 20_000, async () => {
      state = await readPage(page);
      const shown = state.cards.map((card) => card.panel);
      const problems = [];
      if (JSON.stringify(hierarchy ? [...shown].sort() : shown) !== JSON.stringify(expectedEntries)) {
        problems.push(`cards ${JSON.stringify(shown)}, panels and virtual meters ${JSON.stringify(expectedEntries)}`);
      }
      const hidden = state.cards.filter((card) => !card.visible).map((card) => card.panel);
      if (hidden.length > 0) problems.push(`hidden cards: ${hidden.join(', ')}`);
      for (const card of state.cards) {
        if (hierarchy) {
          const { building, floor } = placeOf(card.panel);
          if (card.building !== building || card.floor !== floor) {
            problems.push(`${card.panel} is in building ${JSON.stringify(card.building)}, floor ${JSON.stringify(card.floor)}; `
              + `METERS_FILE says ${JSON.stringify(building)}, ${JSON.stringify(floor)}`);
          }
        } else if (!card.direct) {
          problems.push(`${card.panel} is not in the flat list`);
        }
        const entry = declared.get(card.panel);
        if (kindOf(card.panel) === 'virtual') {
          if (card.kind !== 'virtual' || card.virtualMark !== 'virtual' || card.expression !== entry.expression) {
            problems.push(`${card.panel}: kind ${card.kind}, mark ${JSON.stringify(card.virtualMark)}, expression `
              + `${JSON.stringify(card.expression)}; /api/meters says ${JSON.stringify(entry.expression)}`);
          }
        } else if (card.kind !== 'panel' || card.virtualMark !== null) {
          problems.push(`${card.panel}: kind ${card.kind}, marked ${JSON.stringify(card.virtualMark)}`);
        }
        const tenant = entry?.tenant ? `Tenant: ${entry.tenant}` : '';
        if (hierarchy && card.tags !== tenant) problems.push(`${card.panel}: tags ${JSON.stringify(card.tags)}, expected ${JSON.stringify(tenant)}`);
      }
      const listed = (realtime.latest()?.panels ?? []).map((panel) => panel.panel);
      if (JSON.stringify(listed) !== JSON.stringify(expectedEntries)) {
        problems.push(`the API lists ${JSON.stringify(listed)}`);
      }
      return problems;
    });
    pass(`a card per panel and virtual meter: ${expectedEntries.join(', ')}`);
    for (const id of virtualIds()) {
      const card = state.cards.find((c) => c.panel === id);
      pass(`${id}'s card says "${card.virtualMark}" and shows its expression "${card.expression}"`);
    }
    // Marked, to find out later whether the page ever made its cards or groups again.
    await page.evaluate(() => {
      for (const element of document.querySelectorAll('#cards .card, #cards details.group')) element.__kept = true;
    });
    const todayRequestsAtMark = requestsTo('/api/panel/today-usage');

    let restoreAlerts = null;
    if (firingRule) {
      await checkAlerts(page);
      restoreAlerts = await checkNewAlert(page);
      await restoreAlerts();
    }

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
    const first = state.cards.find((card) => card.panel === expectedPanels[0]);
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

    if (hierarchy) await checkGroupFigures(page);

    // One panel's load curve and daily bars: the first panel at first, then each other one as
    // it is picked, then each virtual meter, the differences (a loss, below zero) last.
    const virtualOrder = [...virtualIds()].sort((a, b) => declared.get(a).difference - declared.get(b).difference || (a < b ? -1 : 1));
    for (const [index, panel] of [...expectedPanels, ...virtualOrder].entries()) {
      if (index > 0) await page.selectOption('#panel', panel);
      await waitFor(`the load curve and daily bars of ${panel} are those of its intervals and /api/energy/daily`, 30_000, async () => {
        state = await readPage(page);
        const problems = [];
        const { picker, curve, daily: days } = state;
        if (JSON.stringify(picker.options) !== JSON.stringify(expectedEntries)) {
          problems.push(`the panel picker offers ${JSON.stringify(picker.options)}`);
        }
        const texts = expectedEntries.map((id) => (kindOf(id) === 'virtual' ? `${id} (virtual)` : id));
        if (JSON.stringify(picker.texts) !== JSON.stringify(texts)) problems.push(`the panel picker reads ${JSON.stringify(picker.texts)}`);
        if (picker.value !== panel) problems.push(`the panel picker shows ${picker.value}`);
        if (!picker.visible || !curve.visible || !days.visible) problems.push('the picker or a chart is hidden');
        problems.push(...shapeProblems('quarter hour', curve.bars, curve.zero), ...shapeProblems('day', days.bars, days.zero));
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
      const below = curve.bars.filter((bar) => bar.negative).length;
      pass(`${index === 0 ? 'at first' : 'picked'}, ${kindOf(panel) === 'virtual' ? 'virtual meter ' : ''}${panel}: `
        + `its ${curve.bars.length} quarter hours today (${estimated} with an estimated part, hatched`
        + `${below > 0 ? `; ${below} negative, drawn below the zero line` : ''}) and ${days.bars.length} days of `
        + `${days.monthText} (largest demand ${days.peak.kw} kW) are those of its intervals and /api/energy/daily`);
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

    if (hierarchy) {
      await checkKept(page, requestsTo('/api/panel/today-usage') - todayRequestsAtMark);
      state = await checkSearch(page);
    } else {
      state = await checkFlatSearch(page, expectedEntries);
    }

    await waitFor('the monthly chart has 12 bars per panel with the figures of /api/energy/monthly', 30_000, async () => {
      state = await readPage(page);
      const problems = [];
      const shown = state.charts.map((chart) => chart.panel);
      if (JSON.stringify(shown) !== JSON.stringify(expectedEntries)) {
        problems.push(`charts ${JSON.stringify(shown)}, panels and virtual meters ${JSON.stringify(expectedEntries)}`);
      }
      if (state.others.length > 0 || state.monthlyNote !== null) problems.push('a chart of the others, or a note, with a few panels');
      for (const chart of state.charts) {
        const months = chart.bars.map((bar) => bar.key);
        if (JSON.stringify(months) !== JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])) {
          problems.push(`${chart.panel}: ${chart.bars.length} bars for months ${JSON.stringify(months)}`);
        }
        if (chart.tableRows !== 12) problems.push(`${chart.panel}: ${chart.tableRows} table rows`);
        if (!chart.visible) problems.push(`${chart.panel}: the chart is hidden`);
        problems.push(...shapeProblems(`${chart.panel} month`, chart.bars, chart.zero));
      }
      const answers = monthly.recent(MONTHLY_HISTORY_MS);
      if (answers.length === 0) return [...problems, `no monthly answer from the API yet (${monthly.lastError})`];
      return [...problems, ...closest(chartsOf(state), answers.map(expectedCharts))];
    });
    const firstChart = state.charts.find((chart) => chart.panel === expectedPanels[0]);
    const withData = firstChart.bars.filter((bar) => bar.value !== 0).length;
    const hatched = state.charts.map((chart) => `${chart.bars.filter((bar) => bar.hatch > 0).length} for ${chart.panel}`);
    pass(`the monthly chart has 12 bars per panel with the figures of /api/energy/monthly, estimated parts hatched `
      + `(${withData} months with usage for ${firstChart.panel} in ${firstChart.year}; months with `
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

    if (restoreAlerts) {
      await waitFor("with the server's answers again, the added alert is gone: the page shows /api/alerts", 30_000, async () => {
        state = await readPage(page);
        return alertsProblems(state);
      });
      pass(`with the server's answers again, the added alert and its marker are gone; active: ${state.alerts.active.map((item) => item.rule).join(', ')}`);
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

// ---- the building view ----------------------------------------------------------------------

// The buildings start collapsed, with no card created in them, and count their panels ONLINE as
// /api/panel/realtime does; opening a building (a click on its summary) shows its virtual
// meters, then its floors (open, as the building is small) with their panels. Every building
// is left open for the checks that follow.
async function checkBuildings(page) {
  const buildings = [...new Set(expectedEntries.map((id) => placeOf(id).building))]
    .sort((a, b) => (a === '') - (b === '') || a.localeCompare(b, 'en', { numeric: true }));
  let state;
  await waitFor('a collapsed group per building, counting its panels ONLINE as /api/panel/realtime does', 20_000, async () => {
    state = await readPage(page);
    const problems = [];
    const shown = state.groups.filter((group) => group.level === 'building');
    if (JSON.stringify(shown.map((group) => group.building)) !== JSON.stringify(buildings)) {
      problems.push(`building groups ${JSON.stringify(shown.map((group) => group.building))}, expected ${JSON.stringify(buildings)}`);
    }
    for (const group of shown) {
      if (group.open || !group.visible) problems.push(`building ${JSON.stringify(group.building)}: open ${group.open}, visible ${group.visible}`);
      const name = group.building === '' ? 'No building' : group.building;
      if (group.name !== name) problems.push(`building ${JSON.stringify(group.building)} is named ${JSON.stringify(group.name)}`);
    }
    if (state.mode !== 'buildings') problems.push(`#cards is in ${state.mode} mode`);
    if (state.cards.length > 0) problems.push(`${state.cards.length} cards made in collapsed groups`);
    const visibleFloors = state.groups.filter((group) => group.level === 'floor' && group.visible);
    if (visibleFloors.length > 0) problems.push(`${visibleFloors.length} floors visible in collapsed buildings`);
    const answers = realtime.recent(15_000);
    if (answers.length === 0) return [...problems, 'no realtime answer yet'];
    problems.push(...closest(groupCountsOf(state), answers.map(expectedGroupCounts)));
    for (const group of state.groups) {
      const expected = group.total > 0
        ? `${count(group.online)} of ${count(group.total)} ${plural(group.total, 'panel', 'panels')} ONLINE`
        : null;
      if (expected !== null && group.count !== expected) problems.push(`${group.name} says ${JSON.stringify(group.count)}`);
    }
    if (state.search.count !== expectedCount(expectedEntries, '')) {
      problems.push(`the search box's count says ${JSON.stringify(state.search.count)}`);
    }
    return problems;
  });
  pass(`the buildings start collapsed, no card made in them: ${state.groups.filter((group) => group.level === 'building')
    .map((group) => `${group.name} (${group.count})`).join(', ')}; the search box says "${state.search.count}"`);

  for (const building of buildings) {
    await page.click(`#cards details.group-building[data-building="${building}"] > summary`);
  }
  await waitFor('opened, each building shows its virtual meters, then its floors with their panels', 20_000, async () => {
    state = await readPage(page);
    const problems = [];
    for (const building of buildings) {
      const group = groupOf(state, building);
      if (!group?.open) problems.push(`building ${JSON.stringify(building)} did not open`);
      const here = expectedEntries.filter((id) => placeOf(id).building === building);
      const direct = here.filter((id) => placeOf(id).floor === null);
      // Its own list: virtual meters first, then by id.
      const order = [...direct].sort((a, b) => (kindOf(b) === 'virtual') - (kindOf(a) === 'virtual') || (a < b ? -1 : 1));
      const listed = state.cards.filter((card) => card.building === building && card.floor === null).map((card) => card.panel);
      if (JSON.stringify(listed) !== JSON.stringify(order)) problems.push(`${building} lists ${JSON.stringify(listed)}, expected ${JSON.stringify(order)}`);
      const floors = [...new Set(here.map((id) => placeOf(id).floor).filter((floor) => floor !== null))]
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      const shownFloors = state.groups.filter((g) => g.level === 'floor' && g.building === building);
      if (JSON.stringify(shownFloors.map((g) => g.floor)) !== JSON.stringify(floors)) {
        problems.push(`${building}'s floors ${JSON.stringify(shownFloors.map((g) => g.floor))}, expected ${JSON.stringify(floors)}`);
      }
      for (const floor of shownFloors) {
        if (!floor.open || !floor.visible) problems.push(`${building}, ${floor.name}: open ${floor.open}, visible ${floor.visible}`);
        if (floor.name !== floorLabel(floor.floor)) problems.push(`floor ${floor.floor} is named ${JSON.stringify(floor.name)}`);
        const panels = here.filter((id) => placeOf(id).floor === floor.floor);
        const onFloor = state.cards.filter((card) => card.building === building && card.floor === floor.floor);
        if (JSON.stringify(onFloor.map((card) => card.panel).sort()) !== JSON.stringify(panels)) {
          problems.push(`${building}, ${floor.name} has ${JSON.stringify(onFloor.map((card) => card.panel))}`);
        }
      }
    }
    const hidden = state.cards.filter((card) => !card.visible).map((card) => card.panel);
    if (hidden.length > 0) problems.push(`hidden cards: ${hidden.join(', ')}`);
    return problems;
  });
  for (const building of buildings) {
    const floors = state.groups.filter((g) => g.level === 'floor' && g.building === building);
    const direct = state.cards.filter((card) => card.building === building && card.floor === null);
    pass(`opened, ${building || 'No building'} shows ${direct.map((card) => `${card.panel}${card.kind === 'virtual' ? ' (virtual)' : ''}`).join(', ') || 'no card of its own'}`
      + `${floors.length > 0 ? `, then ${floors.map((floor) => `${floor.name}: ${state.cards.filter((c) => c.building === building && c.floor === floor.floor).map((c) => c.panel).join(', ')}`).join('; ')}` : ''}`);
  }
  return state;
}

// Each group's summary shows its own virtual meters' usage and cost of today as
// /api/panel/today-usage does, a negative one with its sign and marked "negative".
async function checkGroupFigures(page) {
  let state;
  await waitFor("each group's summary shows its virtual meters' figures of today as /api/panel/today-usage does", 30_000, async () => {
    state = await readPage(page);
    const answers = todayUsage.recent(API_HISTORY_MS);
    if (answers.length === 0) return [`no today-usage answer yet (${todayUsage.lastError})`];
    const problems = closest(groupMetersOf(state), answers.map(expectedGroupMeters));
    for (const group of state.groups) {
      for (const meter of group.meters) {
        if (!meter.visible && group.visible) problems.push(`${meter.meter} is hidden in ${group.name}'s summary`);
      }
    }
    return problems;
  });
  for (const group of state.groups) {
    for (const meter of group.meters) {
      pass(`${group.name}'s summary: ${meter.meter} ${meter.kwh} kWh, ${meter.cost}${meter.negative ? ', marked "negative"' : ''}, `
        + 'as /api/panel/today-usage says (its sign included)');
    }
  }
  const differences = virtualIds().filter((id) => declared.get(id).difference);
  const loss = state.cards.find((card) => differences.includes(card.panel));
  if (loss) {
    await waitFor(`${loss.panel}'s card shows its usage of today with its sign, marked when negative`, 30_000, async () => {
      state = await readPage(page);
      const card = state.cards.find((c) => c.panel === loss.panel);
      const answers = todayUsage.recent(API_HISTORY_MS).map((body) => body.panels.find((panel) => panel.panel === loss.panel)).filter(Boolean);
      return answers.some((today) => card.todayUsage === fixed(today.usage_kwh, 3) && card.todayNegative === today.usage_kwh < 0)
        ? [] : [`${loss.panel} shows ${card.todayUsage} kWh (negative mark ${card.todayNegative})`];
    });
    const card = state.cards.find((c) => c.panel === loss.panel);
    pass(`${loss.panel}'s card: ${card.todayUsage} kWh today${card.todayNegative ? ', marked "negative"' : ''}, power ${card.power} kW`);
  }
}

// What the user opened is still open, and no card or group was made again, after the page
// refreshed today's figures (and the stream updated every card).
async function checkKept(page, refreshes) {
  const kept = await page.evaluate(() => {
    const elements = [...document.querySelectorAll('#cards .card, #cards details.group')];
    return {
      elements: elements.length,
      remade: elements.filter((element) => element.__kept !== true).length,
      closed: [...document.querySelectorAll('#cards details.group')].filter((group) => !group.open).length,
    };
  });
  const problems = [];
  if (refreshes < 1) problems.push('the page has not refreshed today\'s figures since the groups were opened');
  if (kept.remade > 0) problems.push(`${kept.remade} of ${kept.elements} cards and groups were made again`);
  if (kept.closed > 0) problems.push(`${kept.closed} groups closed by themselves`);
  if (problems.length > 0) throw new CheckFailed(`the open groups across refreshes:\n  ${problems.join('\n  ')}`);
  pass(`after ${refreshes} refreshes of today's figures and the stream's updates, the ${kept.elements} cards and groups `
    + 'are the same elements and every group the user opened is still open');
}

// Types `query` into the search box; waits until the page shows what it should.
async function search(page, query, what, expect) {
  await page.fill('#search', query);
  let state;
  await waitFor(`searching ${JSON.stringify(query)}: ${what}`, 10_000, async () => {
    state = await readPage(page);
    return expect(state);
  });
  return state;
}

// The search box: it filters the cards by id, building, floor or tenant, opens the groups with
// a match and hides the others, counts; emptied, the groups are as the user left them.
async function checkSearch(page) {
  let state = await readPage(page);
  const problems = [];
  if (!state.search.visible || state.search.type !== 'search' || state.search.label !== 'Find a panel') {
    problems.push(`the search box: visible ${state.search.visible}, type ${state.search.type}, label ${JSON.stringify(state.search.label)}`);
  }
  if (problems.length > 0) throw new CheckFailed(problems.join('; '));
  const panel = expectedPanels[expectedPanels.length - 1];
  const tenant = declared.get(panel)?.tenant;
  const building = placeOf(panel).building;
  const floor = placeOf(panel).floor;
  const queries = [
    panel.toLowerCase(), // an id, in another case
    ...(tenant ? [tenant.toUpperCase()] : []),
    ...(building ? [building] : []),
    ...(floor !== null ? [floorLabel(floor)] : []),
    'no such panel',
  ];
  // What the page must show for a query: the matching cards, their groups open and the others
  // hidden, and the count.
  const expect = (query) => (shown) => {
    const wrong = [];
    const matching = expectedEntries.filter((id) => matchesQuery(id, query));
    const visible = shown.cards.filter((card) => card.visible).map((card) => card.panel).sort();
    if (JSON.stringify(visible) !== JSON.stringify(matching)) wrong.push(`cards shown ${JSON.stringify(visible)}, matching ${JSON.stringify(matching)}`);
    for (const group of shown.groups) {
      const inside = matching.filter((id) => placeOf(id).building === group.building
        && (group.level === 'building' || placeOf(id).floor === group.floor));
      const hasMatch = inside.length > 0;
      const parentOpen = group.level === 'building' || groupOf(shown, group.building)?.open;
      if (group.open !== hasMatch || group.visible !== (hasMatch && parentOpen)) {
        wrong.push(`${group.name}${group.level === 'floor' ? ` of ${group.building}` : ''}: open ${group.open}, visible ${group.visible}, `
          + `${inside.length} matches`);
      }
    }
    const text = expectedCount(expectedEntries, query);
    if (shown.search.count !== text) wrong.push(`the count says ${JSON.stringify(shown.search.count)}, expected ${JSON.stringify(text)}`);
    if (shown.search.empty !== (matching.length === 0)) wrong.push(`"no match" shown: ${shown.search.empty}`);
    return wrong;
  };
  // The user closes every building first: the search must open what it finds.
  for (const group of state.groups.filter((g) => g.level === 'building' && g.open)) {
    await page.click(`#cards details.group-building[data-building="${group.building}"] > summary`);
  }
  await waitFor('the buildings closed by the user', 10_000, async () => {
    state = await readPage(page);
    return state.groups.filter((g) => g.level === 'building' && g.open).map((g) => `${g.name} is open`);
  });
  for (const query of queries) {
    state = await search(page, query, 'the matching cards in their opened groups, the others hidden, the count', expect(query));
    pass(`search ${JSON.stringify(query)}: ${state.search.count}; shown ${state.cards.filter((c) => c.visible).map((c) => c.panel).join(', ') || 'nothing'}`
      + `${state.search.empty ? ' ("No panel or virtual meter matches.")' : ''}; open groups: `
      + `${state.groups.filter((g) => g.open && g.visible).map((g) => (g.level === 'floor' ? `${g.building} ${g.name}` : g.name)).join(', ') || 'none'}`);
  }
  // Emptied: the buildings closed again, as the user left them; the floors open.
  state = await search(page, '', 'the groups as the user left them', (shown) => {
    const wrong = [];
    for (const group of shown.groups) {
      const open = group.level === 'floor';
      if (group.open !== open) wrong.push(`${group.name}: open ${group.open}`);
    }
    if (shown.search.count !== expectedCount(expectedEntries, '')) wrong.push(`the count says ${JSON.stringify(shown.search.count)}`);
    return wrong;
  });
  pass(`search emptied: every building closed again, as the user left them; "${state.search.count}"`);
  // Open again for the rest of the checks (and the screenshot).
  for (const group of state.groups.filter((g) => g.level === 'building')) {
    await page.click(`#cards details.group-building[data-building="${group.building}"] > summary`);
  }
  await waitFor('every building open again', 10_000, async () => {
    state = await readPage(page);
    return state.cards.filter((card) => !card.visible).map((card) => `${card.panel} hidden`);
  });
  return state;
}

// Without buildings (a server without METERS_FILE, whose panels are `ids`) the cards are one
// flat list, sorted by id; the search box filters it all the same, by id.
async function checkFlatSearch(page, ids) {
  let state;
  await waitFor('without buildings, one flat list of cards, sorted by id', 20_000, async () => {
    state = await readPage(page);
    const shown = state.cards.map((card) => card.panel);
    const problems = [];
    if (state.mode !== 'flat' || state.groups.length > 0) problems.push(`#cards in ${state.mode} mode, ${state.groups.length} groups`);
    if (JSON.stringify(shown) !== JSON.stringify(ids)) problems.push(`cards ${JSON.stringify(shown)}`);
    if (state.cards.some((card) => !card.direct || !card.visible)) problems.push('a card is hidden or not in the flat list');
    const text = `${ids.length} ${plural(ids.length, 'panel', 'panels')}`;
    if (state.search.count !== text) problems.push(`the count says ${JSON.stringify(state.search.count)}, expected ${JSON.stringify(text)}`);
    return problems;
  });
  const query = ids[0].slice(-3).toLowerCase();
  const matching = ids.filter((id) => id.toLowerCase().includes(query));
  state = await search(page, query, 'the matching cards', (shown) => {
    const visible = shown.cards.filter((card) => card.visible).map((card) => card.panel);
    const text = `${matching.length} of ${ids.length} ${plural(ids.length, 'panel', 'panels')} match`;
    return [
      ...(JSON.stringify(visible) === JSON.stringify(matching) ? [] : [`cards shown ${JSON.stringify(visible)}, matching ${JSON.stringify(matching)}`]),
      ...(shown.search.count === text ? [] : [`the count says ${JSON.stringify(shown.search.count)}, expected ${JSON.stringify(text)}`]),
    ];
  });
  pass(`without buildings: one flat list of ${ids.length} cards, sorted by id; search ${JSON.stringify(query)}: "${state.search.count}"`);
  state = await search(page, '', 'every card again', (shown) => shown.cards.filter((card) => !card.visible).map((card) => `${card.panel} hidden`));
  return state;
}

// ---- alerts ---------------------------------------------------------------------------------

// How the page writes an instant in the server's time zone: "13:28" today, "13:28 on
// 2026-12-05" another day.
function expectedInstant(instant, zone) {
  const local = localParts(instant, zone);
  return local.date === localParts(new Date().toISOString(), zone).date ? local.time : `${local.time} on ${local.date}`;
}

// The Alerts section as one /api/alerts answer would draw it (times in `zone`).
function expectedAlerts(body, zone) {
  const rules = body.rules.length;
  const active = body.active.length;
  return {
    visible: rules > 0 || body.recent.length > 0,
    summary: rules === 0 ? '' : `(${active > 0 ? `${count(active)} active, ` : ''}${count(rules)} ${plural(rules, 'rule', 'rules')})`,
    none: active === 0,
    activeCount: active,
    active: Object.fromEntries(body.active.map((event, index) => [index, {
      id: event.id,
      rule: event.rule,
      meter: event.meter,
      message: event.message,
      since: event.fired_at,
      sinceText: expectedInstant(event.fired_at, zone),
    }])),
    recentShown: body.recent.length > 0,
    recentCount: `(${count(body.recent.length)}, last 7 days)`,
    recentLength: body.recent.length,
    recent: Object.fromEntries(body.recent.map((event, index) => [index, {
      id: event.id,
      rule: event.rule,
      transition: event.transition,
      transitionText: event.transition === 'fired' ? 'Fired' : 'Resolved',
      at: event.at,
      atText: expectedInstant(event.at, zone),
      message: event.message,
      pending: event.pending.length > 0 ? `notification pending: ${event.pending.join(', ')}` : '',
    }])),
    // Each card's marker: "Alert" and the rules firing on its meter; none on the others.
    cards: Object.fromEntries(expectedEntries.map((id) => {
      const rulesOn = body.active.filter((event) => event.meter === id).map((event) => event.rule);
      return [id, rulesOn.length > 0 ? `Alert ${rulesOn.join(', ')}` : null];
    })),
    // Each group's summary: how many active alerts its meters have.
    groups: Object.fromEntries(hierarchy ? [...new Set(expectedEntries.flatMap((id) => {
      const { building, floor } = placeOf(id);
      return [`building ${building}`, ...(floor === null ? [] : [`floor ${building} / ${floor}`])];
    }))].map((key) => {
      const n = body.active.filter((event) => {
        const { building, floor } = placeOf(event.meter);
        return key === `building ${building}` || key === `floor ${building} / ${floor}`;
      }).length;
      return [key, n > 0 ? `${count(n)} ${plural(n, 'alert', 'alerts')}` : null];
    }) : []),
  };
}

function alertsOf(state) {
  const { alerts } = state;
  return {
    visible: alerts.visible,
    summary: alerts.summary,
    none: alerts.none,
    activeCount: alerts.active.length,
    active: Object.fromEntries(alerts.active.map((item, index) => [index, {
      id: item.id, rule: item.rule, meter: item.meter, message: item.message, since: item.since, sinceText: item.sinceText,
    }])),
    recentShown: alerts.recentShown,
    recentCount: alerts.recentCount,
    recentLength: alerts.recent.length,
    recent: Object.fromEntries(alerts.recent.map((item, index) => [index, {
      id: item.id,
      rule: item.rule,
      transition: item.transition,
      transitionText: item.transitionText,
      at: item.at,
      atText: item.atText,
      message: item.message,
      pending: item.pending,
    }])),
    cards: Object.fromEntries(state.cards.map((card) => [card.panel, card.alert])),
    groups: Object.fromEntries(state.groups.map((group) => [
      group.level === 'floor' ? `floor ${group.building} / ${group.floor}` : `building ${group.building}`,
      group.alerts,
    ])),
  };
}

// The page's alerts against the server's answers of the last minute (an answer the test changed
// when `change` is given), and the active ones' "… ago" against their own age.
function alertsProblems(state, change = (body) => body) {
  const answers = alertsApi.recent(API_HISTORY_MS);
  if (answers.length === 0) return [`no /api/alerts answer yet (${alertsApi.lastError})`];
  const zone = todayUsage.latest()?.timezone;
  if (!zone) return ['no today-usage answer (with the time zone) yet'];
  const problems = closest(alertsOf(state), answers.map((body) => expectedAlerts(change(structuredClone(body)), zone)));
  for (const item of state.alerts.active) {
    if (!item.visible) problems.push(`the active alert ${item.rule} is hidden`);
    const minutes = Math.floor((Date.now() - Date.parse(item.since)) / 60_000);
    const ago = minutes < 1 ? 'less than a minute ago' : `${minutes} min ago`;
    // A minute either way: the page counts on the server's clock, which it reads in seconds.
    const near = [ago, `${minutes - 1} min ago`, `${minutes + 1} min ago`, 'less than a minute ago'];
    if (minutes < 60 && !near.includes(item.ago)) problems.push(`${item.rule} fired ${minutes} min ago; the page says ${JSON.stringify(item.ago)}`);
  }
  return problems;
}

// The Alerts section shows GET /api/alerts: the firing rule active, with a marker on its
// meter's card and in the summaries of its building and floor, the quiet rule not; the recent
// events, opened with the keyboard, list the firing. Nothing of it was announced: it was
// active before the page opened.
async function checkAlerts(page) {
  let state;
  await waitFor(`/api/alerts lists ${firingRule} as active and ${quietRule} as ok`, 20_000, async () => {
    const body = alertsApi.latest();
    if (!body) return [`no /api/alerts answer yet (${alertsApi.lastError})`];
    const ruleState = (rule) => body.rules.find((r) => r.rule === rule)?.state;
    const problems = [];
    if (!body.active.some((event) => event.rule === firingRule) || ruleState(firingRule) !== 'firing') problems.push(`${firingRule} is not active: ${JSON.stringify(body)}`);
    if (body.active.some((event) => event.rule === quietRule) || ruleState(quietRule) !== 'ok') problems.push(`${quietRule} is not ok: ${JSON.stringify(body)}`);
    if (!body.recent.some((event) => event.rule === firingRule && event.transition === 'fired')) problems.push(`no firing of ${firingRule} in recent`);
    return problems;
  });
  await waitFor('the Alerts section shows the active alerts and recent events of /api/alerts, a marker on each card of a meter with an active alert', 20_000, async () => {
    state = await readPage(page);
    const problems = alertsProblems(state);
    if (state.alerts.active.some((item) => item.rule === quietRule)) problems.push(`${quietRule} is shown as active`);
    if (!state.alerts.active.some((item) => item.rule === firingRule)) problems.push(`${firingRule} is not shown as active`);
    return problems;
  });
  const alert = state.alerts.active.find((item) => item.rule === firingRule);
  const marked = state.cards.filter((card) => card.alert !== null);
  pass(`the Alerts section shows what /api/alerts does: ${firingRule} active on ${alert.meter}, "${alert.message}", `
    + `since ${alert.sinceText} (${alert.ago}); ${quietRule} not active; the header says "${state.alerts.summary}"`);
  pass(`marked: ${marked.map((card) => `${card.panel}'s card ("${card.alert}")`).join(', ')}; no other card`
    + `${hierarchy ? `; summaries: ${state.groups.filter((group) => group.alerts).map((group) => `${group.name} "${group.alerts}"`).join(', ')}` : ''}`);
  if (/alert/i.test(state.announcer ?? '')) {
    throw new CheckFailed(`an alert active before the page opened was announced: ${JSON.stringify(state.announcer)}`);
  }
  pass('an alert already active when the page opened is not announced');

  // The recent events: collapsed, opened with the keyboard.
  if (state.alerts.recentOpen || state.alerts.recent.some((item) => item.visible)) throw new CheckFailed('the recent events are not collapsed at first');
  await page.focus('#alerts-recent > summary');
  await page.keyboard.press('Enter');
  await waitFor('opened with Enter, the recent events list the firing', 10_000, async () => {
    state = await readPage(page);
    const problems = alertsProblems(state);
    if (!state.alerts.recentOpen) problems.push('the recent events did not open');
    const hidden = state.alerts.recent.filter((item) => !item.visible);
    if (hidden.length > 0) problems.push(`${hidden.length} recent events hidden`);
    if (!state.alerts.recent.some((item) => item.rule === firingRule && item.transition === 'fired')) problems.push(`no firing of ${firingRule} listed`);
    return problems;
  });
  const event = state.alerts.recent.find((item) => item.rule === firingRule);
  pass(`opened with Enter, the recent events ${state.alerts.recentCount} list "${event.transitionText} ${event.atText} ${event.message}", as /api/alerts does`);
}

// Another alert becoming active, in an answer this script adds it to: the page, polling
// /api/alerts, lists it without a reload, marks its meter's card and announces it politely.
// Returns the function that gives the page the server's answers again.
async function checkNewAlert(page) {
  const meter = expectedPanels[expectedPanels.length - 1];
  const at = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const added = {
    id: `browser-test-added:${at}:fired`,
    rule: 'browser-test-added',
    meter,
    transition: 'fired',
    at,
    fired_at: at,
    value: 1,
    threshold: 0,
    message: `${meter}: an alert added to the answer by the browser test`,
    pending: ['ops'],
  };
  const change = (body) => {
    body.rules.push({ rule: added.rule, meter, condition: 'added by the test', state: 'firing', since: at });
    body.active.push(added);
    body.recent.unshift(added);
    return body;
  };
  const pattern = '**/api/alerts';
  let answered = 0;
  await page.route(pattern, async (route) => {
    const response = await route.fetch();
    const body = change(await response.json());
    answered += 1;
    await route.fulfill({ response, json: body });
  });
  let state;
  await waitFor('another alert becoming active is listed, marked on its card and announced, without a reload', 30_000, async () => {
    state = await readPage(page);
    const problems = answered === 0 ? ['the page has not asked /api/alerts again'] : alertsProblems(state, change);
    const announcement = `New alert, ${added.rule}: ${added.message}`;
    if (state.announcer !== announcement) problems.push(`the live region says ${JSON.stringify(state.announcer)}, not ${JSON.stringify(announcement)}`);
    if (!state.sameDocument) problems.push('the page was reloaded');
    return problems;
  });
  const card = state.cards.find((c) => c.panel === meter);
  pass(`another alert becoming active (added by the test to the page's /api/alerts answer): listed without a reload, `
    + `${meter}'s card marked "${card.alert}", announced politely: "${state.announcer}"; its pending notification shown `
    + `("${state.alerts.recent[0].pending}")`);
  return () => page.unroute(pattern);
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
  page.on('response', async (response) => {
    if (response.status() >= 400) faults.push(`HTTP ${response.status()} for ${response.url()}`);
    // The year's figures change with every reading and the page asks for them only every 5
    // minutes, so the test's own polling can miss the moment of the page's answer: the
    // server's answer to the page itself is kept with the others (the page must still draw
    // exactly what the API answered).
    const url = new URL(response.url());
    if (response.status() === 200 && url.pathname === '/api/energy/monthly' && !url.searchParams.has('format')) {
      const body = await response.json().catch(() => null);
      if (body) monthly.keep(body);
    }
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
    if (all.panels.length !== expectedEntries.length) {
      throw new CheckFailed(`/api/bill?month=${month} bills ${all.panels.length} panels and virtual meters, not ${expectedEntries.length}`);
    }
    let shown;
    await waitFor(`the bill page shows /api/bill of ${month}, the last whole month, for all panels`, 30_000, async () => {
      shown = await readBills(page);
      const offered = JSON.stringify(shown.panelOptions);
      return [
        ...billProblems(shown, all, ''),
        ...(offered === JSON.stringify(['', ...expectedEntries]) ? [] : [`the panel picker offers ${offered}`]),
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
    if (media.sheets.length !== expectedEntries.length) problems.push(`${media.sheets.length} bills in print`);
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
  let alertsWithToken = 0; // answers of /api/alerts to a request that carried the token
  page.on('response', async (response) => {
    if (response.status() === 200 && new URL(response.url()).pathname === '/api/alerts'
      && await response.request().headerValue('authorization').catch(() => null) === `Bearer ${token}`) alertsWithToken += 1;
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
    // That server has no ALERTS_FILE: the page asks (with the token) and shows no Alerts section.
    await waitFor('with a token and no alert rules, /api/alerts answered and no Alerts section shown', 40_000, async () => {
      state = await readPage(page);
      return [
        ...(alertsWithToken > 0 ? [] : ['no answer of /api/alerts to a request with the token yet']),
        ...(state.alerts.visible ? ['the Alerts section is shown'] : []),
      ];
    });
    pass('with a token: /api/alerts asked with the bearer token; no alert rule, so no Alerts section');
    // That server has no METERS_FILE.
    await checkFlatSearch(page, expectedPanels);
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

// ---- a large site -----------------------------------------------------------------------------

// Where the page spends its time: the marks it sets (ms after navigation started) and how much
// it made.
function readCosts(page) {
  return page.evaluate(() => {
    const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
    return {
      streamOpen: mark('dashboard:stream-open'),
      firstGroup: mark('dashboard:first-group'),
      panelsListed: mark('dashboard:panels-listed'),
      svgs: document.querySelectorAll('svg').length,
      cards: document.querySelectorAll('#cards .card').length,
      elements: document.getElementsByTagName('*').length,
    };
  });
}

// At most this many svg elements on the page of a large site: the two charts of the one-panel
// view, the monthly charts of the panels that used the most and one of all the others.
const MANY_SVG_LIMIT = 30;

// The page of a site with `manyPanels` panels in buildings (and their virtual meters), whose
// readings were written before: how fast the first group shows, how little is made (no card
// of a collapsed group, a few charts), the monthly charts of the top panels and of the others
// added up, the search, cards made as groups are opened, and a negative loss meter.
async function runMany(browser) {
  const meters = await getJson(new URL('/api/meters', dashboardUrl).href);
  const panels = meters.panels.map((panel) => panel.panel);
  learnMeters(meters, panels);
  if (panels.length !== manyPanels) throw new CheckFailed(`/api/meters declares ${panels.length} panels, not ${manyPanels}`);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const faults = faultsOf(page);
  const numbers = [];
  let alertsAnswers = 0;
  page.on('response', (response) => {
    if (response.status() === 200 && new URL(response.url()).pathname === '/api/alerts') alertsAnswers += 1;
  });
  try {
    const started = Date.now();
    const response = await page.goto(dashboardUrl, { waitUntil: 'commit' });
    if (!response || response.status() !== 200) throw new CheckFailed(`GET ${dashboardUrl} answered ${response && response.status()}`);
    await page.waitForSelector('#cards details.group-building:not([hidden])', { timeout: 30_000 });
    const firstSeen = Date.now() - started;
    let state;
    await waitFor('every building counts its panels ONLINE as /api/panel/realtime does, all collapsed, no card made', 30_000, async () => {
      state = await readPage(page);
      const problems = [];
      const body = await getJson(new URL('/api/panel/realtime', dashboardUrl).href);
      problems.push(...differences(groupCountsOf(state), expectedGroupCounts(body)));
      const open = state.groups.filter((group) => group.open && group.level === 'building');
      if (open.length > 0) problems.push(`${open.length} buildings open`);
      if (state.cards.length > 0) problems.push(`${state.cards.length} cards made`);
      const text = expectedCount(expectedEntries, '');
      if (state.search.count !== text) problems.push(`the count says ${JSON.stringify(state.search.count)}, expected ${JSON.stringify(text)}`);
      return problems;
    });
    const loaded = await readCosts(page);
    const buildings = state.groups.filter((group) => group.level === 'building');
    numbers.push(`first group ${loaded.firstGroup.toFixed(0)} ms after navigation started (seen by the test after ${firstSeen} ms; `
      + `the stream answered after ${loaded.streamOpen.toFixed(0)} ms), every panel counted after ${loaded.panelsListed.toFixed(0)} ms`);
    pass(`${manyPanels} panels, ${virtualIds().length} virtual meters: ${buildings.length} buildings, collapsed, `
      + `no card made (${loaded.elements} elements on the page); first group ${loaded.firstGroup.toFixed(0)} ms after navigation `
      + `started, every panel counted after ${loaded.panelsListed.toFixed(0)} ms; e.g. ${buildings[1].name}: ${buildings[1].count}`);

    // The monthly section: the panels that used the most, then the others added up.
    await waitFor('the monthly charts: the panels that used the most in the year, then all the others added up', 90_000, async () => {
      state = await readPage(page);
      const problems = [];
      if (state.charts.length === 0) return ['no monthly chart yet'];
      const body = await getJson(new URL(`/api/energy/monthly?year=${state.charts[0].year}`, dashboardUrl).href);
      const ranked = body.panels.filter((panel) => panel.kind !== 'virtual')
        .sort((a, b) => b.total_kwh - a.total_kwh || (a.panel < b.panel ? -1 : 1));
      const top = ranked.slice(0, state.charts.length).map((panel) => panel.panel);
      const shown = state.charts.map((chart) => chart.panel);
      if (JSON.stringify(shown) !== JSON.stringify(top)) problems.push(`charts of ${JSON.stringify(shown)}, the top panels are ${JSON.stringify(top)}`);
      const rest = body.panels.filter((panel) => panel.kind !== 'virtual' && !shown.includes(panel.panel));
      const others = state.others[0];
      if (state.others.length !== 1 || others.others !== rest.length) {
        problems.push(`charts of the others: ${JSON.stringify(state.others.map((chart) => chart.others))}, ${rest.length} others`);
      } else {
        for (const bar of others.bars) {
          const sum = rest.reduce((total, panel) => total + panel.months[bar.key - 1].usage_kwh, 0);
          if (Math.abs(bar.value - sum) > 1e-6 * Math.max(1, Math.abs(sum))) problems.push(`the others' month ${bar.key}: ${bar.value} kWh, the sum is ${sum}`);
        }
        if (others.title !== `The other ${count(rest.length)} panels, added up`) problems.push(`the others' chart is called ${JSON.stringify(others.title)}`);
      }
      if (state.monthlyNote === null) problems.push('no note says what the charts show');
      return problems;
    });
    const charted = await readCosts(page);
    pass(`monthly: ${state.charts.length} charts of the panels that used the most (${state.charts.slice(0, 3).map((chart) => chart.panel).join(', ')}, …) `
      + `and one of the other ${state.others[0].others} added up; note: "${state.monthlyNote}"`);
    numbers.push(`${charted.svgs} svg elements with every chart drawn`);
    if (charted.svgs > MANY_SVG_LIMIT) throw new CheckFailed(`${charted.svgs} svg elements on the page, more than ${MANY_SVG_LIMIT}`);
    pass(`${charted.svgs} svg elements on the page (at most ${MANY_SVG_LIMIT}), ${charted.cards} cards`);

    // The summaries' loss meters: their figures of today, a negative one marked.
    const today = await getJson(new URL('/api/panel/today-usage', dashboardUrl).href);
    await waitFor("the buildings' summaries show their virtual meters' figures of today", 70_000, async () => {
      state = await readPage(page);
      return differences(groupMetersOf(state), expectedGroupMeters(today));
    });
    const negative = state.groups.flatMap((group) => group.meters.filter((meter) => meter.negative).map((meter) => `${group.name}: ${meter.meter} ${meter.kwh} kWh`));
    if (negative.length === 0) throw new CheckFailed('no loss meter is negative today: the data should make one so');
    pass(`every building's summary shows its virtual meters' figures of today as /api/panel/today-usage does; negative, marked: ${negative.join('; ')}`);

    // Search: a floor's panels, by id and by tenant.
    const floorQueries = [
      [`${panels[210].slice(0, 7)}`, 'a floor by the start of its panels\' ids'],
      [declared.get(panels[745]).tenant.toUpperCase(), 'a tenant'],
    ];
    for (const [query, what] of floorQueries) {
      const before = Date.now();
      state = await search(page, query, `${what}: the matching cards shown, their building and floor opened`, (shown) => {
        const matching = expectedEntries.filter((id) => matchesQuery(id, query));
        const visible = shown.cards.filter((card) => card.visible).map((card) => card.panel).sort();
        const text = expectedCount(expectedEntries, query);
        const open = shown.groups.filter((group) => group.open).map((group) => `${group.building}/${group.floor ?? ''}`);
        const places = [...new Set(matching.flatMap((id) => [`${placeOf(id).building}/`, `${placeOf(id).building}/${placeOf(id).floor}`]))].sort();
        return [
          ...(JSON.stringify(visible) === JSON.stringify(matching) ? [] : [`${visible.length} cards shown, ${matching.length} match`]),
          ...(shown.search.count === text ? [] : [`the count says ${JSON.stringify(shown.search.count)}, expected ${JSON.stringify(text)}`]),
          ...(JSON.stringify(open.sort()) === JSON.stringify(places) ? [] : [`open ${JSON.stringify(open)}, expected ${JSON.stringify(places)}`]),
        ];
      });
      const costs = await readCosts(page);
      numbers.push(`search ${JSON.stringify(query)}: shown within ${Date.now() - before} ms (debounce included), ${costs.cards} cards made, ${costs.svgs} svg elements`);
      pass(`search ${JSON.stringify(query)} (${what}): "${state.search.count}", ${costs.cards} cards made in all, ${costs.svgs} svg elements`);
    }
    state = await search(page, '', 'the buildings collapsed again', (shown) => shown.groups
      .filter((group) => group.open && group.level === 'building').map((group) => `${group.name} is open`));
    pass('search emptied: every building collapsed again');

    // A building opened: its virtual meters' cards, its floors collapsed (a large building);
    // a floor opened: its panels' cards, made then.
    const building = buildings[4];
    const madeBefore = (await readCosts(page)).cards;
    let before = Date.now();
    await page.click(`#cards details.group-building[data-building="${building.building}"] > summary`);
    await waitFor(`opened, ${building.name} shows its virtual meters and its floors, collapsed`, 10_000, async () => {
      state = await readPage(page);
      const shown = state.cards.filter((card) => card.visible).map((card) => card.panel);
      const own = virtualIds().filter((id) => placeOf(id).building === building.building);
      const floors = state.groups.filter((group) => group.level === 'floor' && group.building === building.building);
      return [
        ...(JSON.stringify(shown.sort()) === JSON.stringify(own) ? [] : [`cards shown ${JSON.stringify(shown)}`]),
        ...floors.filter((floor) => floor.open || !floor.visible).map((floor) => `${floor.name}: open ${floor.open}, visible ${floor.visible}`),
        ...(floors.length > 0 ? [] : ['no floor shown']),
      ];
    });
    numbers.push(`${building.name} opened in ${Date.now() - before} ms`);
    const floor = state.groups.find((group) => group.level === 'floor' && group.building === building.building);
    before = Date.now();
    await page.click(`#cards details.group-floor[data-building="${building.building}"][data-floor="${floor.floor}"] > summary`);
    await waitFor(`opened, ${floor.name} of ${building.name} shows its panels`, 10_000, async () => {
      state = await readPage(page);
      const shown = state.cards.filter((card) => card.visible && card.floor === floor.floor).map((card) => card.panel).sort();
      const expected = panels.filter((id) => placeOf(id).building === building.building && placeOf(id).floor === floor.floor);
      return JSON.stringify(shown) === JSON.stringify(expected) ? [] : [`cards shown ${JSON.stringify(shown)}`];
    });
    const opened = await readCosts(page);
    numbers.push(`${floor.name} opened in ${Date.now() - before} ms; ${opened.cards} cards made in all (${opened.cards - madeBefore} by opening), `
      + `${opened.svgs} svg elements, ${opened.elements} elements`);
    pass(`opened, ${building.name} shows its virtual meters and ${state.groups.filter((g) => g.level === 'floor' && g.building === building.building).length} `
      + `floors, collapsed; ${floor.name} opened shows its panels; ${opened.cards} cards made in all`);

    // A negative loss meter picked for the one-panel view: its negative quarter hours below the
    // zero line.
    const loss = negative.length > 0 ? state.groups.flatMap((group) => group.meters).find((meter) => meter.negative).meter : null;
    await page.selectOption('#panel', loss);
    await waitFor(`picked, ${loss}: its quarter hours, the negative ones below the zero line`, 30_000, async () => {
      state = await readPage(page);
      const curveAnswer = await getJson(new URL(`${intervalsPath(loss)}?step=15m`, dashboardUrl).href);
      return [
        ...differences(curveOf(state.curve), expectedCurve(curveAnswer)),
        ...shapeProblems('quarter hour', state.curve.bars, state.curve.zero),
      ];
    });
    const below = state.curve.bars.filter((bar) => bar.negative).length;
    pass(`picked, ${loss}: ${state.curve.bars.length} quarter hours today, ${below} negative drawn below the zero line, total ${state.curve.total} kWh`);

    const last = await readCosts(page);
    if (last.svgs > MANY_SVG_LIMIT) throw new CheckFailed(`${last.svgs} svg elements on the page, more than ${MANY_SVG_LIMIT}`);
    if (alertsAnswers === 0 || state.alerts.visible) {
      throw new CheckFailed(`without alert rules: ${alertsAnswers} answers of /api/alerts, Alerts section shown: ${state.alerts.visible}`);
    }
    if (state.errors.length > 0) throw new CheckFailed(`the page shows errors: ${state.errors.join('; ')}`);
    if (faults.length > 0) throw new CheckFailed(`the page had faults:\n  ${faults.join('\n  ')}`);
    pass('no console error, uncaught exception, failed request or error message on the page');
    for (const line of numbers) console.log(`     ${line}`);
    console.log(`MEASURED ${manyPanels} panels: first group ${loaded.firstGroup.toFixed(0)} ms after navigation started, `
      + `every panel counted ${loaded.panelsListed.toFixed(0)} ms, svg elements at most ${Math.max(charted.svgs, last.svgs)} `
      + `(limit ${MANY_SVG_LIMIT}), cards made ${last.cards}`);
  } finally {
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`screenshot ${screenshotPath}`);
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
  if (manyPanels !== null) {
    const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
    try {
      console.log(`chromium ${browser.version()}, node ${process.version}`);
      await runMany(browser);
    } finally {
      await browser.close();
    }
    return;
  }
  learnMeters(await getJson(new URL('/api/meters', dashboardUrl).href));
  for (const id of expectedEntries) {
    const history = new ApiHistory(`${intervalsPath(id)}?step=15m`);
    intervals.set(id, history);
    histories.push(history);
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
