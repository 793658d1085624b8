// Footfall dashboard: a plain ES module over the query API (POST /api/v2/query), the key's
// sites (GET /api/v2/sites) and current visitors (GET /api/v2/realtime). No framework, no
// build step. Everything that came from a tracked site (paths, sources, event names,
// property values) is put into the page with text nodes only: this file never assigns
// innerHTML, and the server's Content-Security-Policy forbids inline script anyway.

const KEY = 'footfall.key';
const $ = (id) => document.getElementById(id);

/** Breakdown panels: their tabs are [label, dimension, metrics]. */
const PANELS = [
  { id: 'pages', title: 'Pages', tabs: [
    ['Top pages', 'event:page', ['visitors', 'pageviews']],
    ['Entry pages', 'visit:entry_page', ['visitors', 'visits']],
    ['Exit pages', 'visit:exit_page', ['visitors', 'visits']]] },
  { id: 'sources', title: 'Sources', tabs: [
    ['Channels', 'visit:channel', ['visitors']],
    ['Sources', 'visit:source', ['visitors']],
    ['Referrers', 'visit:referrer', ['visitors']]] },
  { id: 'utm', title: 'Campaigns', tabs: [
    ['UTM source', 'visit:utm_source', ['visitors']],
    ['UTM medium', 'visit:utm_medium', ['visitors']],
    ['UTM campaign', 'visit:utm_campaign', ['visitors']]] },
  { id: 'locations', title: 'Locations', tabs: [
    ['Countries', 'visit:country', ['visitors']],
    ['Regions', 'visit:region', ['visitors']],
    ['Cities', 'visit:city', ['visitors']]] },
  { id: 'devices', title: 'Devices', tabs: [
    ['Devices', 'visit:device', ['visitors']],
    ['Browsers', 'visit:browser', ['visitors']],
    ['Operating systems', 'visit:os', ['visitors']]] },
  { id: 'goals', title: 'Goals', tabs: [
    ['Goals', 'event:goal', ['visitors', 'events']]], conversion: true },
  // Custom properties: the tab is the property named in the panel's form (URL `prop`).
  { id: 'props', title: 'Properties', tabs: [], property: true },
];

const CARDS = [
  ['visitors', 'Unique visitors'], ['visits', 'Total visits'], ['pageviews', 'Total pageviews'],
  ['views_per_visit', 'Views per visit'], ['bounce_rate', 'Bounce rate'], ['visit_duration', 'Visit duration'],
];
const VISIT_ONLY = new Set(['bounce_rate', 'visit_duration']);
const METRIC_LABEL = { visitors: 'Visitors', visits: 'Visits', pageviews: 'Pageviews', events: 'Events' };

const state = { site: '', period: '30d', from: '', to: '', interval: '', compare: false, filters: [], tabs: {}, prop: '' };
let sites = [];
let generation = 0;
let realtimeTimer = null;

/** Creates an element; string children become text nodes, never markup. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'onclick') el.addEventListener('click', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

// ---- URL state --------------------------------------------------------------------------

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.site = p.get('site') || '';
  state.period = p.get('period') || '30d';
  state.from = p.get('from') || '';
  state.to = p.get('to') || '';
  state.interval = p.get('interval') || '';
  state.compare = p.get('compare') === '1';
  state.prop = p.get('prop') || '';
  state.filters = p.getAll('f').map((f) => {
    const i = f.indexOf('|');
    return i > 0 ? { dim: f.slice(0, i), value: f.slice(i + 1) } : null;
  }).filter(Boolean);
  state.tabs = {};
  for (const [k, v] of p) if (k.startsWith('tab.')) state.tabs[k.slice(4)] = v;
}

function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.site) p.set('site', state.site);
  p.set('period', state.period);
  if (state.period === 'custom') { p.set('from', state.from); p.set('to', state.to); }
  if (state.interval) p.set('interval', state.interval);
  if (state.compare) p.set('compare', '1');
  if (state.prop) p.set('prop', state.prop);
  for (const f of state.filters) p.append('f', `${f.dim}|${f.value}`);
  for (const [k, v] of Object.entries(state.tabs)) p.set(`tab.${k}`, v);
  history[push ? 'pushState' : 'replaceState'](null, '', `?${p}`);
}

function interval() {
  if (state.interval) return state.interval;
  if (state.period === 'day') return 'hour';
  if (state.period === '6mo' || state.period === '12mo') return 'month';
  return 'day';
}

function dateRange() {
  return state.period === 'custom' ? [state.from, state.to] : state.period;
}

function filterDim() {
  return state.filters.length ? state.filters[0].dim : null;
}

function queryFilters() {
  const dim = filterDim();
  return dim ? [['is', dim, state.filters.map((f) => f.value)]] : [];
}

// ---- API ----------------------------------------------------------------------------------

async function api(path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ''}` };
  if (body) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method: body ? 'POST' : 'GET', headers, body: body ? JSON.stringify(body) : undefined });
  const answer = await r.json().catch(() => ({}));
  if (r.status === 401) {
    signOut(answer.error || 'The API key is not valid.');
    throw new Error('signed out');
  }
  if (!r.ok) throw new Error(answer.error || `the server answered ${r.status}`);
  return answer;
}

const query = (q) => api('/api/v2/query', { site_id: state.site, ...q });

// ---- formatting ---------------------------------------------------------------------------

function fmt(metric, v) {
  if (v === null || v === undefined) return '—';
  if (metric === 'bounce_rate') return `${v}%`;
  if (metric === 'views_per_visit') return Number(v).toFixed(2);
  if (metric === 'visit_duration') {
    const m = Math.floor(v / 60), s = Math.round(v % 60);
    return m ? `${m}m ${String(s).padStart(2, '0')}s` : `${s}s`;
  }
  return Number(v).toLocaleString('en-US');
}

function change(metric, now, before) {
  if (before === undefined || before === null || now === null) return null;
  if (metric === 'bounce_rate') {
    const d = Math.round((now - before) * 10) / 10;
    return { text: `${d > 0 ? '+' : ''}${d} pp`, good: d <= 0, zero: d === 0 };
  }
  if (before === 0) return now === 0 ? { text: '0%', good: true, zero: true } : { text: 'new', good: true };
  const pct = Math.round(((now - before) / before) * 100);
  return { text: `${pct > 0 ? '+' : ''}${pct}%`, good: pct >= 0, zero: pct === 0 };
}

function addDays(iso, n) {
  const [y, m, d] = iso.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function dayCount(from, to) {
  const t = (s) => Date.parse(`${s}T00:00:00Z`);
  return Math.round((t(to) - t(from)) / 86400000) + 1;
}

function timeLabel(label) {
  // "2024-03-01" → "Mar 1"; "2024-03-01T14:00:00+01:00" → "14:00".
  if (label.length > 10) return label.slice(11, 16);
  const [y, m, d] = label.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d || 1)).toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

// ---- rendering ----------------------------------------------------------------------------

function showError(msg) { $('error').textContent = msg ? `Error: ${msg}` : ''; }

function renderFilters() {
  const box = $('filters');
  box.replaceChildren();
  for (const f of state.filters) {
    box.append(h('button', {
      type: 'button', class: 'chip', 'data-filter': f.dim,
      'aria-label': `Remove filter ${f.dim} is ${f.value}`,
      onclick: () => { state.filters = state.filters.filter((g) => g !== f); writeUrl(true); refresh(); },
    }, `${f.dim.replace(/^(visit|event):/, '')} is ${f.value} ✕`));
  }
}

function renderCards(metrics, now, before) {
  const box = $('cards');
  box.replaceChildren();
  const row = now.results[0] ? now.results[0].metrics : [];
  const prev = before && before.results[0] ? before.results[0].metrics : null;
  for (const [metric, name] of CARDS) {
    const i = metrics.indexOf(metric);
    const v = i >= 0 ? row[i] : null;
    const c = i >= 0 && prev ? change(metric, v, prev[i]) : null;
    const approx = metric === 'visitors' && now.meta.approximate;
    box.append(h('div', { class: 'card' },
      h('div', { class: 'name' }, name),
      h('div', { class: 'value', 'data-metric': metric, title: i < 0 ? 'Not available with a filter on an event dimension' : null },
        approx ? '≈ ' : '', fmt(metric, v)),
      c ? h('div', { class: `change ${c.zero ? '' : c.good ? 'up' : 'down'}`, 'data-change': metric }, `${c.text} vs previous period`) : null));
  }
}

function renderFreshness(meta) {
  const parts = [];
  if (meta.complete_through) {
    const t = new Intl.DateTimeFormat('en-GB', {
      timeZone: meta.time_zone, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    }).format(new Date(meta.complete_through));
    parts.push(`complete through ${t} (${meta.time_zone})`);
  } else {
    parts.push('no events processed yet');
  }
  if (meta.approximate) parts.push('≈ marks approximate figures');
  if (meta.folded) parts.push('rare values are folded into (other)');
  $('freshness').textContent = parts.join(' · ');
  $('freshness').dataset.completeThrough = meta.complete_through || '';
}

function renderChart(series) {
  const fig = $('chart');
  fig.replaceChildren();
  const rows = series.results;
  const W = 800, H = 240, L = 44, B = 24, T = 10;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.metrics[0], r.metrics[1])));
  const x = (i) => L + (rows.length <= 1 ? (W - L) / 2 : (i * (W - L - 10)) / (rows.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const line = (k) => rows.map((r, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(r.metrics[k]).toFixed(1)}`).join(' ');
  const label = `Visitors and pageviews per ${interval()}`;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
    svg('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }),
    svg('text', { x: 4, y: T + 8 }, fmt('visitors', max)),
    svg('text', { x: 4, y: H - B }, '0'));
  if (rows.length) {
    chart.append(svg('path', { class: 'pageviews', d: line(1) }), svg('path', { class: 'visitors', d: line(0) }));
    const ticks = [...new Set([0, Math.floor((rows.length - 1) / 2), rows.length - 1])];
    for (const i of ticks) {
      chart.append(svg('text', { x: Math.min(x(i), W - 50), y: H - 6 }, timeLabel(rows[i].dimensions[0])));
    }
  }
  const table = h('table', { class: 'sr-only', 'data-series': '' },
    h('caption', {}, label),
    h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Visitors'), h('th', {}, 'Pageviews')),
    rows.map((r) => h('tr', {}, h('td', {}, r.dimensions[0]), h('td', {}, r.metrics[0]), h('td', {}, r.metrics[1]))));
  fig.append(h('div', { class: 'legend' }, h('span', { class: 'visitors' }, 'Visitors'), h('span', { class: 'pageviews' }, 'Pageviews')), chart, table);
}

function activeTab(panel) {
  if (panel.property) {
    const dim = filterDim();
    const name = dim && dim.startsWith('event:props:') ? dim.slice(12) : state.prop;
    panel.tabs = name ? [[`Property ${name}`, `event:props:${name}`, ['visitors', 'events']]] : [];
    return panel.tabs[0] || null;
  }
  const dim = filterDim();
  const filtered = panel.tabs.find((t) => t[1] === dim);
  if (filtered) return filtered;
  return panel.tabs.find((t) => t[1] === state.tabs[panel.id]) || panel.tabs[0];
}

function panelShell(panel, tab) {
  let el = document.querySelector(`[data-panel="${panel.id}"]`);
  if (!el) {
    el = h('section', { class: 'panel', 'data-panel': panel.id, 'aria-label': panel.title });
    $('panels').append(el);
  }
  el.replaceChildren();
  const csv = tab && h('button', { type: 'button', 'data-csv': panel.id, 'aria-label': `Export ${tab[0]} as CSV`, onclick: () => exportCsv(panel, tab) }, 'CSV');
  el.append(h('h2', {}, h('span', {}, panel.title), csv));
  if (panel.property) {
    const input = h('input', { type: 'text', name: 'prop', 'aria-label': 'Custom property name', placeholder: 'property name' });
    input.value = state.prop;
    const form = h('form', { class: 'tabs', 'data-prop-form': '' }, input, h('button', { type: 'submit' }, 'Show'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      state.prop = input.value.trim();
      writeUrl(true);
      renderPanel(panel, generation);
    });
    el.append(form);
  }
  if (panel.tabs.length > 1) {
    el.append(h('div', { class: 'tabs', role: 'group', 'aria-label': `${panel.title} breakdown` },
      panel.tabs.map((t) => h('button', {
        type: 'button', 'aria-pressed': t === tab ? 'true' : 'false',
        onclick: () => { state.tabs[panel.id] = t[1]; writeUrl(true); renderPanel(panel, generation); },
      }, t[0]))));
  }
  return el;
}

async function renderPanel(panel, gen, totalVisitors) {
  const tab = activeTab(panel);
  const el = panelShell(panel, tab);
  if (!tab) {
    el.append(h('p', { class: 'note' }, 'Name a custom property to break down by its values.'));
    return;
  }
  const dim = filterDim();
  if (dim && dim !== tab[1]) {
    el.append(h('p', { class: 'note' }, `Not broken down while filtered by ${dim}: each rollup holds one dimension. Remove the filter to see this panel.`));
    return;
  }
  const a = await query({ metrics: tab[2], date_range: dateRange(), dimensions: [tab[1]], filters: queryFilters(), pagination: { limit: 10 } });
  if (gen !== generation) return;
  const heads = [h('th', {}, tab[0]), ...tab[2].map((m) => h('th', { class: 'num' }, METRIC_LABEL[m] || m))];
  if (panel.conversion) heads.push(h('th', { class: 'num' }, 'CR'));
  const table = h('table', {}, h('tr', {}, heads));
  for (const r of a.results) {
    const value = r.dimensions[0];
    const cell = value === '(other)'
      ? h('span', { title: 'Values past the per-bucket cap, folded together' }, value)
      : h('button', {
        type: 'button', class: 'row', title: value,
        onclick: () => addFilter(tab[1], value),
      }, value);
    // Visitor counts past 1,024 come from a sketch: marked as the estimates they are.
    const approx = (metric) => (metric === 'visitors' && a.meta.approximate ? '≈ ' : '');
    const tr = h('tr', { 'data-row': value }, h('td', {}, cell),
      r.metrics.map((m, i) => h('td', { class: 'num', 'data-metric': tab[2][i] }, approx(tab[2][i]), fmt(tab[2][i], m))));
    if (panel.conversion) {
      const cr = totalVisitors ? Math.round((r.metrics[0] / totalVisitors) * 1000) / 10 : 0;
      tr.append(h('td', { class: 'num', 'data-metric': 'conversion_rate' }, `${cr}%`));
    }
    table.append(tr);
  }
  if (!a.results.length) el.append(h('p', { class: 'note' }, 'No data for this period.'));
  else el.append(table);
}

function addFilter(dim, value) {
  // Every rollup is keyed by one dimension, so a filter on another dimension replaces the
  // current ones; a second value of the same dimension widens it (either value).
  if (filterDim() && filterDim() !== dim) state.filters = [];
  if (!state.filters.some((f) => f.value === value)) state.filters.push({ dim, value });
  writeUrl(true);
  refresh();
}

/** A CSV cell: quoted, and neutralised when a spreadsheet would read it as a formula. */
export function csvCell(v) {
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

async function exportCsv(panel, tab) {
  try {
    const a = await query({ metrics: tab[2], date_range: dateRange(), dimensions: [tab[1]], filters: queryFilters(), pagination: { limit: 10000 } });
    const lines = [[tab[0], ...tab[2]].map(csvCell).join(',')];
    for (const r of a.results) lines.push([r.dimensions[0], ...r.metrics].map(csvCell).join(','));
    const blob = new Blob([`${lines.join('\r\n')}\r\n`], { type: 'text/csv;charset=utf-8' });
    const link = h('a', { download: `${state.site}-${tab[1].replace(':', '-')}.csv` });
    link.href = URL.createObjectURL(blob);
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    showError(e.message);
  }
}

async function refreshRealtime() {
  if (!state.site) return;
  try {
    const r = await api(`/api/v2/realtime?site_id=${encodeURIComponent(state.site)}`);
    const n = r.visitors;
    $('realtime').textContent = `${r.approximate ? '≈ ' : ''}${n} current visitor${n === 1 ? '' : 's'} (last 5 minutes)`;
    $('realtime').className = 'live';
    $('realtime').dataset.visitors = String(n);
  } catch (e) {
    $('realtime').textContent = '';
  }
}

async function refresh() {
  const gen = ++generation;
  showError('');
  renderFilters();
  document.body.dataset.loading = 'true';
  try {
    const eventScoped = (filterDim() || '').startsWith('event:');
    const metrics = CARDS.map((c) => c[0]).filter((m) => !(eventScoped && VISIT_ONLY.has(m)));
    const filters = queryFilters();
    const now = await query({ metrics, date_range: dateRange(), filters });
    if (gen !== generation) return;
    let before = null;
    if (state.compare && now.meta.date_range) {
      const [from, to] = now.meta.date_range;
      const end = addDays(from, -1);
      before = await query({ metrics, date_range: [addDays(end, 1 - dayCount(from, to)), end], filters });
      if (gen !== generation) return;
    }
    renderCards(metrics, now, before);
    renderFreshness(now.meta);
    const series = await query({ metrics: ['visitors', 'pageviews'], date_range: dateRange(), dimensions: [`time:${interval()}`], filters });
    if (gen !== generation) return;
    renderChart(series);
    const total = now.results[0] ? now.results[0].metrics[0] : 0;
    await Promise.all(PANELS.map((p) => renderPanel(p, gen, total)));
  } catch (e) {
    if (gen === generation && e.message !== 'signed out') showError(e.message);
  } finally {
    if (gen === generation) document.body.dataset.loading = 'false';
  }
}

// ---- controls and sign-in -----------------------------------------------------------------

function syncControls() {
  $('site').replaceChildren(...sites.map((s) => h('option', { value: s.domain }, s.domain)));
  $('site').value = state.site;
  $('period').value = state.period;
  $('custom-range').hidden = state.period !== 'custom';
  $('from').value = state.from;
  $('to').value = state.to;
  $('interval').value = interval();
  $('compare').checked = state.compare;
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(realtimeTimer);
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('key').focus();
}

async function start() {
  try {
    sites = (await api('/api/v2/sites')).sites;
  } catch (e) {
    if (e.message !== 'signed out') signOut(e.message);
    return;
  }
  if (!sites.length) {
    signOut('This API key may not read any site.');
    return;
  }
  if (!sites.some((s) => s.domain === state.site)) state.site = sites[0].domain;
  writeUrl(false);
  syncControls();
  $('signin').hidden = true;
  $('controls').hidden = false;
  $('dashboard').hidden = false;
  clearInterval(realtimeTimer);
  refreshRealtime();
  realtimeTimer = setInterval(refreshRealtime, 10000);
  await refresh();
}

function onControl(apply) {
  return () => { apply(); writeUrl(true); syncControls(); refresh(); refreshRealtime(); };
}

function init() {
  readUrl();
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('key').value.trim());
    $('key').value = '';
    start();
  });
  $('signout').addEventListener('click', () => signOut(''));
  $('site').addEventListener('change', onControl(() => { state.site = $('site').value; state.filters = []; }));
  $('period').addEventListener('change', onControl(() => {
    state.period = $('period').value;
    state.interval = '';
    if (state.period === 'custom' && !state.from) {
      const today = new Date().toISOString().slice(0, 10);
      state.from = addDays(today, -6);
      state.to = today;
    }
  }));
  $('from').addEventListener('change', onControl(() => { state.from = $('from').value; }));
  $('to').addEventListener('change', onControl(() => { state.to = $('to').value; }));
  $('interval').addEventListener('change', onControl(() => { state.interval = $('interval').value; }));
  $('compare').addEventListener('change', onControl(() => { state.compare = $('compare').checked; }));
  window.addEventListener('popstate', () => { readUrl(); syncControls(); refresh(); });
  if (sessionStorage.getItem(KEY)) start();
  else signOut('');
}

init();
