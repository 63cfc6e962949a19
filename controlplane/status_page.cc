#include "controlplane/status_page.h"

#include <openssl/evp.h>

#include <array>

namespace lode::cp {

namespace {

// The document is assembled from these parts; the style and the script are
// kept apart so that their hashes (the CSP) are taken over exactly the bytes
// between their tags.
constexpr std::string_view kHead = R"lode(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Lodestone status</title>
<link rel="icon" href="data:,">
<style>)lode";

constexpr std::string_view kStyle = R"lode(
:root { color-scheme: light dark; --bad: #d32f2f; --warn: #b26a00; --muted: #888; --line: #8884; --bar: #4a7fd0; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem 2rem; }
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
#updated, footer, .note { color: var(--muted); font-size: .85rem; }
#error { border: 1px solid var(--bad); color: var(--bad); padding: .4rem .6rem; border-radius: 4px; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .5rem; margin: 0; }
dl div { border: 1px solid var(--line); border-radius: 6px; padding: .35rem .6rem; min-width: 0; }
dt { font-size: .8rem; color: var(--muted); }
dd { margin: 0; font-size: 1.1rem; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; min-width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: .8rem; font-weight: 600; color: var(--muted); }
.num { text-align: right; }
td.wrap { white-space: normal; overflow-wrap: break-word; max-width: 28rem; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
td.empty { color: var(--muted); font-style: italic; }
.bar { display: inline-block; height: .6rem; background: var(--bar); border-radius: 2px; vertical-align: middle; }
)lode";

constexpr std::string_view kBody = R"lode(</style>
</head>
<body>
<header><h1>Lodestone status</h1><span id="updated">loading&hellip;</span></header>
<p id="error" hidden></p>
<h2>Overview</h2>
<dl id="overview"></dl>
<h2>Listeners and front</h2>
<p id="front" class="note"></p>
<div class="scroll"><table id="listeners"></table></div>
<h2>Routes</h2>
<div class="scroll"><table id="routes"></table></div>
<h2>Certificates</h2>
<div class="scroll"><table id="certificates"></table></div>
<h2>Backends</h2>
<div class="scroll"><table id="backends"></table></div>
<h2>Workers</h2>
<div class="scroll"><table id="workers"></table></div>
<h2>Refusals and errors</h2>
<div class="scroll"><table id="errors"></table></div>
<h2>Recently refused names</h2>
<div class="scroll"><table id="refused"></table></div>
<footer>Read-only. Every number is a sample of <a href="/metrics">/metrics</a> (rates: the difference of
two scrapes); names and configuration from <a href="/status.json">/status.json</a>.
&ldquo;&mdash;&rdquo;: this Lodestone does not export it.</footer>
<script>)lode";

constexpr std::string_view kScript = R"lode(
'use strict';
(() => {
  const DASH = '\u2014';
  const REFRESH_S = (() => {
    const n = Number(new URLSearchParams(location.search).get('refresh'));
    return Number.isFinite(n) && n >= 1 && n <= 300 ? n : 2;
  })();

  // ---------------------------------------------------------- /metrics
  // Prometheus text format 0.0.4: name{label="value",...} value [timestamp];
  // label values escape backslash, double quote and newline.
  const NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
  const LABEL = /[a-zA-Z_][a-zA-Z0-9_]*/y;
  const NUMBER = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

  function parseValue(t) {
    if (t === '+Inf' || t === 'Inf') return Infinity;
    if (t === '-Inf') return -Infinity;
    if (t === 'NaN') return NaN;
    return NUMBER.test(t) ? Number(t) : null;
  }

  // One sample line: {name, labels: Map, value}, or null when malformed.
  function parseSample(line) {
    NAME.lastIndex = 0;
    const m = NAME.exec(line);
    if (!m) return null;
    const labels = new Map();
    const nameEnd = m[0].length;
    let i = nameEnd;
    const blanks = () => { while (line[i] === ' ' || line[i] === '\t') i++; };
    blanks();
    if (line[i] !== '{' && i === nameEnd) return null;  // a blank between the name and the value
    if (line[i] === '{') {
      i++;
      for (;;) {
        blanks();
        if (line[i] === '}') { i++; break; }
        LABEL.lastIndex = i;
        const l = LABEL.exec(line);
        if (!l) return null;
        i += l[0].length;
        blanks();
        if (line[i++] !== '=') return null;
        blanks();
        if (line[i++] !== '"') return null;
        let v = '';
        for (;;) {
          if (i >= line.length) return null;
          const c = line[i++];
          if (c === '"') break;
          if (c !== '\\') { v += c; continue; }
          const e = line[i++];
          if (e === 'n') v += '\n';
          else if (e === '\\' || e === '"') v += e;
          else return null;
        }
        if (labels.has(l[0])) return null;
        labels.set(l[0], v);
        blanks();
        if (line[i] === ',') { i++; continue; }
        if (line[i] === '}') { i++; break; }
        return null;
      }
      if (line[i] !== ' ' && line[i] !== '\t') return null;
    }
    const fields = line.slice(i).trim().split(/[ \t]+/);
    if (fields.length > 2 || (fields.length === 2 && !/^-?\d+$/.test(fields[1]))) return null;
    const value = parseValue(fields[0]);
    return value === null ? null : {name: m[0], labels, value};
  }

  function parseMetrics(text) {
    const byName = new Map();
    let errors = 0;
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line[0] === '#') continue;
      const s = parseSample(line);
      if (!s) { errors++; continue; }
      if (!byName.has(s.name)) byName.set(s.name, []);
      byName.get(s.name).push(s);
    }
    return {byName, errors};
  }

  const samples = (m, name) => (m && m.byName.get(name)) || [];
  const has = (m, name) => samples(m, name).length > 0;
  // Sum of `name` by key(labels) (null: left out): Map key -> sum.
  function sumBy(m, name, key) {
    const out = new Map();
    for (const s of samples(m, name)) {
      const k = key(s.labels);
      if (k !== null && k !== undefined) out.set(k, (out.get(k) || 0) + s.value);
    }
    return out;
  }
  // Sum of every sample of `name` whose labels pass `where`; null when none.
  function total(m, name, where) {
    let sum = null;
    for (const s of samples(m, name)) if (!where || where(s.labels)) sum = (sum || 0) + s.value;
    return sum;
  }

  // ---------------------------------------------------------- state
  let cur = null, prev = null, status = {}, scrape = 0;

  // Per-second rate of sumBy(name, key) between the last two scrapes.
  function rateBy(name, key) {
    const out = new Map();
    if (!prev || !has(cur.m, name)) return out;
    const dt = (cur.t - prev.t) / 1000;
    const before = sumBy(prev.m, name, key);
    for (const [k, v] of sumBy(cur.m, name, key)) {
      const p = before.get(k);
      if (p !== undefined && dt > 0) out.set(k, (v >= p ? v - p : v) / dt);  // v < p: the counter restarted
    }
    return out;
  }
  const rateOf = (name, where) => rateBy(name, l => (!where || where(l) ? '' : null)).get('');

  // ---------------------------------------------------------- formatting
  const known = v => v !== null && v !== undefined && !Number.isNaN(v);
  const int = v => (known(v) ? String(Math.round(v)) : DASH);
  const perSecond = v => (known(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : DASH);
  function bytes(v) {
    if (!known(v)) return DASH;
    const exact = String(v) + ' bytes';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
    return {text: i === 0 ? v + ' B' : v.toFixed(1) + ' ' + units[i], title: exact};
  }
  function duration(s) {
    if (!known(s)) return DASH;
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    const two = n => String(n).padStart(2, '0');
    return d ? d + 'd ' + two(h) + 'h' : h ? h + 'h ' + two(m) + 'm' : m ? m + 'm ' + two(s % 60) + 's' : s + 's';
  }
  const seconds = v =>
    (known(v) ? (v < 0.01 ? (v * 1e6).toFixed(0) + ' \u00b5s' : (v * 1e3).toFixed(1) + ' ms') : DASH);

  // ---------------------------------------------------------- DOM
  const byId = id => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // Tables: [column, heading, numeric]; rows: {key, cells: {column: cell}},
  // a cell being a text or {text, cls, title, bar (0..1)}. Built with
  // createElement and textContent only: names are attacker-chosen bytes.
  const N = true;
  const COLUMNS = {
    listeners: [['name', 'Listener'], ['addresses', 'Addresses'], ['proxy', 'PROXY protocol'],
                ['default_route', 'Default route'], ['routes', 'Routes', N], ['connections', 'Connections', N],
                ['active', 'Active', N]],
    routes: [['route', 'Route'], ['listener', 'Listener'], ['names', 'Names'], ['action', 'Action'], ['pool', 'Pool'],
             ['certificate', 'Certificate'], ['active', 'Active', N], ['connections', 'Connections', N],
             ['connections_per_s', 'Conn/s', N], ['handshakes_per_s', 'Handshakes/s', N], ['full', 'Full', N],
             ['resumed', 'Resumed', N], ['ktls', 'kTLS', N], ['failures', 'Failures', N], ['rejects', 'Rejects', N],
             ['bytes_in', 'Bytes in', N], ['bytes_out', 'Bytes out', N], ['p50', 'Handshake p50', N],
             ['p99', 'p99', N]],
    certificates: [['certificate', 'Certificate'], ['served', 'Served'], ['expiry_days', 'Expires in (days)', N],
                   ['revocation', 'Revocation'], ['staple_age', 'OCSP staple age (s)', N],
                   ['check_failures', 'Failed checks', N]],
    backends: [['pool', 'Pool'], ['backend', 'Backend'], ['health', 'Health'], ['draining', 'Drain'],
               ['weight', 'Weight', N], ['active', 'Active', N], ['connect_failures', 'Connect failures', N],
               ['connect_failures_per_s', 'Failures/s', N]],
    workers: [['worker', 'Worker'], ['active', 'Active', N], ['load', 'Load'], ['accepted', 'Accepted', N],
              ['handshakes_per_s', 'Handshakes/s', N], ['handshakes', 'Handshakes', N],
              ['resumed', 'Resumed', N], ['handshake_errors', 'Handshake errors', N], ['ktls_tx', 'kTLS TX', N],
              ['bytes_in', 'Bytes in', N], ['bytes_out', 'Bytes out', N]],
    errors: [['counter', 'Counter'], ['what', 'What'], ['total', 'Total', N], ['per_s', 'Per second', N]],
    refused: [['sni', 'Server name (SNI)'], ['reason', 'Reason'], ['worker', 'Worker', N], ['age', 'Age']],
  };

  function renderTable(id, rows, empty) {
    const table = byId(id), cols = COLUMNS[id];
    if (!table.tHead) {
      const tr = el('tr');
      for (const [, heading, num] of cols) tr.append(el('th', heading, num ? 'num' : ''));
      table.createTHead().append(tr);
      table.createTBody();
    }
    const trs = rows.map(r => {
      const tr = el('tr', null, r.cls);
      tr.dataset.key = r.key;
      for (const [col, , num] of cols) {
        let c = r.cells[col];
        if (c === null || c === undefined || typeof c !== 'object') c = {text: c};
        const td = el('td', known(c.text) && c.text !== '' ? c.text : DASH,
                      [num ? 'num' : '', c.cls || '', c.wrap ? 'wrap' : ''].join(' ').trim());
        td.dataset.col = col;
        if (c.title) td.title = c.title;
        if (known(c.bar)) {
          const bar = el('span', null, 'bar');
          bar.style.width = (Math.max(0, Math.min(1, c.bar)) * 8).toFixed(2) + 'rem';
          td.prepend(bar, ' ');
        }
        tr.append(td);
      }
      return tr;
    });
    if (trs.length === 0) {
      const td = el('td', empty, 'empty');
      td.colSpan = cols.length;
      trs.push(el('tr'));
      trs[0].append(td);
    }
    table.tBodies[0].replaceChildren(...trs);
  }

  // ---------------------------------------------------------- sections
  function renderOverview() {
    const m = cur.m;
    const hs = total(m, 'lodestone_handshakes_total');
    const ktls = total(m, 'lodestone_ktls_tx_total');
    const served = sumBy(m, 'lodestone_certificate_served', l => l.get('certificate'));
    const withheld = [...served.values()].filter(v => v === 0).length;
    const items = [
      ['generation', 'Snapshot generation', int(total(m, 'lodestone_snapshot_generation'))],
      ['front', 'Front', status.front],
      ['workers', 'Workers', int(total(m, 'lodestone_workers'))],
      ['active', 'Connections open', int(total(m, 'lodestone_active_connections'))],
      ['handshakes_per_s', 'Handshakes/s', perSecond(rateOf('lodestone_handshakes_total'))],
      ['handshakes', 'Handshakes', int(hs)],
      ['ktls_share', 'kTLS share (TX)', status.ktls === false ? 'off: no tls ULP'
                                        : known(ktls) && hs > 0 ? (100 * ktls / hs).toFixed(1) + ' %' : DASH],
      ['certificates', 'Certificates (withheld)', served.size ? served.size + ' (' + withheld + ')' : DASH,
       withheld ? 'bad' : ''],
      ['reloads', 'Reloads ok / refused',
       int(total(m, 'lodestone_config_reloads_total', l => l.get('result') === 'ok')) + ' / ' +
         int(total(m, 'lodestone_config_reloads_total', l => l.get('result') === 'refused'))],
      ['apply', 'Last snapshot apply', seconds(total(m, 'lodestone_snapshot_apply_seconds'))],
      ['uptime', 'Uptime', duration(status.uptime_s)],
      ['version', 'Version', status.version],
    ];
    const divs = items.map(([key, label, value, cls]) => {
      const div = el('div'), dd = el('dd', known(value) && value !== '' ? value : DASH, cls);
      dd.dataset.key = key;
      div.append(el('dt', label), dd);
      return div;
    });
    byId('overview').replaceChildren(...divs);
  }

  function renderListeners() {
    const m = cur.m;
    const dpdk = status.dpdk;
    byId('front').textContent = 'Front: ' + (status.front || DASH) +
      (dpdk ? ' (DPDK port ' + dpdk.port + ', ' + dpdk.max_flows + ' flows per lcore' +
                (dpdk.exception ? ', exception path ' + dpdk.exception : '') + ')' : '') +
      (status.config ? ' \u00b7 configuration ' + status.config : '');
    const perListener = has(m, 'lodestone_route_connections_total');
    const conns = sumBy(m, 'lodestone_route_connections_total', l => l.get('listener'));
    const active = sumBy(m, 'lodestone_route_active_connections', l => l.get('listener'));
    const routes = status.routes || [];
    renderTable('listeners', (status.listeners || []).map(l => ({
      key: l.name,
      cells: {
        name: l.name, addresses: {text: (l.listen || []).join(' '), wrap: true}, proxy: l.proxy_protocol,
        default_route: l.default_route || 'none', routes: routes.filter(r => r.listener === l.name).length,
        connections: perListener ? int(conns.get(l.name) || 0) : DASH,
        active: has(m, 'lodestone_route_active_connections') ? int(active.get(l.name) || 0) : DASH,
      },
    })), 'no listener');
  }

  // Quantile q of a cumulative histogram [[le, count]] (Prometheus' linear
  // interpolation inside the bucket).
  function quantile(q, buckets) {
    buckets.sort((a, b) => a[0] - b[0]);
    const n = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (n === 0) return null;
    let lower = 0, below = 0;
    for (const [le, count] of buckets) {
      if (count >= q * n) {
        if (le === Infinity) return {text: '> ' + seconds(lower)};
        return seconds(lower + (le - lower) * (count === below ? 1 : (q * n - below) / (count - below)));
      }
      lower = le;
      below = count;
    }
    return null;
  }

  function renderRoutes() {
    const m = cur.m, route = l => l.get('route');
    const ifHas = (name, map) => (has(m, name) ? k => int(map.get(k) || 0) : () => DASH);
    const kind = k => l => (l.get('kind') === k ? l.get('route') : null);
    const dir = d => l => (l.get('direction') === d ? l.get('route') : null);
    const active = ifHas('lodestone_route_active_connections', sumBy(m, 'lodestone_route_active_connections', route));
    const conns = ifHas('lodestone_route_connections_total', sumBy(m, 'lodestone_route_connections_total', route));
    const full = ifHas('lodestone_route_handshakes_total',
                       sumBy(m, 'lodestone_route_handshakes_total', kind('full')));
    const resumed = ifHas('lodestone_route_handshakes_total',
                          sumBy(m, 'lodestone_route_handshakes_total', kind('resumed')));
    const failures = ifHas('lodestone_route_handshake_failures_total',
                           sumBy(m, 'lodestone_route_handshake_failures_total', route));
    const rejects = ifHas('lodestone_route_rejects_total', sumBy(m, 'lodestone_route_rejects_total', route));
    const ktls = ifHas('lodestone_route_ktls_connections_total',
                       sumBy(m, 'lodestone_route_ktls_connections_total', route));
    const bytesIn = sumBy(m, 'lodestone_route_bytes_total', dir('in'));
    const bytesOut = sumBy(m, 'lodestone_route_bytes_total', dir('out'));
    const hasBytes = has(m, 'lodestone_route_bytes_total');
    const connRate = rateBy('lodestone_route_connections_total', route);
    const hsRate = rateBy('lodestone_route_handshakes_total', route);
    const buckets = new Map();
    for (const s of samples(m, 'lodestone_handshake_duration_seconds_bucket')) {
      const r = s.labels.get('route'), le = parseValue(s.labels.get('le') || '');
      if (r === undefined || le === null) continue;
      if (!buckets.has(r)) buckets.set(r, new Map());
      buckets.get(r).set(le, (buckets.get(r).get(le) || 0) + s.value);
    }
    const configured = status.routes || [];
    const names = configured.map(r => r.name);
    for (const source of [sumBy(m, 'lodestone_route_connections_total', route), buckets]) {
      for (const k of source.keys()) if (!names.includes(k)) names.push(k);
    }
    renderTable('routes', names.map(name => {
      const r = configured.find(x => x.name === name) || {};
      const hist = buckets.has(name) ? [...buckets.get(name)] : [];
      return {
        key: name,
        cells: {
          route: name, listener: r.listener, names: {text: (r.names || []).join(' '), wrap: true},
          action: r.action, pool: r.pool, certificate: r.certificate,
          active: active(name), connections: conns(name),
          connections_per_s: perSecond(connRate.get(name)), handshakes_per_s: perSecond(hsRate.get(name)),
          full: full(name), resumed: resumed(name), ktls: ktls(name), failures: failures(name),
          rejects: rejects(name),
          bytes_in: hasBytes ? bytes(bytesIn.get(name) || 0) : DASH,
          bytes_out: hasBytes ? bytes(bytesOut.get(name) || 0) : DASH,
          p50: quantile(0.5, hist), p99: quantile(0.99, hist),
        },
      };
    }), 'no route');
  }

  function renderCertificates() {
    const m = cur.m, cert = l => l.get('certificate');
    const expiry = sumBy(m, 'lodestone_certificate_expiry_seconds', cert);
    const served = sumBy(m, 'lodestone_certificate_served', cert);
    const age = sumBy(m, 'lodestone_ocsp_staple_age_seconds', cert);
    const failures = sumBy(m, 'lodestone_revocation_check_failures', cert);
    const revocation = new Map();
    for (const s of samples(m, 'lodestone_revocation_status')) {
      if (s.value === 1) revocation.set(s.labels.get('certificate'), s.labels.get('status'));
    }
    const warnDays = known(status.expiry_warning_days) ? status.expiry_warning_days : 30;
    const keys = [...new Set([...expiry.keys(), ...served.keys()])].sort();
    renderTable('certificates', keys.map(k => {
      const days = expiry.has(k) ? Math.floor(expiry.get(k) / 86400) : null;
      const st = revocation.get(k);
      const bad = st === 'revoked' || served.get(k) === 0 || (known(days) && days < warnDays);
      return {
        key: k, cls: bad ? 'bad' : '',
        cells: {
          certificate: {text: k, wrap: true},
          served: served.has(k) ? (served.get(k) === 1 ? 'yes' : {text: 'withheld', cls: 'bad'}) : DASH,
          expiry_days: known(days) ? {text: String(days), cls: days < warnDays ? 'bad' : '',
                                      title: days < 0 ? 'expired' : days < warnDays ? 'expires soon' : ''} : DASH,
          revocation: st === undefined ? (failures.has(k) ? 'pending' : 'not checked')
                                       : {text: st, cls: st === 'revoked' ? 'bad' : st === 'good' ? '' : 'warn'},
          staple_age: age.has(k) ? int(age.get(k)) : DASH,
          check_failures: failures.has(k) ? int(failures.get(k)) : DASH,
        },
      };
    }), 'no certificate');
  }

  function renderBackends() {
    const m = cur.m;
    const key = l => (l.has('pool') && l.has('backend') ? JSON.stringify([l.get('pool'), l.get('backend')]) : null);
    const up = sumBy(m, 'lodestone_backend_up', key);
    const draining = sumBy(m, 'lodestone_backend_draining', key);
    const weight = sumBy(m, 'lodestone_backend_weight', key);
    const active = sumBy(m, 'lodestone_backend_active_connections', key);
    const failures = sumBy(m, 'lodestone_backend_connect_failures_total', key);
    const failRate = rateBy('lodestone_backend_connect_failures_total', key);
    const configured = new Map();
    for (const p of status.pools || []) {
      for (const b of p.backends || []) configured.set(JSON.stringify([p.name, b.address]), b);
    }
    const keys = [...configured.keys()];
    for (const source of [up, active, failures]) for (const k of source.keys()) if (!configured.has(k)) keys.push(k);
    const shown = (name, map, k) => (has(m, name) ? int(map.get(k) ?? 0) : DASH);
    renderTable('backends', [...new Set(keys)].map(k => {
      const [pool, backend] = JSON.parse(k);
      const u = up.get(k), d = draining.get(k);
      return {
        key: k,
        cells: {
          pool, backend,
          health: u === undefined ? DASH : u >= 1 ? 'up' : {text: 'down', cls: 'bad'},
          draining: d === undefined ? DASH : d >= 1 ? {text: 'draining', cls: 'warn'} : 'no',
          weight: weight.has(k) ? int(weight.get(k))
                  : configured.has(k) ? {text: String(configured.get(k).weight), title: 'configured'} : DASH,
          active: shown('lodestone_backend_active_connections', active, k),
          connect_failures: shown('lodestone_backend_connect_failures_total', failures, k),
          connect_failures_per_s: perSecond(failRate.get(k)),
        },
      };
    }), 'no backend');
  }

  function renderWorkers() {
    const m = cur.m, worker = l => l.get('worker');
    const of = name => sumBy(m, 'lodestone_' + name, worker);
    const active = of('active_connections'), hs = of('handshakes_total'), resumed = of('handshakes_resumed_total');
    const accepted = of('accepted_total'), errors = of('handshake_errors_total'), ktls = of('ktls_tx_total');
    const bin = of('bytes_client_in_total'), bout = of('bytes_client_out_total');
    const hsRate = rateBy('lodestone_handshakes_total', worker);
    const ids = [...new Set([...active.keys(), ...hs.keys(), ...accepted.keys()])].sort((a, b) => a - b);
    const most = Math.max(1, ...ids.map(w => active.get(w) || 0));
    const sum = [...active.values()].reduce((a, v) => a + v, 0);
    renderTable('workers', ids.map(w => ({
      key: w,
      cells: {
        worker: w, active: int(active.get(w)),
        load: {text: sum ? (100 * (active.get(w) || 0) / sum).toFixed(0) + ' %' : '0 %',
               bar: (active.get(w) || 0) / most, title: 'share of the open connections'},
        accepted: int(accepted.get(w)), handshakes_per_s: perSecond(hsRate.get(w)), handshakes: int(hs.get(w)),
        resumed: int(resumed.get(w)), handshake_errors: int(errors.get(w)), ktls_tx: int(ktls.get(w)),
        bytes_in: bytes(bin.get(w)), bytes_out: bytes(bout.get(w)),
      },
    })), 'no worker (the dataplane has not attached its counters)');
  }

  const ERRORS = [
    ['no_route', 'no route for the name'], ['routed_reject', 'rejected by a route'],
    ['no_certificate', 'no certificate for the name'], ['cert_withheld', 'certificate withheld'],
    ['hello_errors', 'malformed ClientHello'], ['hello_not_tls', 'not TLS'], ['hello_timeouts', 'hello timeout'],
    ['handshake_errors', 'TLS handshake failed'], ['refused_over_limit', 'worker at its connection cap'],
    ['refused_client_limit', 'client address at its connection limit'],
    ['backend_connect_errors', 'backend connect failed'], ['backend_tls_errors', 'backend TLS failed'],
    ['resets', 'aborted or reset'], ['idle_timeouts', 'idle timeout'],
    ['half_closed_timeouts', 'half-closed timeout'],
  ];
  // The workers' refusal and error counters, then the hello rejections and
  // alerts sent, one row per reason or alert /metrics has.
  const BY_CAUSE = [['lodestone_hello_rejected_total', 'reason', 'hello rejected'],
                    ['lodestone_alerts_sent_total', 'alert', 'alert sent']];
  function renderErrors() {
    const m = cur.m;
    const row = (key, counter, what, n, rate) =>
      ({key, cells: {counter, what, total: {text: int(n), cls: n > 0 ? 'warn' : ''}, per_s: perSecond(rate)}});
    const rows = ERRORS.filter(([c]) => has(m, 'lodestone_' + c + '_total')).map(([c, what]) => {
      const name = 'lodestone_' + c + '_total';
      return row(c, name, what, total(m, name), rateOf(name));
    });
    for (const [family, label, what] of BY_CAUSE) {
      const rates = rateBy(family, l => l.get(label));
      for (const [k, n] of sumBy(m, family, l => l.get(label))) {
        rows.push(row(family + ':' + k, family + '{' + label + '=' + JSON.stringify(k) + '}', what + ': ' + k, n,
                      rates.get(k)));
      }
    }
    renderTable('errors', rows, 'no counters (the dataplane has not attached them)');
  }

  function renderRefused() {
    const list = status.recent_refused;
    renderTable('refused', Array.isArray(list) ? list.map((r, i) => ({
      key: i,
      cells: {sni: {text: String(r.sni ?? ''), wrap: true}, reason: r.reason, worker: r.worker,
              age: known(r.age_s) ? duration(r.age_s) + ' ago' : DASH},
    })) : [], Array.isArray(list) ? 'none refused lately' : 'not reported by this control plane');
  }

  function render() {
    renderOverview();
    renderListeners();
    renderRoutes();
    renderCertificates();
    renderBackends();
    renderWorkers();
    renderErrors();
    renderRefused();
    byId('updated').textContent = 'updated ' + new Date().toLocaleTimeString() + ' \u00b7 every ' + REFRESH_S +
      ' s' + (cur.m.errors ? ' \u00b7 ' + cur.m.errors + ' unparsed /metrics lines' : '');
    document.body.dataset.scrape = String(scrape);
  }

  // ---------------------------------------------------------- refresh
  async function get(url) {
    const r = await fetch(url, {cache: 'no-store', credentials: 'omit', redirect: 'error'});
    if (!r.ok) throw new Error(url.replace(/\?.*/, '') + ': HTTP ' + r.status);
    return r.text();
  }
  function showError(text) {
    const e = byId('error');
    e.hidden = text === null;
    e.textContent = text === null ? '' : 'Not refreshed: ' + text + ' (the numbers below are from the last success)';
  }
  // One scrape at a time; both documents carry its number, so a test can
  // match what is shown with the very /metrics body it came from.
  async function refresh() {
    const n = scrape + 1;
    try {
      const [text, json] = await Promise.all([get('/metrics?scrape=' + n), get('/status.json?scrape=' + n)]);
      let st;
      try { st = JSON.parse(json); } catch (e) { throw new Error('/status.json: ' + e.message); }
      prev = cur;
      cur = {m: parseMetrics(text), t: performance.now()};
      status = st && typeof st === 'object' ? st : {};
      scrape = n;
      render();
      showError(null);
    } catch (e) {
      showError(String((e && e.message) || e));
    }
    setTimeout(refresh, REFRESH_S * 1000);
  }

  window.lodeStatus = Object.freeze({parseMetrics, refreshSeconds: REFRESH_S});
  refresh();
})();
)lode";

constexpr std::string_view kTail = R"lode(</script>
</body>
</html>
)lode";

// 'sha256-BASE64' of `text`, a CSP source expression.
std::string csp_hash(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md.data(), &len, EVP_sha256(), nullptr) != 1) return "'none'";
  std::array<unsigned char, 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1> b64{};
  const int n = EVP_EncodeBlock(b64.data(), md.data(), static_cast<int>(len));
  return "'sha256-" + std::string(reinterpret_cast<const char*>(b64.data()), static_cast<size_t>(n)) + "'";
}

}  // namespace

std::string_view status_page_html() {
  static const std::string page = [] {
    std::string s;
    for (std::string_view part : {kHead, kStyle, kBody, kScript, kTail}) s.append(part);
    return s;
  }();
  return page;
}

const std::string& status_page_csp() {
  static const std::string csp = "default-src 'none'; script-src " + csp_hash(kScript) + "; style-src " +
                                 csp_hash(kStyle) + "; connect-src 'self'; img-src data:; base-uri 'none'; " +
                                 "form-action 'none'; frame-ancestors 'none'";
  return csp;
}

}  // namespace lode::cp
