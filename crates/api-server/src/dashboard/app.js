// The energy monitor's dashboard: plain JavaScript, no framework, nothing from other origins.
//
// Everything shown comes from this server's JSON API. Values from it (panel ids above all,
// which any meter can choose) only ever reach the page as text (textContent, setAttribute),
// never as markup.
//
// Live state comes from /api/panel/stream (Server-Sent Events), read with fetch() rather than
// EventSource: fetch can send the bearer token and can tell a refused token (401) from a
// broken connection. While the stream is down the page polls /api/panel/realtime instead, and
// keeps trying to reconnect. Today's and the monthly figures are fetched every so often.
'use strict';

(() => {
  const TOKEN_KEY = 'energy-monitor.api-token';
  const POLL_MS = 5000; // /api/panel/realtime while the stream is down
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  const STALL_MS = 45000; // three missed keep-alives (the server sends one every 15 s)
  const TODAY_MS = 60000;
  const TODAY_AFTER_READING_MS = 5000;
  const MONTHLY_MS = 5 * 60000;
  const YEARS_OFFERED = 10;
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const MONTH_NAMES = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
    'September', 'October', 'November', 'December'];

  const $ = (selector, root = document) => root.querySelector(selector);
  const field = (name, root = document) => root.querySelector(`[data-field="${name}"]`);

  const page = {
    cards: $('#cards'),
    charts: $('#charts'),
    year: $('#year'),
    signIn: $('#sign-in'),
    tokenForm: $('#token-form'),
    token: $('#token'),
    cardTemplate: $('#card-template'),
    chartTemplate: $('#chart-template'),
  };

  const state = {
    token: readToken(),
    panels: new Map(), // id -> {card, data, receivedAt}
    today: new Map(), // id -> {usage_kwh, cost}
    currency: '',
    charts: new Map(), // id -> figure
    year: null,
    offlineAfter: null,
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

  async function api(path) {
    const response = await fetch(path, { headers: headers('application/json'), cache: 'no-store' });
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

  // ---- panel cards ----------------------------------------------------------------------

  function cardFor(id) {
    let entry = state.panels.get(id);
    if (entry) return entry;
    const card = page.cardTemplate.content.firstElementChild.cloneNode(true);
    card.setAttribute('data-panel', id);
    setText(field('panel', card), id);
    entry = { card, data: null, receivedAt: 0 };
    state.panels.set(id, entry);
    // Keep the cards sorted by id, as the API lists them.
    const next = [...state.panels.keys()].filter((other) => other > id).sort()[0];
    page.cards.insertBefore(card, next === undefined ? null : state.panels.get(next).card);
    showToday(id);
    field('panels_empty').hidden = true;
    return entry;
  }

  function updatePanel(panel, { announceChanges }) {
    if (!panel || typeof panel.panel !== 'string') return;
    const entry = cardFor(panel.panel);
    const before = entry.data;
    entry.data = panel;
    entry.receivedAt = performance.now();
    const { card } = entry;
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
    showAge(entry);
    if (before && before.status !== panel.status && announceChanges) {
      announce(`${panel.panel} is now ${panel.status}.`);
    }
    if (before && before.last_seen !== panel.last_seen) refreshTodaySoon();
  }

  function removePanelsExcept(ids) {
    const keep = new Set(ids);
    for (const [id, entry] of state.panels) {
      if (!keep.has(id)) {
        entry.card.remove();
        state.panels.delete(id);
      }
    }
    field('panels_empty').hidden = state.panels.size > 0;
  }

  function showAge(entry) {
    if (!entry.data) return;
    // The server's age plus the time since it was received: right even when this device's
    // clock is off.
    const seconds = entry.data.seconds_since_last_seen + (performance.now() - entry.receivedAt) / 1000;
    setText(field('last_seen', entry.card), age(seconds));
  }

  window.setInterval(() => {
    for (const entry of state.panels.values()) showAge(entry);
  }, 1000);

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

  // ---- today ----------------------------------------------------------------------------

  let todayTimer = 0;
  let todaySoon = 0;

  function refreshTodaySoon() {
    if (!todaySoon) todaySoon = window.setTimeout(refreshToday, TODAY_AFTER_READING_MS);
  }

  async function refreshToday() {
    window.clearTimeout(todaySoon);
    todaySoon = 0;
    try {
      const body = await api('/api/panel/today-usage');
      showSettings(body);
      setText(field('today_date'), `(${body.date})`);
      state.today = new Map(body.panels.map((panel) => [panel.panel, panel]));
      for (const id of state.panels.keys()) showToday(id);
      setNumber(field('total_usage_kwh'), body.total.usage_kwh, 3);
      setText(field('total_cost'), money(body.total.cost));
      setText(field('today_error'), '');
    } catch (error) {
      reportError(field('today_error'), "Today's figures", error);
    }
  }

  function showToday(id) {
    const entry = state.panels.get(id);
    const today = state.today.get(id);
    if (!entry || !today) return;
    setNumber(field('today_usage_kwh', entry.card), today.usage_kwh, 3);
    setText(field('today_cost', entry.card), money(today.cost));
  }

  function showSettings(body) {
    state.currency = body.currency;
    setText(field('timezone'), body.timezone);
    setText(field('currency'), body.currency);
    setText(field('tariff'), `${body.currency} ${fixed(body.tariff_per_kwh, 2)} per kWh`);
  }

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

  function renderCharts(body) {
    const seen = new Set();
    for (const panel of body.panels) {
      seen.add(panel.panel);
      let figure = state.charts.get(panel.panel);
      if (!figure) {
        figure = page.chartTemplate.content.firstElementChild.cloneNode(true);
        figure.setAttribute('data-panel', panel.panel);
        setText(field('panel', figure), panel.panel);
        state.charts.set(panel.panel, figure);
      }
      // Append in the API's order (sorted by id); moves existing figures into place.
      page.charts.append(figure);
      renderChart(figure, panel, body.year);
    }
    for (const [id, figure] of state.charts) {
      if (!seen.has(id)) {
        figure.remove();
        state.charts.delete(id);
      }
    }
    field('monthly_empty').hidden = body.panels.length > 0;
  }

  // A round number at or above `value` (1, 2 or 5 times a power of ten) for the axis top.
  function axisTop(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function renderChart(figure, panel, year) {
    setNumber(field('year_total_kwh', figure), panel.total_kwh, 3);
    setText(field('year_total_cost', figure), money(panel.total_cost));
    setText(field('year', figure), String(year));

    const svg = $('svg', figure);
    const svgNamespace = svg.namespaceURI;
    const draw = (name, attributes, text) => {
      const element = document.createElementNS(svgNamespace, name);
      for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
      if (text !== undefined) element.textContent = text;
      svg.append(element);
      return element;
    };
    svg.replaceChildren();
    // Drawn in the SVG's own units (its viewBox is 480 x 270); it scales to the card's width.
    const width = 480;
    const left = 52;
    const right = 6;
    const top = 34; // the axis top; the unit above it
    const bottom = 226; // the baseline; month names below it
    const usage = panel.months.map((month) => month.usage_kwh);
    const max = axisTop(Math.max(0, ...usage));
    const slot = (width - left - right) / 12;
    const barWidth = slot * 0.7;
    const middle = (top + bottom) / 2;

    draw('text', { x: 0, y: 16, class: 'unit' }, 'kWh');
    for (const [y, value] of [[top, max], [middle, max / 2], [bottom, 0]]) {
      draw('line', { x1: left, y1: y, x2: width - right, y2: y, class: y === bottom ? 'axis' : 'grid' });
      draw('text', { x: left - 6, y: y + 6, class: 'tick', 'text-anchor': 'end' }, compact.format(value));
    }
    panel.months.forEach((month, index) => {
      const height = Math.max(0, (month.usage_kwh / max) * (bottom - top));
      const x = left + index * slot + (slot - barWidth) / 2;
      const bar = draw('rect', {
        x: x.toFixed(1),
        y: (bottom - height).toFixed(1),
        width: barWidth.toFixed(1),
        height: height.toFixed(1),
        class: 'bar',
        'data-month': month.month,
        'data-value': month.usage_kwh,
      });
      const title = document.createElementNS(svgNamespace, 'title');
      title.textContent = `${MONTH_NAMES[index]} ${year}: ${fixed(month.usage_kwh, 3)} kWh, ${money(month.cost)}`;
      bar.append(title);
      draw('text', { x: (x + barWidth / 2).toFixed(1), y: bottom + 26, class: 'month', 'text-anchor': 'middle' }, MONTHS[index]);
    });

    const rows = panel.months.map((month, index) => {
      const row = document.createElement('tr');
      const name = document.createElement('th');
      name.scope = 'row';
      name.textContent = MONTH_NAMES[index];
      const kwh = document.createElement('td');
      kwh.textContent = fixed(month.usage_kwh, 3);
      const cost = document.createElement('td');
      cost.textContent = money(month.cost);
      row.append(name, kwh, cost);
      return row;
    });
    $('tbody', figure).replaceChildren(...rows);
  }

  // ---- start and stop -------------------------------------------------------------------

  function start() {
    state.stopped = false;
    setConnection('connecting', 'Connecting…');
    connect();
    refreshToday();
    refreshMonthly();
    todayTimer = window.setInterval(refreshToday, TODAY_MS);
    monthlyTimer = window.setInterval(refreshMonthly, MONTHLY_MS);
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
  }

  start();
})();
