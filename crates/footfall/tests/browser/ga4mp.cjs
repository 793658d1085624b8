// Sends GA4 hits to Footfall's /g/collect with the @analytics-debugger/ga4mp client from
// npm, which writes gtag.js's wire format (v=2, tid, cid, sid, en, dl, dr, dt, ep.*, epn.*)
// as GET requests. Run by tests/gtag_collect.rs.
//
// Environment: NODE_DEPS (the directory holding node_modules), ENDPOINT (the /g/collect URL),
// MEASUREMENT_ID, CLIENT_ID, SESSION_ID, HITS (a JSON array of {name, params}).
'use strict';
const path = require('node:path');
const ga4mp = require(path.join(process.env.NODE_DEPS, 'node_modules/@analytics-debugger/ga4mp/dist/ga4mp.umd.js'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tracker = ga4mp([process.env.MEASUREMENT_ID], {
  client_id: process.env.CLIENT_ID,
  session_id: process.env.SESSION_ID,
  endpoint: process.env.ENDPOINT,
});

(async () => {
  for (const hit of JSON.parse(process.env.HITS)) {
    tracker.trackEvent(hit.name, hit.params);
    // One at a time, so the hits arrive in the order sent.
    await sleep(300);
  }
  await sleep(500);
})();
