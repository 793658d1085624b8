//! The pure processing core; see the crate docs for the rules it implements.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono_tz::Tz;
use footfall_enrich::bots;
use footfall_enrich::sources;
use footfall_enrich::user_agent;
use footfall_enrich::UNKNOWN;
use footfall_model::bucket::{day_bucket, hour_bucket};
use footfall_model::event::Event;
use footfall_model::event::{Protocol, ENGAGEMENT, INGEST_ACCOUNTING};
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity, PROP_SEPARATOR};
use indexmap::IndexMap;

use crate::visit::{Contribution, Visit, VisitRow};

/// A visit ends after this long without events: 30 minutes, µs (the session timeout of
/// Google Analytics and Plausible).
pub const VISIT_TIMEOUT_US: i64 = 30 * 60 * 1_000_000;

/// How long after the visit timeout an idle visit ends: 60 s, µs. It allows for clock skew
/// between collectors, whose receipt times order the log only roughly.
pub const IDLE_GRACE_US: i64 = 60_000_000;

/// What the engine needs to know about a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// Domain, for recognising self-referrals.
    pub domain: String,
    /// Time zone name for buckets.
    pub timezone: String,
    /// Revenue currency.
    pub currency: String,
    /// Generation to write.
    pub generation: u32,
}

/// A change of an open visit to persist: (site, visitor, encoded state or `None` when it
/// ended).
pub type VisitChange = (u64, u64, Option<Vec<u8>>);

/// The hasher of the processor's in-memory maps: `foldhash` (the `hashbrown` default), seeded
/// randomly per process. Cell keys are hashed several times per event; the standard library's
/// SipHash took 7.5 % of the engine benchmark's samples. foldhash does not claim HashDoS
/// resistance against a sender who can observe hash values or iteration order; nothing here
/// exposes either, and the values per bucket that senders choose (page paths, properties) are
/// capped by the processor (`max_values_per_bucket`).
pub type FastHasher = foldhash::fast::RandomState;

/// Cell deltas keyed by cell, in the order the cells were first touched.
pub type CellDeltas = IndexMap<CellKey, CellValue, FastHasher>;

/// A [`CellKey`] that borrows its value, to look up a cell without allocating its key. Its
/// fields are [`CellKey`]'s in the same order and its `Hash` is derived like [`CellKey`]'s
/// (`str` hashes as `String` does), so both hash alike, as [`indexmap::Equivalent`] requires.
#[derive(Hash)]
struct CellKeyRef<'a> {
    site_id: u64,
    generation: u32,
    granularity: Granularity,
    dimension: Dimension,
    bucket: i64,
    value: &'a str,
}

impl indexmap::Equivalent<CellKey> for CellKeyRef<'_> {
    fn equivalent(&self, key: &CellKey) -> bool {
        self.site_id == key.site_id
            && self.generation == key.generation
            && self.granularity == key.granularity
            && self.dimension == key.dimension
            && self.bucket == key.bucket
            && self.value == key.value
    }
}

/// The processing core. Feed events in log order with [`Engine::process`]; collect
/// [`Engine::take_deltas`] and [`Engine::take_visit_changes`] at each flush.
#[derive(Default)]
pub struct Engine {
    /// Open visits by (site, visitor); a visitor may have several (a late event from an
    /// earlier visit, interleaved client sessions).
    visits: HashMap<(u64, u64), Vec<Visit>, FastHasher>,
    changed: HashSet<(u64, u64), FastHasher>,
    /// Every open visit as (last arrival, (site, visitor), start), in the order visits become
    /// idle. Visits end in this order, driven by the log's own receipt times (and by the wall
    /// clock only when the log has nothing newer), so that the visits that end, the order of
    /// their exit pages and the per-visitor bound behave the same in every run over the same
    /// log, live or reprocessing, however the run is cut into flushes.
    expiry: BTreeSet<ExpiryKey>,
    /// Pending cell deltas in the order their cells were first touched, which is the order in
    /// which the processor admits new values under the per-bucket cap: log order, so the
    /// same values are admitted however the log is cut into flushes.
    deltas: CellDeltas,
    /// Bot verdicts per User-Agent string: the rules are a pure function of it and cost a few
    /// µs (a large regular expression), while visitors repeat theirs. Emptied when full.
    ua_verdicts: HashMap<String, Option<bots::BotReason>, FastHasher>,
}

/// A visit's place in [`Engine`]'s expiry order: (last arrival, (site, visitor), start,
/// client session id or 0). Two open visits of one visitor differ in start or session (equal
/// ones would have been joined), so keys are unique.
type ExpiryKey = (i64, (u64, u64), i64, u64);

fn expiry_key(v: &Visit, key: (u64, u64)) -> ExpiryKey {
    (
        v.last_received_us,
        key,
        v.start_us,
        v.session_id.unwrap_or(0),
    )
}

/// Most User-Agent verdicts cached by an engine.
const MAX_CACHED_VERDICTS: usize = 50_000;

/// Most open visits kept per visitor; past it the visit whose last event arrived earliest
/// ends.
pub const MAX_OPEN_VISITS_PER_VISITOR: usize = 8;

impl Engine {
    /// An engine with no open visits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine with the open visits saved by earlier flushes. Returns the engine and the
    /// number of saved states that did not decode (they are dropped).
    pub fn restore(states: &[Vec<u8>]) -> (Self, usize) {
        let mut engine = Self::new();
        let mut corrupt = 0;
        for bytes in states {
            match postcard::from_bytes::<Vec<Visit>>(bytes) {
                Ok(list) => {
                    if let Some(first) = list.first() {
                        let key = (first.site_id, first.visitor_id);
                        for v in &list {
                            engine.expiry.insert(expiry_key(v, key));
                        }
                        engine.visits.insert(key, list);
                    }
                }
                Err(_) => corrupt += 1,
            }
        }
        (engine, corrupt)
    }

    /// Number of open visits.
    pub fn open_visits(&self) -> usize {
        self.visits.values().map(Vec::len).sum()
    }

    /// Number of cells with pending deltas.
    pub fn pending_cells(&self) -> usize {
        self.deltas.len()
    }

    /// Processes one event of `site`. Returns the bot reason, and leaves the rollups alone,
    /// when the event is a bot's (see [`footfall_enrich::bots`]; the User-Agent rules do not
    /// apply to Measurement Protocol hits, whose User-Agent is the sender's server).
    pub fn process(&mut self, e: &Event, site: &SiteInfo) -> Option<bots::BotReason> {
        // Only the collector writes accounting records: a client-sent event named "$ingest"
        // arrives with its own protocol and is an ordinary (custom) event.
        // Visits this event's receipt shows to be idle end first (see `expiry`).
        self.close_idle(e.received_at_us);
        if e.protocol == Protocol::Accounting {
            if e.name == INGEST_ACCOUNTING {
                self.account(e, site);
            }
            return None;
        }
        self.count_ingest(e, site, "accepted", 1);
        let ua = if e.protocol == Protocol::Ga4MeasurementProtocol {
            "Measurement Protocol"
        } else {
            e.user_agent.as_str()
        };
        let verdict = match self.ua_verdicts.get(ua) {
            Some(v) => *v,
            None => {
                let v = bots::classify_user_agent(ua);
                if self.ua_verdicts.len() >= MAX_CACHED_VERDICTS {
                    self.ua_verdicts.clear();
                }
                self.ua_verdicts.insert(ua.to_string(), v);
                v
            }
        };
        if let Some(reason) = verdict.or_else(|| bots::classify_referrer(e.referrer.as_deref())) {
            self.count_ingest(e, site, "bot", 1);
            return Some(reason);
        }
        self.process_visit(e, site);
        None
    }

    /// Adds `n` to the site's ingest accounting for `outcome`, in the hour and day of receipt.
    fn count_ingest(&mut self, e: &Event, site: &SiteInfo, outcome: &str, n: i64) {
        let tz: Tz = site.timezone.parse().unwrap_or(Tz::UTC);
        for (granularity, bucket) in [
            (Granularity::Hour, hour_bucket(tz, e.received_at_us)),
            (Granularity::Day, day_bucket(tz, e.received_at_us)),
        ] {
            let c = self.cell(
                e.site_id,
                site.generation,
                granularity,
                Dimension::Ingest,
                bucket,
                outcome,
            );
            c.events = c.events.saturating_add(n);
        }
    }

    /// An accounting record from the collector: its outcome and count.
    fn account(&mut self, e: &Event, site: &SiteInfo) {
        let prop = |k: &str| {
            e.props
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let (Some(outcome), Some(count)) = (
            prop("outcome"),
            prop("count")
                .and_then(|c| c.parse::<i64>().ok())
                .filter(|c| *c >= 0),
        ) else {
            return;
        };
        if matches!(outcome, "invalid" | "late" | "rate_limited") {
            self.count_ingest(e, site, outcome, count);
        }
    }

    fn process_visit(&mut self, e: &Event, site: &SiteInfo) {
        if e.name == ENGAGEMENT && matches!(e.protocol, Protocol::Plausible | Protocol::Ga4Gtag) {
            self.engage(e);
            return;
        }
        let own = (e.site_id, e.visitor_id);
        // A visit in progress across the daily salt rotation is filed under yesterday's id.
        let prev = e.prev_visitor_id.map(|p| (e.site_id, p)).filter(|k| {
            self.visits
                .get(k)
                .is_some_and(|l| l.iter().any(|v| joinable(v, e)))
        });
        let key = prev.unwrap_or(own);
        let mut list = self.visits.remove(&key).unwrap_or_default();
        if let Some(i) = list.iter().position(|v| joinable(v, e)) {
            let mut v = list.swap_remove(i);
            self.expiry.remove(&expiry_key(&v, key));
            self.apply(&mut v, e, site);
            self.expiry.insert(expiry_key(&v, key));
            list.push(v);
            self.visits.insert(key, list);
            self.changed.insert(key);
            return;
        }
        if key != own {
            self.visits.insert(key, list);
            list = self.visits.remove(&own).unwrap_or_default();
        }
        let mut v = new_visit(e, site);
        self.apply(&mut v, e, site);
        self.expiry.insert(expiry_key(&v, own));
        list.push(v);
        if list.len() > MAX_OPEN_VISITS_PER_VISITOR {
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| (v.last_received_us, v.start_us))
                .map(|(i, _)| i)
            {
                let ended = list.remove(oldest);
                self.expiry.remove(&expiry_key(&ended, own));
                self.end(&ended);
            }
        }
        self.visits.insert(own, list);
        self.changed.insert(own);
    }

    /// Ends every visit whose last event arrived before `now_us - VISIT_TIMEOUT_US -
    /// IDLE_GRACE_US`, in the order they became idle: no later event can join them, so their
    /// exit pages are final. [`Engine::process`] does this for each event's receipt time; the
    /// caller does it with the wall clock when the log has nothing newer. Returns how many
    /// ended.
    pub fn close_idle(&mut self, now_us: i64) -> usize {
        let limit = now_us
            .saturating_sub(VISIT_TIMEOUT_US)
            .saturating_sub(IDLE_GRACE_US);
        let mut idle = Vec::new();
        while let Some(first) = self.expiry.first() {
            if first.0 >= limit {
                break;
            }
            idle.extend(self.expiry.pop_first());
        }
        let ended = idle.len();
        self.end_in_order(idle);
        ended
    }

    /// Ends the visits named by (last arrival, (site, visitor), start), in that order: a total
    /// order, so exit pages are touched in the same order whatever the map's iteration order
    /// and however often the caller asks (visits end in order of last arrival either way).
    fn end_in_order(&mut self, mut visits: Vec<ExpiryKey>) {
        visits.sort_unstable();
        for (arrived, key, start, session) in visits {
            self.expiry.remove(&(arrived, key, start, session));
            let Some(list) = self.visits.get_mut(&key) else {
                continue;
            };
            let Some(i) = list
                .iter()
                .position(|v| expiry_key(v, key) == (arrived, key, start, session))
            else {
                continue;
            };
            let ended = list.remove(i);
            if list.is_empty() {
                self.visits.remove(&key);
            }
            self.end(&ended);
            self.changed.insert(key);
        }
    }

    /// Ends the visits whose last event arrived earliest until at most `keep` are open (the
    /// memory bound); returns how many ended. Visits ended this way are final: a later event
    /// of theirs starts a new visit.
    pub fn end_oldest(&mut self, keep: usize) -> usize {
        let open = self.open_visits();
        if open <= keep {
            return 0;
        }
        // Exactly `open - keep` visits end, those that would become idle first.
        let cut = open - keep;
        let order: Vec<ExpiryKey> = self.expiry.iter().take(cut).copied().collect();
        self.end_in_order(order);
        cut
    }

    /// Ends every open visit (end of a dry-run reprocess).
    pub fn close_all(&mut self) {
        let all: Vec<ExpiryKey> = std::mem::take(&mut self.expiry).into_iter().collect();
        self.end_in_order(all);
    }

    /// Takes the cell deltas accumulated since the last call, in the order their cells were
    /// first touched.
    pub fn take_deltas(&mut self) -> CellDeltas {
        std::mem::take(&mut self.deltas)
    }

    /// Takes the visit changes since the last call.
    pub fn take_visit_changes(&mut self) -> Vec<VisitChange> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|k| {
                let state = self
                    .visits
                    .get(&k)
                    .map(|l| postcard::to_stdvec(l).unwrap_or_default());
                (k.0, k.1, state)
            })
            .collect()
    }

    fn cell(
        &mut self,
        site_id: u64,
        generation: u32,
        granularity: Granularity,
        dimension: Dimension,
        bucket: i64,
        value: &str,
    ) -> &mut CellValue {
        let probe = CellKeyRef {
            site_id,
            generation,
            granularity,
            dimension,
            bucket,
            value,
        };
        if let Some(i) = self.deltas.get_index_of(&probe) {
            return &mut self.deltas[i];
        }
        let key = CellKey {
            site_id,
            generation,
            granularity,
            dimension,
            bucket,
            value: value.to_string(),
        };
        self.deltas.entry(key).or_default()
    }

    fn apply(&mut self, v: &mut Visit, e: &Event, site: &SiteInfo) {
        let generation = v.generation;
        let pageview = e.is_pageview();
        v.last_received_us = v.last_received_us.max(e.received_at_us);
        if e.timestamp_us < v.first_event_us {
            set_first_event(v, e, site);
        }
        v.start_us = v.start_us.min(e.timestamp_us);
        v.last_us = v.last_us.max(e.timestamp_us);
        if pageview {
            v.pageviews += 1;
            if v.entry.as_ref().is_none_or(|(t, _)| e.timestamp_us < *t) {
                v.entry = Some((e.timestamp_us, e.path.clone()));
            }
            if v.exit.as_ref().is_none_or(|(t, _)| e.timestamp_us >= *t) {
                v.exit = Some((e.timestamp_us, e.path.clone()));
            }
        } else if e.interactive {
            v.interactive_custom_events += 1;
        }
        v.events += 1;
        let revenue = e
            .revenue
            .as_ref()
            .filter(|r| r.currency == site.currency)
            .map_or(0, |r| r.amount_minor);
        v.revenue_minor = v.revenue_minor.saturating_add(revenue);

        // Event-scoped cells, in the event's own buckets.
        let mut scoped: Vec<(Dimension, &str, bool)> = Vec::with_capacity(3 + e.props.len());
        if pageview {
            scoped.push((
                Dimension::Page,
                &e.path,
                first_time(v, Dimension::Page, &e.path),
            ));
        } else {
            scoped.push((
                Dimension::Goal,
                &e.name,
                first_time(v, Dimension::Goal, &e.name),
            ));
        }
        let prop_values: Vec<String> = e
            .props
            .iter()
            .map(|(k, v)| format!("{k}{PROP_SEPARATOR}{v}"))
            .collect();
        for pv in &prop_values {
            scoped.push((
                Dimension::Prop,
                pv.as_str(),
                first_time(v, Dimension::Prop, pv),
            ));
        }
        if !e.hostname.is_empty() {
            scoped.push((
                Dimension::Hostname,
                &e.hostname,
                first_time(v, Dimension::Hostname, &e.hostname),
            ));
        }
        let tz: Tz = site.timezone.parse().unwrap_or(Tz::UTC);
        let buckets = [
            (Granularity::Hour, hour_bucket(tz, e.timestamp_us)),
            (Granularity::Day, day_bucket(tz, e.timestamp_us)),
        ];
        for (granularity, bucket) in buckets {
            let total = self.cell(
                e.site_id,
                generation,
                granularity,
                Dimension::Total,
                bucket,
                "",
            );
            total.visitors.insert(v.visitor_id);
            total.pageviews += i64::from(pageview);
            total.events += 1;
            total.revenue_minor = total.revenue_minor.saturating_add(revenue);
            for (dim, value, first) in &scoped {
                let c = self.cell(e.site_id, generation, granularity, *dim, bucket, value);
                c.visitors.insert(v.visitor_id);
                c.pageviews += i64::from(pageview);
                c.events += 1;
                c.visits += i64::from(*first);
                if matches!(*dim, Dimension::Goal | Dimension::Prop) {
                    c.revenue_minor = c.revenue_minor.saturating_add(revenue);
                }
            }
        }
        self.recontribute(v);
    }

    /// An engagement event ([`ENGAGEMENT`]): the open visit it belongs to lasts until it, and
    /// nothing else changes; with no such visit it is ignored rather than starting one.
    fn engage(&mut self, e: &Event) {
        // As in `process_visit`: a visit under yesterday's id that the event can join first.
        let keys = [
            e.prev_visitor_id.map(|p| (e.site_id, p)),
            Some((e.site_id, e.visitor_id)),
        ];
        for key in keys.into_iter().flatten() {
            let Some(mut list) = self.visits.remove(&key) else {
                continue;
            };
            let Some(i) = list.iter().position(|v| joinable(v, e)) else {
                self.visits.insert(key, list);
                continue;
            };
            let mut v = list.swap_remove(i);
            self.expiry.remove(&expiry_key(&v, key));
            v.last_received_us = v.last_received_us.max(e.received_at_us);
            v.last_us = v.last_us.max(e.timestamp_us);
            self.recontribute(&mut v);
            self.expiry.insert(expiry_key(&v, key));
            list.push(v);
            self.visits.insert(key, list);
            self.changed.insert(key);
            return;
        }
    }

    /// Moves the visit's row in visit-scoped cells from where it was to where it belongs now.
    fn recontribute(&mut self, v: &mut Visit) {
        let generation = v.generation;
        let new = v.contribution();
        match v.contributed.take() {
            Some(old) if old.hour == new.hour && old.day == new.day && old.values == new.values => {
                if old.row != new.row {
                    let diff = VisitRow {
                        pageviews: new.row.pageviews - old.row.pageviews,
                        events: new.row.events - old.row.events,
                        bounces: new.row.bounces - old.row.bounces,
                        duration_s: new.row.duration_s - old.row.duration_s,
                        revenue_minor: new.row.revenue_minor.saturating_sub(old.row.revenue_minor),
                    };
                    self.add_row(v.site_id, generation, &new, diff, 0, None);
                }
            }
            Some(old) => {
                let negated = VisitRow {
                    pageviews: -old.row.pageviews,
                    events: -old.row.events,
                    bounces: -old.row.bounces,
                    duration_s: -old.row.duration_s,
                    revenue_minor: old.row.revenue_minor.saturating_neg(),
                };
                self.add_row(v.site_id, generation, &old, negated, -1, None);
                self.add_row(v.site_id, generation, &new, new.row, 1, Some(v.visitor_id));
            }
            None => self.add_row(v.site_id, generation, &new, new.row, 1, Some(v.visitor_id)),
        }
        v.contributed = Some(new);
    }

    fn add_row(
        &mut self,
        site_id: u64,
        generation: u32,
        at: &Contribution,
        row: VisitRow,
        visits: i64,
        visitor: Option<u64>,
    ) {
        for (granularity, bucket) in [(Granularity::Hour, at.hour), (Granularity::Day, at.day)] {
            for (dim, value) in &at.values {
                let c = self.cell(site_id, generation, granularity, *dim, bucket, value);
                c.visits += visits;
                c.bounces += row.bounces;
                c.visit_duration_s += row.duration_s;
                if *dim != Dimension::Total {
                    c.pageviews += row.pageviews;
                    c.events += row.events;
                    c.revenue_minor = c.revenue_minor.saturating_add(row.revenue_minor);
                    if let Some(id) = visitor {
                        c.visitors.insert(id);
                    }
                }
            }
        }
    }

    /// Writes the exit-page row of a visit that has ended.
    fn end(&mut self, v: &Visit) {
        let generation = v.generation;
        let Some((_, exit)) = &v.exit else {
            return;
        };
        let at = v.contributed.clone().unwrap_or_else(|| v.contribution());
        let exit_at = Contribution {
            values: vec![(Dimension::ExitPage, exit.clone())],
            ..at
        };
        self.add_row(
            v.site_id,
            generation,
            &exit_at,
            v.row(),
            1,
            Some(v.visitor_id),
        );
    }
}

/// Whether event `e` belongs to open visit `v`: compatible client session ids, event time within
/// the visit's span widened by the timeout, and arrival within the timeout of the visit's last
/// arrival.
fn joinable(v: &Visit, e: &Event) -> bool {
    let sessions_agree = !matches!((v.session_id, e.session_id), (Some(a), Some(b)) if a != b);
    sessions_agree
        && e.received_at_us.saturating_sub(v.last_received_us) <= VISIT_TIMEOUT_US
        && e.timestamp_us >= v.start_us.saturating_sub(VISIT_TIMEOUT_US)
        && e.timestamp_us <= v.last_us.saturating_add(VISIT_TIMEOUT_US)
}

/// Most event-scoped values one visit remembers for its `visits` counts; values past it do not
/// count the visit again (bounds the state of a visit that sends thousands of distinct paths).
pub const MAX_SEEN_VALUES_PER_VISIT: usize = 256;

/// 64-bit FNV-1a of (dimension, value): a fixed, documented hash (Fowler–Noll–Vo), so saved
/// visit states mean the same after an upgrade, and 8 bytes per remembered value.
fn seen_hash(dim: Dimension, value: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    std::iter::once(dim.code())
        .chain(value.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

fn first_time(v: &mut Visit, dim: Dimension, value: &str) -> bool {
    let h = seen_hash(dim, value);
    if v.seen.len() >= MAX_SEEN_VALUES_PER_VISIT || v.seen.contains(&h) {
        false
    } else {
        v.seen.push(h);
        true
    }
}

fn set_first_event(v: &mut Visit, e: &Event, site: &SiteInfo) {
    v.first_event_us = e.timestamp_us;
    let attribution = sources::attribute(
        e.utm.source.as_deref(),
        e.utm.medium.as_deref(),
        e.utm.campaign.as_deref(),
        e.referrer.as_deref(),
        &site.domain,
    );
    v.source = attribution.source;
    v.utm_source = e.utm.source.clone();
    v.utm_medium = e.utm.medium.clone();
    v.utm_campaign = e.utm.campaign.clone();
    let geo = |x: &Option<String>| {
        x.clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| UNKNOWN.to_string())
    };
    let mut attributes = vec![
        (Dimension::Channel, attribution.channel.to_string()),
        (Dimension::Referrer, attribution.referrer),
        (Dimension::Country, geo(&e.country)),
        (Dimension::Region, geo(&e.region)),
        (Dimension::City, geo(&e.city)),
    ];
    // The User-Agent of a Measurement Protocol hit is the sender's server, not the visitor's.
    if e.protocol != Protocol::Ga4MeasurementProtocol {
        let ua = user_agent::parse(&e.user_agent);
        attributes.extend([
            (Dimension::Browser, ua.browser.clone()),
            (
                Dimension::BrowserVersion,
                format!("{} {}", ua.browser, ua.browser_version),
            ),
            (Dimension::Os, ua.os.clone()),
            (Dimension::OsVersion, format!("{} {}", ua.os, ua.os_version)),
            (Dimension::Device, ua.device.as_str().to_string()),
        ]);
    }
    v.attributes = attributes;
}

fn new_visit(e: &Event, site: &SiteInfo) -> Visit {
    let mut v = Visit {
        site_id: e.site_id,
        visitor_id: e.visitor_id,
        session_id: e.session_id,
        start_us: e.timestamp_us,
        last_us: e.timestamp_us,
        last_received_us: e.received_at_us,
        first_event_us: i64::MAX,
        source: String::new(),
        utm_source: None,
        utm_medium: None,
        utm_campaign: None,
        attributes: Vec::new(),
        entry: None,
        exit: None,
        pageviews: 0,
        events: 0,
        interactive_custom_events: 0,
        revenue_minor: 0,
        seen: Vec::new(),
        timezone: site.timezone.clone(),
        generation: site.generation,
        contributed: None,
    };
    set_first_event(&mut v, e, site);
    v
}

#[cfg(test)]
mod tests;
