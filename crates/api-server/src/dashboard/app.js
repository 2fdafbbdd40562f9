// The energy monitor's dashboard: plain JavaScript, no framework, nothing from other origins.
//
// Everything shown comes from this server's JSON API. Values from it (panel ids above all,
// which any meter can choose) only ever reach the page as text (textContent, setAttribute),
// never as markup.
//
// Live state comes from /api/panel/stream (Server-Sent Events), read with fetch() rather than
// EventSource: fetch can send the bearer token and can tell a refused token (401) from a
// broken connection. While the stream is down the page polls /api/panel/realtime instead, and
// keeps trying to reconnect. Today's figures, the chosen panel's quarter hours of today and its
// days of this month are fetched a few seconds after a new reading and every minute; the
// monthly figures every five minutes.
//
// With a METERS_FILE (/api/meters, read once at start) that names buildings, the cards are
// grouped: building, then floor, each a <details> that starts collapsed (floors start open in
// a building of at most MANY entries). A group's cards are created only when it is opened, and
// the groups are made once and only updated, so what the user opened stays open across the
// page's refreshes. The search box filters the cards by id, building, floor or tenant and opens
// the groups with a match. With more than MANY panels and virtual meters the monthly section
// draws the TOP_CHARTS panels that used the most and one chart of all the others together,
// never a chart per panel.
//
// Alerts (GET /api/alerts, docs/alerts.md) are fetched every ALERTS_MS and, after a new reading,
// at most every ALERTS_AFTER_READING_MS: the active ones are listed above the panels (and
// announced to a screen reader when they become active), the card of a meter with an active
// alert and the groups holding it are marked, and the recent events are in a collapsible list.
// Without alert rules the section stays hidden.
//
// Two views, chosen by the URL's fragment: the dashboard (#dashboard, or none) and the bill
// (#bill?month=YYYY-MM&panel=ID), a printable bill per panel from /api/bill; its print style
// sheet prints the bills alone, one panel per page.
'use strict';

(() => {
  const TOKEN_KEY = 'energy-monitor.api-token';
  const POLL_MS = 5000; // /api/panel/realtime while the stream is down
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  const STALL_MS = 45000; // three missed keep-alives (the server sends one every 15 s)
  const TODAY_MS = 60000;
  const TODAY_AFTER_READING_MS = 5000;
  const TODAY_AFTER_READING_MANY_MS = 30000; // with more than MANY entries: each answer is large
  const MANY = 24; // more panels and virtual meters than this: no chart per entry
  const TOP_CHARTS = 12; // with more than MANY, the monthly charts of the panels that used the most
  const SEARCH_DELAY_MS = 120;
  const GROUPS_DELAY_MS = 100; // group summaries are updated at most this often
  const MONTHLY_MS = 5 * 60000;
  const ALERTS_MS = 30000;
  const ALERTS_AFTER_READING_MS = 10000; // at most this often because of new readings
  const YEARS_OFFERED = 10;
  const QUARTERS_PER_DAY = 96; // 92 or 100 on a day the clocks change
  const BLOB_KEPT_MS = 60000; // how long a downloaded CSV file's blob: URL stays valid
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const MONTH_NAMES = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
    'September', 'October', 'November', 'December'];

  const $ = (selector, root = document) => root.querySelector(selector);
  const field = (name, root = document) => root.querySelector(`[data-field="${name}"]`);

  const page = {
    cards: $('#cards'),
    charts: $('#charts'),
    year: $('#year'),
    panel: $('#panel'),
    detail: $('#detail-charts'),
    curve: $('#load-curve'),
    daily: $('#daily-chart'),
    signIn: $('#sign-in'),
    tokenForm: $('#token-form'),
    token: $('#token'),
    cardTemplate: $('#card-template'),
    groupTemplate: $('#group-template'),
    search: $('#search'),
    chartTemplate: $('#chart-template'),
    tariffsNow: $('#tariffs-now'),
    tariffTemplate: $('#tariff-template'),
    views: [...document.querySelectorAll('main > .view')],
    navLinks: [...document.querySelectorAll('.site-nav a[data-view]')],
    billForm: $('#bill-form'),
    billMonth: $('#bill-month'),
    billPanel: $('#bill-panel'),
    bills: $('#bills'),
    billTemplate: $('#bill-template'),
    billSummaryTemplate: $('#bill-summary-template'),
    alerts: $('#alerts'),
    alertsActive: $('#alerts-active'),
    alertsRecent: $('#alerts-recent'),
    alertsEvents: $('#alerts-events'),
    alertTemplate: $('#alert-template'),
    alertEventTemplate: $('#alert-event-template'),
  };

  const state = {
    token: readToken(),
    // id -> an entry (see newEntry): every panel and virtual meter with a reading; its card
    // is made when its group is first open.
    panels: new Map(),
    // id -> {kind, building, floor, tenant, expression} from /api/meters.
    declared: new Map(),
    hierarchy: false, // whether the cards are grouped by building and floor
    root: null, // the group of the flat list, or of the buildings (see newGroup)
    query: '', // the search box's text, lower case, trimmed
    sizes: new Map(), // building -> how many panels and virtual meters it declares
    marked: false, // whether the first group or card is on the page (a performance mark)
    listed: false, // whether the stream's first complete set arrived (another mark)
    today: new Map(), // id -> a panel of /api/panel/today-usage
    todayDate: null, // today in the server's time zone, YYYY-MM-DD
    tariffNames: [], // the tariffs of /api/panel/today-usage, in its order
    timeOfUse: false, // whether a kWh has more than one price (tariff_per_kwh is null)
    panelIds: [], // every panel and virtual meter with a reading, sorted by id
    kinds: new Map(), // id -> 'panel' or 'virtual', from today-usage
    currency: '',
    charts: new Map(), // id -> figure
    year: null,
    detailPanel: null, // the panel whose quarter hours and days are shown
    offlineAfter: null,
    timezone: null, // the server's TIMEZONE, once an answer said it
    alertRules: null, // how many alert rules the server has (null until /api/alerts answered)
    alertsByMeter: new Map(), // meter -> its active alerts (events of /api/alerts)
    alertIds: null, // the ids of the active alerts last shown (null before the first answer)
    clockSkew: 0, // the server's clock minus this device's, in ms (from the Date header)
    stopped: false,
  };

  // ---- formatting -----------------------------------------------------------------------

  const numberFormats = new Map();
  function fixed(value, decimals) {
    if (typeof value !== 'number' || !Number.isFinite(value)) return '–';
    let format = numberFormats.get(decimals);
    if (!format) {
      format = new Intl.NumberFormat('en-US', {
        minimumFractionDigits: decimals,
        maximumFractionDigits: decimals,
      });
      numberFormats.set(decimals, format);
    }
    return format.format(value);
  }

  // Axis labels: 10K, 2.5K, 500, 0.5.
  const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

  function money(value) {
    const amount = fixed(value, 2);
    return amount === '–' || !state.currency ? amount : `${state.currency} ${amount}`;
  }

  // A price of one kWh (or kW, or month): as many decimals as it has, at least two.
  const rateFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 });
  function rate(value, currency = state.currency) {
    if (typeof value !== 'number' || !Number.isFinite(value)) return '–';
    return currency ? `${currency} ${rateFormat.format(value)}` : rateFormat.format(value);
  }

  // "November 2026" from "2026-11".
  function monthText(month) {
    const [year, number] = month.split('-').map(Number);
    return `${MONTH_NAMES[number - 1]} ${year}`;
  }

  // The local date (YYYY-MM-DD) and time (HH:MM) of an RFC 3339 instant in time zone `zone`.
  const localFormats = new Map();
  function localParts(instant, zone) {
    const date = new Date(instant);
    let format = localFormats.get(zone);
    if (!format) {
      try {
        format = new Intl.DateTimeFormat('en-US', {
          timeZone: zone || 'UTC',
          year: 'numeric',
          month: '2-digit',
          day: '2-digit',
          hour: '2-digit',
          minute: '2-digit',
          hourCycle: 'h23',
        });
      } catch {
        // A zone this browser does not know: UTC, and said so.
        return { date: instant.slice(0, 10), time: `${instant.slice(11, 16)} UTC` };
      }
      localFormats.set(zone, format);
    }
    const parts = Object.fromEntries(format.formatToParts(date).map((part) => [part.type, part.value]));
    return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
  }

  function age(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s ago`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s ago`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min ago`;
    return `${Math.floor(h / 24)} days ago`;
  }

  function setText(element, text) {
    if (element && element.textContent !== text) element.textContent = text;
  }

  function setNumber(element, value, decimals) {
    setText(element, fixed(value, decimals));
    if (element && typeof value === 'number') element.setAttribute('data-value', String(value));
  }

  // The "of which … estimated" note `name` in `root`: its figure in `<name>_kwh`, the note shown
  // only when there is something estimated (most of the time there is not).
  function showEstimated(root, name, value) {
    setNumber(field(`${name}_kwh`, root), value, 3);
    field(name, root).hidden = !(value > 0);
  }

  // A table row: a header cell, then data cells, all as text.
  function tableRow(header, ...cells) {
    const row = document.createElement('tr');
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = header;
    row.append(name);
    for (const text of cells) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }

  // ---- token ----------------------------------------------------------------------------

  function readToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  }

  function storeToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage refused (private mode): the token lives in memory only.
    }
  }

  class TokenNeeded extends Error {}

  function headers(accept) {
    const result = { Accept: accept };
    if (state.token) result.Authorization = `Bearer ${state.token}`;
    return result;
  }

  // Called whenever the API answers 401: stop everything and ask for the token. Several
  // requests are refused at once; the first one decides what to say.
  function askForToken() {
    if (!page.signIn.hidden) return;
    const rejected = Boolean(state.token);
    stop();
    state.token = '';
    storeToken('');
    setConnection('signed-out', 'Enter the API token to see the panels');
    setText(field('token_error'), rejected ? 'That token was not accepted. Check it and try again.' : '');
    page.signIn.hidden = false;
    page.token.focus();
  }

  page.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = page.token.value.trim();
    if (!token) {
      setText(field('token_error'), 'Enter the token first.');
      page.token.focus();
      return;
    }
    state.token = token;
    storeToken(token);
    page.token.value = '';
    setText(field('token_error'), '');
    page.signIn.hidden = true;
    $('#main').focus();
    start();
  });

  // ---- API ------------------------------------------------------------------------------

  // The JSON answer of `path`; with `meta`, the answer's Date header goes into meta.date.
  async function api(path, meta = null) {
    const response = await fetch(path, { headers: headers('application/json'), cache: 'no-store' });
    if (meta) meta.date = response.headers.get('Date');
    if (response.status === 401) {
      askForToken();
      throw new TokenNeeded();
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: reported below by status.
    }
    if (!response.ok) {
      const message = body && body.error && body.error.message;
      throw new Error(message || `HTTP ${response.status}`);
    }
    return body;
  }

  function reportError(element, what, error) {
    if (error instanceof TokenNeeded) return;
    setText(element, `${what} could not be loaded: ${error.message}. Retrying.`);
  }

  // ---- connection status and announcements ------------------------------------------------

  function setConnection(kind, text) {
    const element = field('connection');
    element.setAttribute('data-state', kind);
    setText(element, text);
  }

  function announce(text) {
    const element = field('announcer');
    // Emptied first and filled a moment later, so that a sentence equal to the previous one
    // is announced again.
    element.textContent = '';
    window.setTimeout(() => { element.textContent = text; }, 50);
  }

  // ---- panels, virtual meters and their groups -------------------------------------------

  // "Floor 3" for a floor named by a number, the name itself otherwise ("Ground", "Lantai 3").
  const floorName = (floor) => (/^[0-9]+$/.test(floor) ? `Floor ${floor}` : floor);
  const plural = (count, one, many) => (count === 1 ? one : many);
  const count = (value) => fixed(value, 0); // "1,000"
  const byId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // Groups by name, numbers in numeric order ("Floor 2" before "Floor 10"); the group of
  // those without a name ("No building") last.
  const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
  function groupOrder(a, b) {
    if (a === null || b === null) return (a === null) - (b === null);
    return collator.compare(a, b) || byId(a, b);
  }

  // Cards by id, as the API lists them; in a group the virtual meters (its total, its loss)
  // first.
  function cardOrder(a, b) {
    if (state.hierarchy) {
      const kinds = (state.panels.get(a).kind === 'virtual' ? 0 : 1) - (state.panels.get(b).kind === 'virtual' ? 0 : 1);
      if (kinds !== 0) return kinds;
    }
    return byId(a, b);
  }

  // The declared panels and virtual meters (GET /api/meters, once per start). Without a
  // building in it (or without a METERS_FILE) the cards stay one flat list.
  async function loadMeters() {
    let body = { panels: [], meters: [] };
    try {
      body = await api('/api/meters');
      setText(field('panels_error'), '');
    } catch (error) {
      if (error instanceof TokenNeeded) throw error;
      setText(field('panels_error'), `The buildings could not be loaded (${error.message}): the panels are listed without them.`);
    }
    state.declared = new Map();
    const tag = (value) => (typeof value === 'string' && value !== '' ? value : null);
    for (const panel of body.panels || []) {
      state.declared.set(panel.panel, {
        kind: 'panel', building: tag(panel.building), floor: tag(panel.floor), tenant: tag(panel.tenant), expression: null,
      });
    }
    for (const meter of body.meters || []) {
      state.declared.set(meter.meter, {
        kind: 'virtual', building: tag(meter.building), floor: tag(meter.floor), tenant: tag(meter.tenant), expression: meter.expression,
      });
    }
    state.hierarchy = [...state.declared.values()].some((declared) => declared.building !== null);
    // How many entries each building declares: its floors start open when that is few.
    state.sizes = new Map();
    for (const declared of state.declared.values()) {
      state.sizes.set(declared.building, (state.sizes.get(declared.building) || 0) + 1);
    }
    state.panels.clear();
    page.cards.replaceChildren();
    page.cards.className = state.hierarchy ? 'groups' : 'cards';
    page.cards.setAttribute('data-mode', state.hierarchy ? 'buildings' : 'flat');
    state.root = newGroup(null, null, 'root');
    state.marked = false;
    showSearchCount();
  }

  // A group: the root (the flat list, or the buildings), a building or a floor. `entries` are
  // the ids listed directly in it, `cards` those of them with a card, in the page's order.
  function newGroup(parent, name, level) {
    const group = {
      level,
      name,
      parent,
      children: new Map(), // name -> group: the root's buildings, a building's floors
      entries: new Set(),
      cards: [],
      element: null,
      list: page.cards,
      childList: page.cards,
      userOpen: false, // open or closed by the user (a search opens groups for a while)
      expectedOpen: false, // as this script last set it
      meters: '', // the virtual meters shown in its summary
    };
    if (level === 'root') return group;
    const element = page.groupTemplate.content.firstElementChild.cloneNode(true);
    element.classList.add(`group-${level}`);
    element.setAttribute('data-building', level === 'building' ? name ?? '' : parent.name ?? '');
    if (level === 'floor') element.setAttribute('data-floor', name);
    setText(field('group_name', element), level === 'building' ? name ?? 'No building' : floorName(name));
    // Buildings start collapsed; floors open, unless their building is large.
    const open = level === 'floor' && (state.sizes.get(parent.name) || 0) <= MANY;
    element.open = open;
    element.hidden = true; // until something in it has a reading
    group.userOpen = open;
    group.expectedOpen = open;
    group.element = element;
    group.list = field('group_cards', element);
    group.childList = field('group_floors', element);
    element.addEventListener('toggle', () => toggled(group));
    const next = [...parent.children.values()]
      .filter((other) => groupOrder(other.name, name) > 0)
      .sort((a, b) => groupOrder(a.name, b.name))[0];
    parent.childList.insertBefore(element, next ? next.element : null);
    parent.children.set(name, group);
    return group;
  }

  function childGroup(parent, name, level) {
    return parent.children.get(name) || newGroup(parent, name, level);
  }

  // Where an id's card goes: its building, then its floor (if it has one); everything without
  // a building (an undeclared panel too) under "No building".
  function groupFor(id) {
    if (!state.hierarchy) return state.root;
    const declared = state.declared.get(id);
    const building = childGroup(state.root, declared ? declared.building : null, 'building');
    return declared && declared.floor !== null ? childGroup(building, declared.floor, 'floor') : building;
  }

  // Every group below `group`, depth first.
  function* groupsIn(group) {
    for (const child of group.children.values()) {
      yield child;
      yield* groupsIn(child);
    }
  }

  // Whether a group's cards are on the page: it and every group around it open.
  function isShown(group) {
    for (let g = group; g.level !== 'root'; g = g.parent) {
      if (!g.element.open || g.element.hidden) return false;
    }
    return true;
  }

  function toggled(group) {
    const { open } = group.element;
    if (open !== group.expectedOpen) {
      // The user's doing, not the search's.
      group.userOpen = open;
      group.expectedOpen = open;
    }
    if (open) renderGroup(group);
  }

  // Creates the cards of a group that is on the page (and of its open floors), for the entries
  // that match the search; hides those that do not.
  function renderGroup(group) {
    if (!isShown(group)) return;
    for (const id of group.entries) {
      const entry = state.panels.get(id);
      if (entry.match) {
        if (!entry.card) createCard(entry);
        entry.card.hidden = false;
      } else if (entry.card) {
        entry.card.hidden = true;
      }
    }
    for (const child of group.children.values()) renderGroup(child);
  }

  // What the page keeps of a panel or virtual meter: its place, its group, its card (null until
  // its group is open), its latest state (`data`, received at `receivedAt`) and whether it
  // matches the search.
  function newEntry(id, kind) {
    const declared = state.declared.get(id);
    const entry = {
      id,
      kind: declared ? declared.kind : kind === 'virtual' ? 'virtual' : 'panel',
      building: declared ? declared.building : null,
      floor: declared ? declared.floor : null,
      tenant: declared ? declared.tenant : null,
      expression: declared ? declared.expression : null,
      group: null,
      card: null,
      data: null,
      receivedAt: 0,
    };
    entry.haystack = [id, entry.building, entry.floor, entry.floor && floorName(entry.floor), entry.tenant]
      .filter(Boolean).join('\n').toLowerCase();
    entry.match = matches(entry);
    state.panels.set(id, entry);
    entry.group = groupFor(id);
    entry.group.entries.add(id);
    if (entry.match) {
      // Its groups show at once (the summaries follow a moment later).
      for (let g = entry.group; g.level !== 'root'; g = g.parent) g.element.hidden = false;
      markFirst();
    }
    field('panels_empty').hidden = true;
    return entry;
  }

  function markFirst() {
    if (state.marked) return;
    state.marked = true;
    // Test hook: the time from navigation to the first group (or card) on the page.
    performance.mark('dashboard:first-group');
  }

  function createCard(entry) {
    const card = page.cardTemplate.content.firstElementChild.cloneNode(true);
    card.setAttribute('data-panel', entry.id);
    card.setAttribute('data-kind', entry.kind);
    setText(field('panel', card), entry.id);
    if (entry.kind === 'virtual') {
      field('virtual', card).hidden = false;
      const expression = field('expression', card);
      setText(expression, entry.expression || '');
      expression.setAttribute('title', entry.expression || '');
      expression.hidden = !entry.expression;
    }
    // In a group its building and floor go without saying.
    const tags = state.hierarchy
      ? [entry.tenant && `Tenant: ${entry.tenant}`]
      : [entry.building, entry.floor && floorName(entry.floor), entry.tenant && `Tenant: ${entry.tenant}`];
    const shown = tags.filter(Boolean).join(' · ');
    setText(field('tags', card), shown);
    field('tags', card).hidden = shown === '';
    entry.card = card;
    // Into its group's list, in order.
    const ids = entry.group.cards;
    let low = 0;
    let high = ids.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (cardOrder(ids[middle], entry.id) < 0) low = middle + 1;
      else high = middle;
    }
    const next = low < ids.length ? state.panels.get(ids[low]).card : null;
    ids.splice(low, 0, entry.id);
    entry.group.list.insertBefore(card, next);
    if (entry.data) showRealtime(entry);
    showToday(entry.id);
    showCardAlert(entry);
    markFirst();
  }

  function updatePanel(panel, { announceChanges }) {
    if (!panel || typeof panel.panel !== 'string') return;
    const entry = state.panels.get(panel.panel) || newEntry(panel.panel, panel.kind);
    const before = entry.data;
    entry.data = panel;
    entry.receivedAt = performance.now();
    if (entry.card) showRealtime(entry);
    else if (entry.match && isShown(entry.group)) createCard(entry);
    if (before && before.status !== panel.status && announceChanges) {
      announce(`${panel.panel} is now ${panel.status}.`);
    }
    if (before && before.last_seen !== panel.last_seen) {
      refreshTodaySoon();
      refreshAlertsSoon();
    }
    if (!before || before.status !== panel.status) groupsChanged();
  }

  function showRealtime(entry) {
    const { card, data: panel } = entry;
    const online = panel.status === 'ONLINE';
    card.setAttribute('data-status', panel.status);
    const badge = field('status', card);
    setText(badge, online ? 'ONLINE' : 'OFFLINE');
    badge.className = `badge ${online ? 'badge-online' : 'badge-offline'}`;
    setNumber(field('power_kw', card), panel.power_kw, 2);
    setNumber(field('energy_kwh', card), panel.energy_kwh, 3);
    const seen = field('last_seen', card);
    seen.setAttribute('datetime', panel.last_seen);
    seen.setAttribute('title', new Date(panel.last_seen).toLocaleString());
    // A virtual meter is ONLINE only while every member is: which are not.
    const members = Array.isArray(panel.offline_members) ? panel.offline_members : [];
    field('offline_members_row', card).hidden = members.length === 0;
    setText(field('offline_members', card), members.join(', '));
    showAge(entry);
  }

  function removePanelsExcept(ids) {
    const keep = new Set(ids);
    for (const [id, entry] of state.panels) {
      if (!keep.has(id)) {
        if (entry.card) {
          entry.card.remove();
          entry.group.cards.splice(entry.group.cards.indexOf(id), 1);
        }
        entry.group.entries.delete(id);
        state.panels.delete(id);
      }
    }
    field('panels_empty').hidden = state.panels.size > 0;
    groupsChanged();
  }

  function showAge(entry) {
    if (!entry.data || !entry.card) return;
    // The server's age plus the time since it was received: right even when this device's
    // clock is off.
    const seconds = entry.data.seconds_since_last_seen + (performance.now() - entry.receivedAt) / 1000;
    setText(field('last_seen', entry.card), age(seconds));
  }

  window.setInterval(() => {
    for (const entry of state.panels.values()) showAge(entry);
    showAlertAges();
  }, 1000);

  // ---- group summaries ------------------------------------------------------------------

  let groupsTimer = 0;

  // The groups' counts and figures follow a moment later: a stream's first events come by the
  // thousand.
  function groupsChanged() {
    if (!groupsTimer) groupsTimer = window.setTimeout(updateGroups, GROUPS_DELAY_MS);
  }

  function updateGroups() {
    window.clearTimeout(groupsTimer);
    groupsTimer = 0;
    if (!state.root) return;
    showSearchCount();
    if (!state.hierarchy) return;
    // Each group's panels (ONLINE and in all) and matches, its floors' included.
    const tally = new Map();
    for (const entry of state.panels.values()) {
      for (let g = entry.group; g.level !== 'root'; g = g.parent) {
        let t = tally.get(g);
        if (!t) {
          t = { panels: 0, online: 0, virtual: 0, matches: 0, alerts: 0 };
          tally.set(g, t);
        }
        t.alerts += (state.alertsByMeter.get(entry.id) || []).length;
        if (entry.kind === 'virtual') t.virtual += 1;
        else {
          t.panels += 1;
          if (entry.data && entry.data.status === 'ONLINE') t.online += 1;
        }
        if (entry.match) t.matches += 1;
      }
    }
    for (const group of groupsIn(state.root)) {
      const t = tally.get(group) || { panels: 0, online: 0, virtual: 0, matches: 0, alerts: 0 };
      group.element.hidden = t.panels + t.virtual === 0 || (state.query !== '' && t.matches === 0);
      // A floor of one card shares its row with other such floors.
      if (group.level === 'floor') group.element.classList.toggle('group-floor-wide', t.panels + t.virtual > 1);
      const counter = field('group_count', group.element);
      counter.setAttribute('data-online', String(t.online));
      counter.setAttribute('data-total', String(t.panels));
      counter.classList.toggle('group-count-offline', t.online < t.panels);
      setText(counter, t.panels > 0
        ? `${count(t.online)} of ${count(t.panels)} ${plural(t.panels, 'panel', 'panels')} ONLINE`
        : `${count(t.virtual)} virtual ${plural(t.virtual, 'meter', 'meters')}`);
      // Active alerts of the meters inside: seen while the group is collapsed.
      const alerts = field('group_alerts', group.element);
      alerts.hidden = t.alerts === 0;
      alerts.setAttribute('data-alerts', String(t.alerts));
      setText(alerts, t.alerts === 0 ? '' : `${count(t.alerts)} ${plural(t.alerts, 'alert', 'alerts')}`);
      showGroupMeters(group);
    }
  }

  // A group's own virtual meters (tagged with its building, and its floor or none) in its
  // summary: today's kWh and cost of each, a negative figure as it is, marked.
  function showGroupMeters(group) {
    const ids = [...group.entries].filter((id) => state.panels.get(id).kind === 'virtual').sort(byId);
    const holder = field('group_meters', group.element);
    if (group.meters !== ids.join('\n')) {
      group.meters = ids.join('\n');
      holder.replaceChildren(...ids.map((id) => {
        const meter = document.createElement('span');
        meter.className = 'group-meter';
        meter.setAttribute('data-meter', id);
        const name = document.createElement('span');
        name.className = 'group-meter-name';
        name.textContent = id;
        const kwh = document.createElement('span');
        kwh.setAttribute('data-field', 'meter_kwh');
        const cost = document.createElement('span');
        cost.setAttribute('data-field', 'meter_cost');
        const negative = document.createElement('span');
        negative.className = 'negative-mark';
        negative.setAttribute('data-field', 'meter_negative');
        negative.textContent = 'negative';
        negative.hidden = true;
        meter.append(name, ' ', kwh, ' kWh, ', cost, ' ', negative);
        return meter;
      }));
    }
    for (const meter of holder.children) {
      const today = state.today.get(meter.getAttribute('data-meter'));
      setNumber(field('meter_kwh', meter), today ? today.usage_kwh : null, 3);
      setText(field('meter_cost', meter), today ? money(today.cost) : '–');
      if (today) field('meter_cost', meter).setAttribute('data-value', String(today.cost));
      const negative = Boolean(today && today.usage_kwh < 0);
      field('meter_negative', meter).hidden = !negative;
      meter.classList.toggle('negative', negative);
    }
  }

  // ---- search ---------------------------------------------------------------------------

  let searchTimer = 0;

  function matches(entry) {
    return state.query === '' || entry.haystack.includes(state.query);
  }

  page.search.addEventListener('input', () => {
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(applySearch, SEARCH_DELAY_MS);
  });
  // Enter searches at once and submits nothing.
  $('#search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    window.clearTimeout(searchTimer);
    applySearch();
  });

  // Filters the cards by the search box and opens the groups that hold a match; an empty box
  // gives the groups back as the user left them.
  function applySearch() {
    const query = page.search.value.trim().toLowerCase();
    if (query === state.query || !state.root) return;
    state.query = query;
    const holding = new Set();
    for (const entry of state.panels.values()) {
      entry.match = matches(entry);
      if (entry.match && query !== '') {
        for (let g = entry.group; g.level !== 'root'; g = g.parent) holding.add(g);
      }
    }
    updateGroups();
    for (const group of groupsIn(state.root)) {
      const open = query === '' ? group.userOpen : holding.has(group);
      group.expectedOpen = open;
      group.element.open = open;
    }
    renderGroup(state.root);
  }

  // "12 of 1,000 panels and 2 of 20 virtual meters match", or without a search how many
  // there are; the figures also in data-* attributes.
  function showSearchCount() {
    let panels = 0;
    let virtual = 0;
    let panelMatches = 0;
    let virtualMatches = 0;
    for (const entry of state.panels.values()) {
      if (entry.kind === 'virtual') {
        virtual += 1;
        if (entry.match) virtualMatches += 1;
      } else {
        panels += 1;
        if (entry.match) panelMatches += 1;
      }
    }
    const element = field('search_count');
    const searching = state.query !== '';
    const panelsText = `${searching ? `${count(panelMatches)} of ` : ''}${count(panels)} ${plural(panels, 'panel', 'panels')}`;
    const virtualText = virtual > 0
      ? ` and ${searching ? `${count(virtualMatches)} of ` : ''}${count(virtual)} virtual ${plural(virtual, 'meter', 'meters')}`
      : '';
    setText(element, panels + virtual === 0 ? '' : `${panelsText}${virtualText}${searching ? ' match' : ''}`);
    element.setAttribute('data-matches', String(panelMatches));
    element.setAttribute('data-total', String(panels));
    element.setAttribute('data-virtual-matches', String(virtualMatches));
    element.setAttribute('data-virtual-total', String(virtual));
    field('search_empty').hidden = !(searching && panelMatches + virtualMatches === 0);
  }

  function setOfflineAfter(seconds) {
    if (typeof seconds !== 'number') return;
    state.offlineAfter = seconds;
    setText(field('offline_after'), seconds % 60 === 0 ? `${seconds / 60} min without a reading` : `${seconds} s without a reading`);
  }

  // ---- live stream ------------------------------------------------------------------------

  const live = {
    controller: null,
    reconnectTimer: 0,
    reconnectDelay: RECONNECT_MIN_MS,
    pollTimer: 0,
  };

  async function connect() {
    window.clearTimeout(live.reconnectTimer);
    const controller = new AbortController();
    live.controller = controller;
    let stallTimer = 0;
    const alive = () => {
      window.clearTimeout(stallTimer);
      stallTimer = window.setTimeout(() => controller.abort(), STALL_MS);
    };
    try {
      alive();
      const response = await fetch('/api/panel/stream', {
        headers: headers('text/event-stream'),
        cache: 'no-store',
        signal: controller.signal,
      });
      if (response.status === 401) {
        askForToken();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      // Test hook: when the stream first answered (its first events follow).
      if (performance.getEntriesByName('dashboard:stream-open').length === 0) performance.mark('dashboard:stream-open');
      await readEvents(response.body, alive, (event) => handleEvent(event));
    } catch {
      // A broken or stalled connection: handled below, like the server ending the stream.
    } finally {
      window.clearTimeout(stallTimer);
    }
    if (live.controller !== controller) return; // stopped or replaced on purpose
    live.controller = null;
    streamDown();
  }

  // Parses a text/event-stream body (the WHATWG "server-sent events" format) and calls
  // `onEvent` with {type, data} for each event; `onActivity` for every chunk, comments included.
  async function readEvents(body, onActivity, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let type = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      onActivity();
      buffer += decoder.decode(value, { stream: true });
      // A CR at the end may be the first half of a CRLF: keep it for the next chunk.
      const hold = buffer.endsWith('\r') ? 1 : 0;
      const lines = buffer.slice(0, buffer.length - hold).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(buffer.length - hold);
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) onEvent({ type: type || 'message', data: data.join('\n') });
          type = '';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const name = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? '' : line.slice(colon + 1);
          if (text.startsWith(' ')) text = text.slice(1);
          if (name === 'event') type = text;
          else if (name === 'data') data.push(text);
        }
      }
    }
  }

  function handleEvent(event) {
    let body;
    try {
      body = JSON.parse(event.data);
    } catch {
      return;
    }
    if (event.type === 'panel') {
      updatePanel(body, { announceChanges: true });
    } else if (event.type === 'sync') {
      setOfflineAfter(body.offline_after_secs);
      if (Array.isArray(body.panels)) removePanelsExcept(body.panels);
      updateGroups();
      if (!state.listed) {
        state.listed = true;
        // Test hook: every panel and group counted.
        performance.mark('dashboard:panels-listed');
      }
      streamUp();
    } else if (event.type === 'error') {
      const message = body && body.error && body.error.message;
      setConnection('degraded', `The database is not answering (${message || 'unknown error'}). Showing the last known values.`);
    }
  }

  function streamUp() {
    live.reconnectDelay = RECONNECT_MIN_MS;
    stopPolling();
    setConnection('live', 'Live');
  }

  function streamDown() {
    if (state.stopped) return;
    setConnection('polling', `Live updates interrupted. Checking every ${POLL_MS / 1000} seconds.`);
    startPolling();
    live.reconnectTimer = window.setTimeout(connect, live.reconnectDelay);
    live.reconnectDelay = Math.min(live.reconnectDelay * 2, RECONNECT_MAX_MS);
  }

  function startPolling() {
    if (live.pollTimer) return;
    poll();
    live.pollTimer = window.setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    window.clearInterval(live.pollTimer);
    live.pollTimer = 0;
  }

  async function poll() {
    try {
      const body = await api('/api/panel/realtime');
      if (!live.pollTimer) return; // the stream came back meanwhile
      setOfflineAfter(body.offline_after_secs);
      for (const panel of body.panels) updatePanel(panel, { announceChanges: true });
      removePanelsExcept(body.panels.map((panel) => panel.panel));
    } catch (error) {
      if (!(error instanceof TokenNeeded) && live.pollTimer) {
        setConnection('degraded', `The server is not answering (${error.message}). Showing the last known values.`);
      }
    }
  }

  // ---- alerts ---------------------------------------------------------------------------

  let alertsTimer = 0;
  let alertsSoon = 0;
  let alertsAskedAt = -Infinity; // performance.now() of the last request
  let alertsRequest = 0;
  let alertsBody = null; // the last answer of /api/alerts

  // After a new reading: at once when the last request is ALERTS_AFTER_READING_MS old, else
  // as soon as it is. Not at all while the server has no rule (the poll every ALERTS_MS still
  // asks, and notices a restart with rules).
  function refreshAlertsSoon() {
    if (alertsSoon || state.alertRules === 0) return;
    const wait = Math.max(0, alertsAskedAt + ALERTS_AFTER_READING_MS - performance.now());
    alertsSoon = window.setTimeout(refreshAlerts, wait);
  }

  async function refreshAlerts() {
    window.clearTimeout(alertsSoon);
    alertsSoon = 0;
    alertsAskedAt = performance.now();
    const request = ++alertsRequest;
    const meta = {};
    try {
      const body = await api('/api/alerts', meta);
      if (request !== alertsRequest) return;
      // "Since … ago" counts on the server's clock: right even when this device's is off. The
      // Date header has whole seconds; half a second added is right on average.
      const serverDate = Date.parse(meta.date || '');
      state.clockSkew = Number.isFinite(serverDate) ? serverDate + 500 - Date.now() : 0;
      const active = Array.isArray(body.active) ? body.active : [];
      // What became active since the last answer, said politely (not what was active when the
      // page opened: that is on the page for anyone to read).
      if (state.alertIds !== null) {
        const fresh = active.filter((event) => !state.alertIds.has(event.id));
        if (fresh.length === 1) announce(`New alert, ${fresh[0].rule}: ${fresh[0].message}`);
        else if (fresh.length > 1) announce(`${fresh.length} new alerts: ${fresh.map((event) => event.message).join('; ')}`);
      }
      state.alertIds = new Set(active.map((event) => event.id));
      alertsBody = body;
      setText(field('alerts_error'), '');
      renderAlerts();
    } catch (error) {
      if (request !== alertsRequest || error instanceof TokenNeeded) return;
      reportError(field('alerts_error'), 'The alerts', error);
      page.alerts.hidden = false;
    }
  }

  const browserZone = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    } catch {
      return 'UTC';
    }
  })();

  // The zone times are written in: the server's TIMEZONE (as every figure of the page), this
  // browser's until an answer has named it.
  const shownZone = () => state.timezone || browserZone;
  const serverNow = () => Date.now() + state.clockSkew;
  const todayThere = () => localParts(new Date(serverNow()).toISOString(), shownZone()).date;

  // A <time> of an RFC 3339 instant: "13:28" today, "13:28 on 2026-12-05" another day; the
  // date, time and zone in its tooltip.
  function showInstant(element, instant) {
    const zone = shownZone();
    const local = localParts(instant, zone);
    element.setAttribute('datetime', instant);
    element.setAttribute('title', `${local.date} ${local.time} (${zone})`);
    setText(element, local.date === todayThere() ? local.time : `${local.time} on ${local.date}`);
  }

  // "less than a minute ago", "12 min ago", "3 h 5 min ago", "4 days ago".
  function ago(ms) {
    const minutes = Math.floor(Math.max(0, ms) / 60000);
    if (minutes < 1) return 'less than a minute ago';
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min ago`;
    return `${Math.floor(hours / 24)} days ago`;
  }

  function showAlertAges() {
    const now = serverNow();
    for (const item of page.alertsActive.children) {
      const since = Date.parse(field('alert_since', item).getAttribute('datetime'));
      setText(field('alert_ago', item), ago(now - since));
    }
  }

  // The section from the last answer: hidden without rules (and events), else the active
  // alerts (or "No active alerts."), the recent events, newest first, in a <details>, and a
  // marker on the card and groups of each meter with an active alert.
  function renderAlerts() {
    const body = alertsBody;
    const list = (value) => (Array.isArray(value) ? value : []);
    const rules = list(body.rules);
    const active = list(body.active);
    const recent = list(body.recent).slice()
      .sort((a, b) => Date.parse(b.at) - Date.parse(a.at)); // stable: the API's order on ties
    state.alertRules = rules.length;
    page.alerts.hidden = rules.length === 0 && recent.length === 0 && field('alerts_error').textContent === '';
    page.alerts.setAttribute('data-active', String(active.length));
    setText(field('alerts_summary'), rules.length === 0 ? ''
      : `(${active.length > 0 ? `${count(active.length)} active, ` : ''}${count(rules.length)} ${plural(rules.length, 'rule', 'rules')})`);
    field('alerts_none').hidden = active.length > 0;
    const today = todayThere();
    if (changed(page.alertsActive, [active, shownZone(), today])) {
      page.alertsActive.replaceChildren(...active.map(alertItem));
    }
    showAlertAges();
    page.alertsRecent.hidden = recent.length === 0;
    setText(field('alerts_recent_count'), `(${count(recent.length)}, last 7 days)`);
    if (changed(page.alertsEvents, [recent, shownZone(), today])) {
      page.alertsEvents.replaceChildren(...recent.map(eventItem));
    }
    state.alertsByMeter = new Map();
    for (const event of active) {
      const events = state.alertsByMeter.get(event.meter) || [];
      events.push(event);
      state.alertsByMeter.set(event.meter, events);
    }
    for (const entry of state.panels.values()) showCardAlert(entry);
    groupsChanged();
  }

  function alertItem(event) {
    const item = page.alertTemplate.content.firstElementChild.cloneNode(true);
    item.setAttribute('data-id', event.id);
    item.setAttribute('data-rule', event.rule);
    item.setAttribute('data-meter', event.meter);
    setText(field('alert_rule', item), event.rule);
    setText(field('alert_meter', item), event.meter);
    setText(field('alert_message', item), event.message);
    showInstant(field('alert_since', item), event.fired_at);
    return item;
  }

  function eventItem(event) {
    const item = page.alertEventTemplate.content.firstElementChild.cloneNode(true);
    const fired = event.transition === 'fired';
    item.setAttribute('data-id', event.id);
    item.setAttribute('data-rule', event.rule);
    item.setAttribute('data-transition', event.transition);
    const badge = field('event_transition', item);
    setText(badge, fired ? 'Fired' : 'Resolved');
    badge.classList.add(fired ? 'transition-fired' : 'transition-resolved');
    showInstant(field('event_at', item), event.at);
    setText(field('event_message', item), event.message);
    setText(field('event_rule', item), event.rule);
    const pending = Array.isArray(event.pending) ? event.pending : [];
    const owed = field('event_pending', item);
    owed.hidden = pending.length === 0;
    setText(owed, pending.length === 0 ? '' : `notification pending: ${pending.join(', ')}`);
    return item;
  }

  // A card's marker: "Alert" and the rules firing on its meter (their messages in the
  // tooltip); the card's data-alerts counts them.
  function showCardAlert(entry) {
    if (!entry.card) return;
    const events = state.alertsByMeter.get(entry.id) || [];
    const marker = field('alert', entry.card);
    marker.hidden = events.length === 0;
    setText(field('alert_rules', entry.card), events.map((event) => event.rule).join(', '));
    marker.setAttribute('title', events.map((event) => event.message).join('\n'));
    entry.card.setAttribute('data-alerts', String(events.length));
  }

  // ---- today ----------------------------------------------------------------------------

  let todayTimer = 0;
  let todaySoon = 0;

  function refreshTodaySoon() {
    const delay = state.panels.size > MANY ? TODAY_AFTER_READING_MANY_MS : TODAY_AFTER_READING_MS;
    if (!todaySoon) todaySoon = window.setTimeout(refreshToday, delay);
  }

  async function refreshToday() {
    window.clearTimeout(todaySoon);
    todaySoon = 0;
    try {
      const body = await api('/api/panel/today-usage');
      state.todayDate = body.date;
      state.timeOfUse = typeof body.tariff_per_kwh !== 'number';
      state.tariffNames = (body.tariffs || []).map((tariff) => tariff.tariff);
      showSettings(body);
      setText(field('today_date'), `(${body.date})`);
      page.billMonth.max = body.date.slice(0, 7);
      state.today = new Map(body.panels.map((panel) => [panel.panel, panel]));
      for (const [id, entry] of state.panels) {
        if (entry.card) showToday(id);
      }
      updateGroups();
      setNumber(field('total_usage_kwh'), body.total.usage_kwh, 3);
      showEstimated(document, 'total_estimated', body.total.estimated_kwh);
      setText(field('total_cost'), money(body.total.cost));
      showCostParts(document, 'total', body.total);
      renderTariffsNow(body);
      setText(field('today_error'), '');
      state.kinds = new Map(body.panels.map((panel) => [panel.panel, panel.kind === 'virtual' ? 'virtual' : 'panel']));
      offerPanels(body.panels.map((panel) => panel.panel));
    } catch (error) {
      reportError(field('today_error'), "Today's figures", error);
      return;
    }
    // The chosen panel's quarter hours and days change with the same readings.
    refreshDetail();
  }

  function showToday(id) {
    const entry = state.panels.get(id);
    const today = state.today.get(id);
    if (!entry || !entry.card || !today) return;
    setNumber(field('today_usage_kwh', entry.card), today.usage_kwh, 3);
    field('today_negative', entry.card).hidden = !(today.usage_kwh < 0);
    showEstimated(entry.card, 'today_estimated', today.estimated_kwh);
    setText(field('today_cost', entry.card), money(today.cost));
    showCostParts(entry.card, 'today', today);
  }

  // After a cost (`<name>_cost`): its estimated part when there is one, and under time of use
  // its split by tariff window ("LWBP 12,345.00 · WBP 6,789.00", each window's kWh and rate in
  // the tooltip).
  function showCostParts(root, name, figure) {
    const estimated = field(`${name}_estimated_cost`, root);
    setText(field(`${name}_estimated_cost_amount`, root), money(figure.estimated_cost));
    estimated.hidden = !(figure.estimated_cost > 0);
    const split = field(`${name}_windows`, root);
    const windows = figure.by_window || [];
    const shown = windows.length > 1 || (state.timeOfUse && windows.length > 0);
    split.hidden = !shown;
    if (!shown) return;
    // A window's name, with its tariff when the figure spans several tariffs and its version
    // when it spans several versions.
    const tariffs = new Set(windows.map((w) => w.tariff));
    const versions = new Set(windows.map((w) => `${w.tariff} ${w.version}`));
    const label = (w) => `${tariffs.size > 1 ? `${w.tariff} ` : ''}${w.window}${versions.size > tariffs.size ? ` (${w.version})` : ''}`;
    setText(split, windows.map((w) => `${label(w)} ${fixed(w.cost, 2)}`).join(' · '));
    split.setAttribute('title', windows.map((w) => `${label(w)}: ${fixed(w.usage_kwh, 3)} kWh`
      + `${estimatedClause(w.estimated_kwh)} at ${rate(w.rate)} per kWh = ${money(w.cost)}`).join('\n'));
  }

  // What each tariff charges now and its next change.
  function renderTariffsNow(body) {
    const tariffs = body.tariffs || [];
    if (!changed(page.tariffsNow, [tariffs, body.currency, body.timezone, body.date])) return;
    page.tariffsNow.replaceChildren(...tariffs.map((tariff) => {
      const item = page.tariffTemplate.content.firstElementChild.cloneNode(true);
      item.setAttribute('data-tariff', tariff.tariff);
      item.setAttribute('data-window', tariff.window);
      item.setAttribute('data-version', tariff.version);
      item.setAttribute('data-rate', String(tariff.rate));
      item.setAttribute('title', `${tariff.tariff}, version ${tariff.version}`);
      setText(field('tariff_name', item), tariff.tariff);
      setText(field('tariff_window', item), tariff.window);
      setText(field('tariff_rate', item), rate(tariff.rate, body.currency));
      field('tariff_until_clause', item).hidden = !tariff.window_until;
      if (tariff.window_until) {
        const until = field('tariff_until', item);
        const local = localParts(tariff.window_until, body.timezone);
        until.setAttribute('datetime', tariff.window_until);
        setText(until, local.date === body.date ? local.time : `${local.time} on ${local.date}`);
      }
      const next = tariff.next_version;
      field('tariff_next_clause', item).hidden = !next;
      if (next) {
        const date = field('tariff_next', item);
        date.setAttribute('datetime', next.valid_from);
        setText(date, next.valid_from);
        setText(field('tariff_next_rates', item), next.windows
          .map((w) => `${w.window} ${rate(w.rate, body.currency)}`).join(', '));
      }
      return item;
    }));
  }

  function showSettings(body) {
    state.currency = body.currency;
    if (typeof body.timezone === 'string' && body.timezone !== state.timezone) {
      state.timezone = body.timezone;
      if (state.alertIds !== null) renderAlerts(); // its times are local times
    }
    setText(field('timezone'), body.timezone);
    setText(field('currency'), body.currency);
    setText(field('tariff'), typeof body.tariff_per_kwh === 'number'
      ? `${body.currency} ${fixed(body.tariff_per_kwh, 2)} per kWh`
      : `time of use${state.tariffNames.length > 0 ? ` (${state.tariffNames.join(', ')})` : ''}`);
  }

  // ---- bar charts -----------------------------------------------------------------------

  // A round number at or above `value` (1, 2 or 5 times a power of ten) for the axis top.
  function axisTop(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  let hatches = 0; // hatch patterns made so far: each chart's needs an id of its own

  // What each chart was last drawn from: a chart is drawn again only when that changed, so a
  // tooltip being read does not vanish with every refresh.
  const drawnFrom = new WeakMap();

  function changed(figure, source) {
    const key = JSON.stringify(source);
    if (drawnFrom.get(figure) === key) return false;
    drawnFrom.set(figure, key);
    return true;
  }

  // The range of an axis for `values`: from 0, or a round number below the most negative value,
  // to a round number at or above the largest (1 when nothing is above or below 0).
  function axisRange(values) {
    const largest = Math.max(0, ...values);
    const smallest = Math.min(0, ...values);
    return {
      high: largest > 0 || smallest === 0 ? axisTop(largest) : 0,
      low: smallest < 0 ? -axisTop(-smallest) : 0,
    };
  }

  // Draws a bar chart into `svg` in the SVG's own units (its viewBox; it scales to the figure's
  // width). `slots` places along the x axis. `bars`: {slot, value, estimated, title, data}, kWh
  // on the left axis; the estimated part of a bar is hatched at its end; `data` becomes
  // data-* attributes. A negative value (a virtual meter's difference) is drawn below the zero
  // line, which is then above the bottom of the chart (its height in the svg's data-zero).
  // `labels`: {slot, text} under the chart, centred on their slot, or on its left edge with
  // `labelsAtEdge` (a time of day starts its slot). `demand`, if given: a list of {slot, value,
  // title, data} in kW on a right axis, drawn as dots joined by a line. Returns whether a bar
  // is negative.
  function drawBarChart(svg, { slots, bars, labels, labelsAtEdge = false, demand = null }) {
    const namespace = svg.namespaceURI;
    const draw = (parent, name, attributes, text) => {
      const element = document.createElementNS(namespace, name);
      for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
      if (text !== undefined) element.textContent = text;
      parent.append(element);
      return element;
    };
    const dataAttributes = (data) => Object.fromEntries(
      Object.entries(data).map(([key, value]) => [`data-${key}`, value]),
    );
    svg.replaceChildren();
    const width = svg.viewBox.baseVal.width;
    const left = 52;
    const right = demand ? 52 : 6;
    const top = 34; // the axis top; the unit above it
    const bottom = 226; // the axis bottom; labels below it
    const slot = (width - left - right) / slots;
    const barWidth = slot * 0.7;
    // An axis from `low` to `high`: where a value is, how high a bar of it is (anything but zero
    // at least one unit, so a small figure is not drawn as none), and its three ticks.
    const scale = ({ low, high }) => {
      const span = high - low;
      const yOf = (value) => top + ((high - value) / span) * (bottom - top);
      let ticks = [[top, high], [(top + bottom) / 2, (high + low) / 2], [bottom, low]];
      if (low < 0 && high > 0) ticks = [[top, high], [yOf(0), 0], [bottom, low]];
      return {
        yOf,
        zero: yOf(0),
        heightOf: (value) => (value === 0 ? 0 : Math.max(1, (Math.abs(value) / span) * (bottom - top))),
        ticks,
      };
    };
    const kwh = scale(axisRange(bars.map((bar) => bar.value)));

    if (!svg.hasAttribute('data-hatch')) svg.setAttribute('data-hatch', `hatch-${++hatches}`);
    const hatch = svg.getAttribute('data-hatch');
    svg.setAttribute('data-zero', kwh.zero.toFixed(1));
    const pattern = draw(draw(svg, 'defs', {}), 'pattern', {
      id: hatch,
      patternUnits: 'userSpaceOnUse',
      width: 6,
      height: 6,
      patternTransform: 'rotate(45)',
    });
    draw(pattern, 'rect', { width: 6, height: 6, class: 'hatch-fill' });
    draw(pattern, 'line', { x1: 1, y1: 0, x2: 1, y2: 6, class: 'hatch-line' });

    draw(svg, 'text', { x: 0, y: 16, class: 'unit' }, 'kWh');
    for (const [y, value] of kwh.ticks) {
      draw(svg, 'line', { x1: left, y1: y, x2: width - right, y2: y, class: value === 0 ? 'axis' : 'grid' });
      draw(svg, 'text', { x: left - 6, y: y + 6, class: 'tick', 'text-anchor': 'end' }, compact.format(value));
    }
    let negative = false;
    for (const bar of bars) {
      const x = (left + bar.slot * slot + (slot - barWidth) / 2).toFixed(1);
      const height = kwh.heightOf(bar.value);
      const below = bar.value < 0;
      negative = negative || below;
      const y = below ? kwh.zero : kwh.zero - height;
      const attributes = { x, width: barWidth.toFixed(1), ...dataAttributes(bar.data) };
      const drawn = draw(svg, 'rect', {
        ...attributes, y: y.toFixed(1), height: height.toFixed(1), class: below ? 'bar negative' : 'bar',
      });
      draw(drawn, 'title', {}, bar.title);
      if (bar.estimated !== 0 && height > 0) {
        // At the bar's end: its top above zero, its bottom below.
        const part = Math.min(height, kwh.heightOf(bar.estimated));
        draw(svg, 'rect', {
          ...attributes,
          y: (below ? y + height - part : y).toFixed(1),
          height: part.toFixed(1),
          class: 'estimated',
          fill: `url(#${hatch})`,
        });
      }
    }
    for (const label of labels) {
      const x = left + label.slot * slot + (labelsAtEdge ? 0 : slot / 2);
      draw(svg, 'text', { x: x.toFixed(1), y: bottom + 26, class: 'label', 'text-anchor': 'middle' }, label.text);
    }
    if (demand) {
      const kw = scale(axisRange(demand.map((point) => point.value)));
      const xOf = (index) => (left + index * slot + slot / 2).toFixed(1);
      draw(svg, 'text', { x: width, y: 16, class: 'unit', 'text-anchor': 'end' }, 'kW');
      for (const [y, value] of kw.ticks) {
        draw(svg, 'text', { x: width - right + 6, y: y + 6, class: 'tick' }, compact.format(value));
      }
      if (demand.length > 1) {
        const points = demand.map((point) => `${xOf(point.slot)},${kw.yOf(point.value).toFixed(1)}`).join(' ');
        draw(svg, 'polyline', { points, class: 'demand-line' });
      }
      for (const point of demand) {
        const dot = draw(svg, 'circle', {
          cx: xOf(point.slot),
          cy: kw.yOf(point.value).toFixed(1),
          r: 4,
          class: 'demand',
          ...dataAttributes(point.data),
        });
        draw(dot, 'title', {}, point.title);
      }
    }
    return negative;
  }

  // "Of which … estimated" after a figure in a tooltip or table, when there is any.
  function estimatedClause(estimated) {
    return estimated > 0 ? ` (of which ${fixed(estimated, 3)} estimated)` : '';
  }

  // ---- one panel: today's quarter hours and this month's days ---------------------------

  let detailRequest = 0;

  page.panel.addEventListener('change', () => {
    state.detailPanel = page.panel.value;
    refreshDetail();
  });
  $('#panel-form').addEventListener('submit', (event) => event.preventDefault());

  // An option of a panel picker: the id, and "(virtual)" after a virtual meter's.
  const optionText = (id) => (state.kinds.get(id) === 'virtual' ? `${id} (virtual)` : id);
  function panelOption(id) {
    const option = document.createElement('option');
    option.value = id;
    option.textContent = optionText(id);
    return option;
  }

  // The panels and virtual meters to choose from (every one with a reading, sorted by id, as
  // today-usage lists them); the choice stays while it is listed, else it is the first panel.
  function offerPanels(ids) {
    const offered = [...page.panel.options].map((option) => option.textContent);
    if (JSON.stringify(offered) !== JSON.stringify(ids.map(optionText))) {
      page.panel.replaceChildren(...ids.map(panelOption));
    }
    if (!ids.includes(state.detailPanel)) {
      state.detailPanel = ids.find((id) => state.kinds.get(id) !== 'virtual') ?? (ids.length > 0 ? ids[0] : null);
    }
    if (state.detailPanel !== null) page.panel.value = state.detailPanel;
    field('detail_empty').hidden = ids.length > 0;
    page.detail.hidden = ids.length === 0;
    state.panelIds = ids;
    offerBillPanels(page.billPanel.value);
  }

  function intervalsPath(id) {
    return `/api/panel/${encodeURIComponent(id)}/intervals`;
  }

  async function refreshDetail() {
    const id = state.detailPanel;
    if (id === null) return;
    const request = ++detailRequest;
    page.detail.setAttribute('aria-busy', 'true');
    try {
      const [curve, daily] = await Promise.all([
        api(`${intervalsPath(id)}?step=15m`),
        // This panel's days only: the answer about all is ~1.8 MB at 1 000 panels.
        api(`/api/energy/daily?panel=${encodeURIComponent(id)}`),
      ]);
      if (request !== detailRequest) return; // another panel was picked meanwhile
      showSettings(daily);
      renderCurve(curve);
      renderDaily(daily, id);
      setText(field('detail_error'), '');
    } catch (error) {
      if (request === detailRequest) reportError(field('detail_error'), `The figures of ${id}`, error);
    } finally {
      if (request === detailRequest) page.detail.removeAttribute('aria-busy');
    }
  }

  // "13:15" from "2026-11-27T13:15:00+07:00": the start's own local time, right on a day the
  // clocks change too.
  const localTime = (start) => start.slice(11, 16);

  function renderCurve(body) {
    const figure = page.curve;
    figure.setAttribute('data-panel', body.panel);
    figure.setAttribute('data-date', body.date);
    setText(field('panel', figure), body.panel);
    setText(field('curve_date', figure), `(${body.date})`);
    setNumber(field('curve_total_kwh', figure), body.total_kwh, 3);
    field('curve_negative', figure).hidden = !(body.total_kwh < 0);
    showEstimated(figure, 'curve_estimated', body.total_estimated_kwh);
    const query = `date=${encodeURIComponent(body.date)}&step=${encodeURIComponent(body.step)}&format=csv`;
    field('curve_csv', figure).setAttribute('href', `${intervalsPath(body.panel)}?${query}`);
    if (!changed(figure, body)) return;

    const { intervals } = body;
    // The whole day along the axis, of which only the quarter hours that have started have
    // figures.
    const slots = Math.max(QUARTERS_PER_DAY, intervals.length);
    const labels = [];
    // Every three hours; none at the right edge, where it would stick out.
    for (let slot = 0; slot < slots - 6; slot += 12) {
      const hour = String(slot / 4).padStart(2, '0');
      labels.push({ slot, text: slot < intervals.length ? localTime(intervals[slot].start) : `${hour}:00` });
    }
    const negative = drawBarChart($('svg', figure), {
      slots,
      labels,
      labelsAtEdge: true,
      bars: intervals.map((interval, index) => ({
        slot: index,
        value: interval.usage_kwh,
        estimated: interval.estimated_kwh,
        title: `From ${localTime(interval.start)}: ${fixed(interval.usage_kwh, 3)} kWh`
          + `${interval.negative ? ' (negative)' : ''}`
          + `${estimatedClause(interval.estimated_kwh)}, on average ${fixed(interval.avg_kw, 3)} kW, `
          + `${interval.window}, ${money(interval.cost)}`,
        data: { start: interval.start, value: interval.usage_kwh, estimated: interval.estimated_kwh },
      })),
    });
    field('negative_legend', figure).hidden = !negative;
    $('tbody', figure).replaceChildren(...intervals.map((interval) => tableRow(
      localTime(interval.start),
      fixed(interval.usage_kwh, 3),
      fixed(interval.estimated_kwh, 3),
      fixed(interval.avg_kw, 3),
      interval.window,
      money(interval.cost),
    )));
  }

  function renderDaily(body, id) {
    const figure = page.daily;
    const panel = body.panels.find((entry) => entry.panel === id);
    const days = panel ? panel.days : [];
    const [year, month] = body.month.split('-').map(Number);
    figure.setAttribute('data-panel', id);
    figure.setAttribute('data-month', body.month);
    setText(field('panel', figure), id);
    setText(field('daily_month', figure), `${MONTH_NAMES[month - 1]} ${year}`);
    field('daily_csv', figure).setAttribute('href', `/api/energy/daily?month=${encodeURIComponent(body.month)}&format=csv&panel=${encodeURIComponent(id)}`);
    // The month's largest demand so far: the first day that reached it.
    const peak = days.reduce((best, day) => (best === null || day.max_demand_kw > best.max_demand_kw ? day : best), null);
    field('daily_peak', figure).hidden = !(peak && peak.max_demand_kw > 0);
    if (peak) {
      setNumber(field('daily_peak_kw', figure), peak.max_demand_kw, 3);
      setText(field('daily_peak_date', figure), peak.date);
    }
    if (!changed(figure, [id, body.month, body.currency, days])) return;

    const dayName = (day) => `${Number(day.date.slice(8))} ${MONTH_NAMES[month - 1]}`;
    const slots = new Date(Date.UTC(year, month, 0)).getUTCDate();
    const labels = [];
    for (let day = 1; day <= slots; day += 1) {
      if (day === 1 || day % 5 === 0) labels.push({ slot: day - 1, text: String(day) });
    }
    const slotOf = (day) => Number(day.date.slice(8)) - 1;
    const negative = drawBarChart($('svg', figure), {
      slots,
      labels,
      bars: days.map((day) => ({
        slot: slotOf(day),
        value: day.usage_kwh,
        estimated: day.estimated_kwh,
        title: `${dayName(day)}: ${fixed(day.usage_kwh, 3)} kWh${estimatedClause(day.estimated_kwh)}, `
          + `${money(day.cost)}, largest demand ${fixed(day.max_demand_kw, 3)} kW`,
        data: { date: day.date, value: day.usage_kwh, estimated: day.estimated_kwh, demand: day.max_demand_kw },
      })),
      demand: days.map((day) => ({
        slot: slotOf(day),
        value: day.max_demand_kw,
        title: `${dayName(day)}: largest 15-minute demand ${fixed(day.max_demand_kw, 3)} kW`,
        data: { date: day.date, value: day.max_demand_kw },
      })),
    });
    field('negative_legend', figure).hidden = !negative;
    $('tbody', figure).replaceChildren(...days.map((day) => tableRow(
      dayName(day),
      fixed(day.usage_kwh, 3),
      fixed(day.estimated_kwh, 3),
      fixed(day.max_demand_kw, 3),
      money(day.cost),
    )));
  }

  // ---- CSV downloads --------------------------------------------------------------------

  // Without a token a CSV link is a plain link (`download`): the browser fetches and saves it.
  // A link cannot send the token, so with one the file is fetched here and handed to the
  // browser as a blob: URL to save. A download is not a fetch, so the Content-Security-Policy,
  // which allows no blob: anywhere, need not change for it.
  async function downloadCsv(event) {
    const link = event.currentTarget;
    if (!state.token || !link.href) return;
    event.preventDefault();
    try {
      const response = await fetch(link.href, { headers: headers('text/csv'), cache: 'no-store' });
      if (response.status === 401) {
        askForToken();
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      const disposition = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
      const url = URL.createObjectURL(blob);
      const save = document.createElement('a');
      save.href = url;
      save.download = disposition ? disposition[1] : 'energy.csv';
      save.hidden = true;
      document.body.append(save);
      save.click();
      save.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), BLOB_KEPT_MS);
    } catch (error) {
      setText(field(link.getAttribute('data-errors') || 'detail_error'), `The CSV file could not be downloaded: ${error.message}.`);
    }
  }

  for (const link of document.querySelectorAll('a.csv')) link.addEventListener('click', downloadCsv);

  // ---- monthly --------------------------------------------------------------------------

  let monthlyTimer = 0;
  let monthlyRequest = 0;

  page.year.addEventListener('change', () => {
    state.year = Number(page.year.value);
    refreshMonthly();
  });
  // Enter in the year picker must not submit (and so reload) anything.
  $('#year-form').addEventListener('submit', (event) => event.preventDefault());

  async function refreshMonthly() {
    const request = ++monthlyRequest;
    const query = state.year === null ? '' : `?year=${encodeURIComponent(state.year)}`;
    page.charts.setAttribute('aria-busy', 'true');
    try {
      const body = await api(`/api/energy/monthly${query}`);
      if (request !== monthlyRequest) return; // a newer year was picked meanwhile
      showSettings(body);
      if (state.year === null) offerYears(body.year);
      renderCharts(body);
      setText(field('monthly_error'), '');
    } catch (error) {
      if (request === monthlyRequest) reportError(field('monthly_error'), 'The monthly figures', error);
    } finally {
      if (request === monthlyRequest) page.charts.removeAttribute('aria-busy');
    }
  }

  // The current year (as the server's time zone has it) and the nine before it.
  function offerYears(current) {
    state.year = current;
    page.year.replaceChildren();
    for (let year = current; year > current - YEARS_OFFERED; year -= 1) {
      const option = document.createElement('option');
      option.value = String(year);
      option.textContent = String(year);
      page.year.append(option);
    }
    page.year.value = String(current);
  }

  // A chart per panel and virtual meter, as long as there are at most MANY; beyond, the
  // TOP_CHARTS panels that used the most in the year and one chart of all the other panels
  // added up (virtual meters left out: their members are among the panels).
  function renderCharts(body) {
    const series = body.panels;
    let shown;
    const note = field('monthly_note');
    if (series.length <= MANY) {
      shown = series.map((panel) => ({ key: panel.panel, panel }));
      note.hidden = true;
    } else {
      const panels = series.filter((panel) => panel.kind !== 'virtual');
      const ranked = [...panels].sort((a, b) => b.total_kwh - a.total_kwh || byId(a.panel, b.panel));
      const top = new Set(ranked.slice(0, TOP_CHARTS).map((panel) => panel.panel));
      const others = panels.filter((panel) => !top.has(panel.panel));
      shown = ranked.slice(0, TOP_CHARTS).map((panel) => ({ key: panel.panel, panel }));
      if (others.length > 0) shown.push({ key: '', others: others.length, panel: addedUp(others) });
      const virtual = series.length - panels.length;
      setText(note, `${count(panels.length)} panels${virtual > 0 ? ` and ${count(virtual)} virtual meters` : ''}: `
        + `the ${count(top.size)} panels that used the most in ${body.year}`
        + `${others.length > 0 ? `, then the other ${count(others.length)} added up` : ''}. `
        + 'Pick a panel or virtual meter above for its own days and quarter hours.');
      note.hidden = false;
    }
    const seen = new Set();
    let negative = false;
    for (const { key, panel, others } of shown) {
      seen.add(key);
      let figure = state.charts.get(key);
      if (!figure) {
        figure = page.chartTemplate.content.firstElementChild.cloneNode(true);
        if (others === undefined) {
          figure.setAttribute('data-panel', key);
          setText(field('panel', figure), key);
          field('kind', figure).hidden = panel.kind !== 'virtual';
        } else {
          figure.removeAttribute('data-panel');
        }
        state.charts.set(key, figure);
      }
      if (others !== undefined) {
        figure.setAttribute('data-others', String(others));
        setText(field('panel', figure), `The other ${count(others)} panels, added up`);
      }
      // Append in the order shown; moves existing figures into place.
      page.charts.append(figure);
      negative = renderChart(figure, panel, body.year) || negative;
    }
    for (const [key, figure] of state.charts) {
      if (!seen.has(key)) {
        figure.remove();
        state.charts.delete(key);
      }
    }
    field('negative_legend', page.charts.parentElement).hidden = !negative;
    field('monthly_empty').hidden = body.panels.length > 0;
  }

  // Panels' months added up, in the shape of one panel's (the largest demand is not a sum).
  function addedUp(panels) {
    const sum = (values) => values.reduce((total, value) => total + value, 0);
    return {
      total_kwh: sum(panels.map((panel) => panel.total_kwh)),
      total_estimated_kwh: sum(panels.map((panel) => panel.total_estimated_kwh)),
      total_cost: sum(panels.map((panel) => panel.total_cost)),
      months: panels[0].months.map((month, index) => ({
        month: month.month,
        usage_kwh: sum(panels.map((panel) => panel.months[index].usage_kwh)),
        estimated_kwh: sum(panels.map((panel) => panel.months[index].estimated_kwh)),
        cost: sum(panels.map((panel) => panel.months[index].cost)),
        max_demand_kw: null,
      })),
    };
  }

  // Draws one chart, if its figures changed; returns whether a month is negative.
  function renderChart(figure, panel, year) {
    setNumber(field('year_total_kwh', figure), panel.total_kwh, 3);
    showEstimated(figure, 'year_estimated', panel.total_estimated_kwh);
    setText(field('year_total_cost', figure), money(panel.total_cost));
    setText(field('year', figure), String(year));
    const negative = panel.months.some((month) => month.usage_kwh < 0);
    if (!changed(figure, [panel.months, year, state.currency])) return negative;
    drawBarChart($('svg', figure), {
      slots: 12,
      labels: MONTHS.map((text, slot) => ({ slot, text })),
      bars: panel.months.map((month, index) => ({
        slot: index,
        value: month.usage_kwh,
        estimated: month.estimated_kwh,
        title: `${MONTH_NAMES[index]} ${year}: ${fixed(month.usage_kwh, 3)} kWh`
          + `${estimatedClause(month.estimated_kwh)}, ${money(month.cost)}`,
        data: { month: month.month, value: month.usage_kwh, estimated: month.estimated_kwh },
      })),
    });
    $('tbody', figure).replaceChildren(...panel.months.map((month, index) => tableRow(
      MONTH_NAMES[index],
      fixed(month.usage_kwh, 3),
      fixed(month.estimated_kwh, 3),
      fixed(month.max_demand_kw, 3),
      money(month.cost),
    )));
    return negative;
  }

  // ---- views: the dashboard and the bill ------------------------------------------------

  // The view the URL's fragment names: #bill or #bill?month=…&panel=… the bill, #dashboard or
  // none the dashboard. Any other fragment (#main, of the skip link) leaves the view as it is.
  function route() {
    const hash = window.location.hash;
    if (hash === '#bill' || hash.startsWith('#bill?')) {
      showView('bill');
      const query = hash.indexOf('?') < 0 ? '' : hash.slice(hash.indexOf('?') + 1);
      openBill(new URLSearchParams(query));
    } else if (hash === '' || hash === '#' || hash === '#dashboard') {
      showView('dashboard');
    }
  }

  function showView(name) {
    for (const view of page.views) view.hidden = view.id !== name;
    for (const link of page.navLinks) {
      if (link.getAttribute('data-view') === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (name !== 'bill') document.title = 'Energy monitor';
  }

  window.addEventListener('hashchange', route);

  // ---- the bill -------------------------------------------------------------------------

  let billRequest = 0;
  const MONTH_PATTERN = /^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$/;

  // The query of a month's bill, of one panel or (panel '') of all.
  function billQuery(month, panel) {
    const query = new URLSearchParams({ month });
    if (panel) query.set('panel', panel);
    return query.toString();
  }

  // "All panels" and every panel with a reading; `chosen` stays chosen, listed or not (a panel
  // named in the URL before the panels are known).
  function offerBillPanels(chosen) {
    const ids = [...state.panelIds];
    if (chosen && !ids.includes(chosen)) ids.push(chosen);
    const offered = [...page.billPanel.options].map((option) => option.textContent);
    if (JSON.stringify(offered) !== JSON.stringify(['All panels', ...ids.map(optionText)])) {
      const all = document.createElement('option');
      all.value = '';
      all.textContent = 'All panels';
      page.billPanel.replaceChildren(all, ...ids.map(panelOption));
    }
    page.billPanel.value = chosen || '';
  }

  // The last whole month in the server's time zone, from today's date there.
  async function lastWholeMonth() {
    if (!state.todayDate) state.todayDate = (await api('/api/panel/today-usage')).date;
    const [year, month] = state.todayDate.split('-').map(Number);
    return month === 1 ? `${year - 1}-12` : `${year}-${String(month - 1).padStart(2, '0')}`;
  }

  // Shows the bill the form asks for, through the URL (so it can be bookmarked and reloaded).
  function askForBill() {
    const month = page.billMonth.value;
    if (!MONTH_PATTERN.test(month)) {
      setText(field('bill_error'), 'Choose a month (YYYY-MM) first.');
      page.billMonth.focus();
      return;
    }
    const hash = `#bill?${billQuery(month, page.billPanel.value)}`;
    if (window.location.hash === hash) route();
    else window.location.hash = hash;
  }

  page.billForm.addEventListener('submit', (event) => {
    event.preventDefault();
    askForBill();
  });
  page.billMonth.addEventListener('change', () => {
    if (MONTH_PATTERN.test(page.billMonth.value)) askForBill();
  });
  page.billPanel.addEventListener('change', askForBill);
  $('#bill-print').addEventListener('click', () => window.print());

  async function openBill(params) {
    const request = ++billRequest;
    const panel = params.get('panel') || '';
    let month = params.get('month') || '';
    page.bills.setAttribute('aria-busy', 'true');
    try {
      if (!MONTH_PATTERN.test(month)) {
        // No month (or none that is one): the last whole month, written into the URL.
        month = await lastWholeMonth();
        if (request !== billRequest) return;
        window.history.replaceState(null, '', `#bill?${billQuery(month, panel)}`);
      }
      page.billMonth.value = month;
      offerBillPanels(panel);
      const query = billQuery(month, panel);
      field('bill_csv').setAttribute('href', `/api/bill?${query}&format=csv`);
      document.title = `Bill, ${monthText(month)}${panel ? `, ${panel}` : ''} – Energy monitor`;
      const body = await api(`/api/bill?${query}`);
      if (request !== billRequest) return; // another bill was asked for meanwhile
      renderBills(body, panel);
      setText(field('bill_error'), '');
    } catch (error) {
      if (request !== billRequest || error instanceof TokenNeeded) return;
      page.bills.replaceChildren();
      page.bills.setAttribute('data-month', '');
      setText(field('bill_error'), `The bill could not be loaded: ${error.message}.`);
    } finally {
      if (request === billRequest) page.bills.removeAttribute('aria-busy');
    }
  }

  function renderBills(body, panel) {
    const amount = (value) => `${body.currency} ${fixed(value, body.decimals)}`;
    const sheets = body.panels.map((bill) => billSheet(body, bill, amount));
    if (body.panels.length > 1) sheets.push(billSummary(body, amount));
    page.bills.replaceChildren(...sheets);
    page.bills.setAttribute('data-month', body.month);
    page.bills.setAttribute('data-panel', panel);
    field('bill_empty').hidden = body.panels.length > 0;
  }

  // A line's quantity and rate as a person reads them.
  function lineQuantity(line, amount) {
    switch (line.unit) {
      case 'kWh':
        return `${fixed(line.quantity, 3)} kWh`;
      case 'kW':
        return `${fixed(line.quantity, 3)} kW`;
      case 'days':
        return `${line.quantity} ${line.quantity === 1 ? 'day' : 'days'}`;
      case 'base':
        return `${amount(line.quantity)}`;
      default:
        return `${line.quantity} ${line.unit}`;
    }
  }

  function lineRate(line, currency) {
    switch (line.kind) {
      case 'energy':
      case 'minimum_top_up':
        return `${rate(line.rate, currency)}/kWh`;
      case 'demand':
        return `${rate(line.rate, currency)}/kW`;
      case 'fixed':
        return `${rate(line.rate, currency)}/month`;
      case 'tax':
        return `${line.rate} %`;
      default:
        return rate(line.rate, currency);
    }
  }

  function lineName(line) {
    if (line.kind === 'energy') return `Energy, ${line.name}`;
    if (line.kind === 'tax') return `Tax, ${line.name}`;
    return line.name.charAt(0).toUpperCase() + line.name.slice(1);
  }

  // A row of a bill's table whose last cell is an amount: `value` in its data-value, and
  // `name` in its data-field, if given.
  function billRow(className, cells, value, name) {
    const row = tableRow(...cells);
    if (className) row.className = className;
    const last = row.lastElementChild;
    last.setAttribute('data-value', String(value));
    if (name) last.setAttribute('data-field', name);
    return row;
  }

  function billSheet(body, bill, amount) {
    const sheet = page.billTemplate.content.firstElementChild.cloneNode(true);
    sheet.setAttribute('data-panel', bill.panel);
    setText(field('panel', sheet), bill.panel);
    setText(field('bill_month', sheet), monthText(body.month));
    setText(field('bill_tariff', sheet), bill.tariff);
    setText(field('bill_versions', sheet), bill.versions
      .map((v) => `${v.valid_from} (${v.days} ${v.days === 1 ? 'day' : 'days'})`).join(', '));
    field('bill_kva_row', sheet).hidden = typeof bill.contracted_kva !== 'number';
    setNumber(field('bill_kva', sheet), bill.contracted_kva, 0);
    setNumber(field('bill_usage_kwh', sheet), bill.usage_kwh, 3);
    setNumber(field('bill_max_demand_kw', sheet), bill.max_demand_kw, 3);
    setText(field('bill_timezone', sheet), body.timezone);
    const charges = bill.lines.filter((line) => line.kind !== 'tax');
    const taxes = bill.lines.filter((line) => line.kind === 'tax');
    const row = (line) => {
      const drawn = billRow(`bill-line bill-${line.kind.replace(/_/g, '-')}`, [
        lineName(line),
        line.version,
        lineQuantity(line, amount),
        lineRate(line, body.currency),
        amount(line.amount),
      ], line.amount);
      drawn.setAttribute('data-kind', line.kind);
      if (line.estimated_kwh > 0) {
        const note = document.createElement('small');
        note.className = 'estimated-note';
        note.textContent = `of which ${fixed(line.estimated_kwh, 3)} estimated`;
        drawn.children[2].append(' ', note);
      }
      return drawn;
    };
    field('bill_lines', sheet).replaceChildren(...charges.map(row));
    // The taxes come after the subtotal they are charged on.
    field('bill_sums', sheet).replaceChildren(
      billRow('bill-subtotal', ['Subtotal', '', '', '', amount(bill.subtotal)], bill.subtotal, 'bill_subtotal'),
      ...taxes.map(row),
      billRow('bill-total', ['Total', '', '', '', amount(bill.total)], bill.total, 'bill_total'),
    );
    setNumber(field('bill_estimated_kwh', sheet), bill.estimated_kwh, 3);
    setText(field('bill_estimated_amount', sheet), amount(bill.estimated_amount));
    field('bill_estimated_amount', sheet).setAttribute('data-value', String(bill.estimated_amount));
    field('bill_notes_block', sheet).hidden = bill.notes.length === 0;
    field('bill_notes', sheet).replaceChildren(...bill.notes.map((note) => {
      const item = document.createElement('li');
      item.textContent = note;
      return item;
    }));
    return sheet;
  }

  // All panels' totals and their sum, after the panels' bills.
  function billSummary(body, amount) {
    const summary = page.billSummaryTemplate.content.firstElementChild.cloneNode(true);
    setText(field('bill_month', summary), monthText(body.month));
    $('tbody', summary).replaceChildren(...body.panels.map((bill) => billRow('', [
      bill.panel, bill.tariff, fixed(bill.usage_kwh, 3), amount(bill.total),
    ], bill.total)));
    const total = field('bills_total', summary);
    setText(total, amount(body.total));
    total.setAttribute('data-value', String(body.total));
    return summary;
  }

  // ---- start and stop -------------------------------------------------------------------

  // The buildings first, as each panel's card goes into its group as it arrives, then the
  // stream; the larger answers after them.
  async function start() {
    state.stopped = false;
    setConnection('connecting', 'Connecting…');
    route();
    try {
      await loadMeters();
    } catch {
      return; // the token is asked for; start() runs again with it
    }
    if (state.stopped) return;
    connect();
    refreshToday();
    refreshMonthly();
    refreshAlerts();
    todayTimer = window.setInterval(refreshToday, TODAY_MS);
    monthlyTimer = window.setInterval(refreshMonthly, MONTHLY_MS);
    alertsTimer = window.setInterval(refreshAlerts, ALERTS_MS);
  }

  function stop() {
    state.stopped = true;
    const { controller } = live;
    live.controller = null;
    if (controller) controller.abort();
    window.clearTimeout(live.reconnectTimer);
    stopPolling();
    window.clearInterval(todayTimer);
    window.clearInterval(monthlyTimer);
    window.clearTimeout(todaySoon);
    todaySoon = 0;
    window.clearInterval(alertsTimer);
    window.clearTimeout(alertsSoon);
    alertsSoon = 0;
  }

  start();
})();
