// Footfall tracker. Embed with:
//   <script defer src="https://FOOTFALL/js/script.js" data-domain="shop.example"></script>
// Options (attributes of the script tag): data-domain (default: the page's host name),
// data-api (default: /api/event on the script's origin), data-hash (hash routing),
// data-outbound-links, data-file-downloads, data-allow-localhost.
// Custom events: footfall('Signup', {props: {plan: 'pro'}, revenue: {amount: 9.99,
// currency: 'EUR'}, callback: fn}). Calls made before the script loads are queued with
//   window.footfall = window.footfall || function () { (footfall.q = footfall.q || []).push(arguments) }
(function () {
  'use strict';
  var w = window, d = document, l = w.location, s = d.currentScript;
  var attr = function (n) { return s && s.getAttribute(n); };
  var api = attr('data-api') || (s ? new URL('/api/event', s.src).href : '/api/event');
  var domain = attr('data-domain') || l.hostname;
  var hash = !!(s && s.hasAttribute('data-hash'));
  var local = !!(s && s.hasAttribute('data-allow-localhost'));
  var fileTypes = /\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pps|pptx?|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma|dmg)$/i;
  var last;

  function send(name, opts) {
    opts = opts || {};
    var done = function () { if (opts.callback) opts.callback(); };
    if (!local && /^(localhost|127(\.\d+){3}|\[::1\])$/.test(l.hostname)) return done();
    var body = { n: name, u: l.href, d: domain, r: d.referrer || null };
    if (opts.props) body.p = opts.props;
    if (opts.revenue) body.$ = opts.revenue;
    if (hash) body.h = 1;
    var json = JSON.stringify(body);
    if (w.fetch) {
      // text/plain keeps it a simple request: no CORS preflight.
      fetch(api, { method: 'POST', body: json, keepalive: true, headers: { 'Content-Type': 'text/plain' } })
        .then(done, done);
    } else if (navigator.sendBeacon) {
      navigator.sendBeacon(api, json);
      done();
    }
  }

  function pageview() {
    var here = l.pathname + (hash ? l.hash : '');
    if (here === last) return;
    last = here;
    send('pageview');
  }

  function click(e) {
    var a = e.target && e.target.closest && e.target.closest('a[href]');
    if (!a || e.defaultPrevented) return;
    var href = a.href, url;
    try { url = new URL(href); } catch (_) { return; }
    if (!/^https?:$/.test(url.protocol)) return;
    if (s.hasAttribute('data-file-downloads') && fileTypes.test(url.pathname)) {
      send('File Download', { props: { url: href } });
    } else if (s.hasAttribute('data-outbound-links') && url.host !== l.host) {
      send('Outbound Link: Click', { props: { url: href } });
    }
  }

  var queued = (w.footfall && w.footfall.q) || [];
  w.footfall = send;
  for (var i = 0; i < queued.length; i++) send.apply(null, queued[i]);

  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () { push.apply(this, arguments); pageview(); };
    w.addEventListener('popstate', pageview);
  }
  if (hash) w.addEventListener('hashchange', pageview);
  if (s && (s.hasAttribute('data-outbound-links') || s.hasAttribute('data-file-downloads'))) {
    d.addEventListener('click', click);
    d.addEventListener('auxclick', function (e) { if (e.button === 1) click(e); });
  }
  if (d.visibilityState === 'prerender') {
    d.addEventListener('visibilitychange', function once() {
      if (d.visibilityState === 'visible') { d.removeEventListener('visibilitychange', once); pageview(); }
    });
  } else {
    pageview();
  }
})();
