//! The pure processing core; see the crate docs for the rules it implements.

use std::collections::{HashMap, HashSet};

use chrono_tz::Tz;
use footfall_model::bucket::{day_bucket, hour_bucket};
use footfall_model::event::Event;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_model::url_parts;

use crate::visit::{Contribution, Visit, VisitRow};

/// A visit ends after this long without events: 30 minutes, µs (the session timeout of
/// Google Analytics and Plausible).
pub const VISIT_TIMEOUT_US: i64 = 30 * 60 * 1_000_000;

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

/// The processing core. Feed events in log order with [`Engine::process`]; collect
/// [`Engine::take_deltas`] and [`Engine::take_visit_changes`] at each flush.
#[derive(Default)]
pub struct Engine {
    visits: HashMap<(u64, u64), Visit>,
    generations: HashMap<(u64, u64), u32>,
    changed: HashSet<(u64, u64)>,
    deltas: HashMap<CellKey, CellValue>,
}

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
            match postcard::from_bytes::<(u32, Visit)>(bytes) {
                Ok((generation, visit)) => {
                    let k = (visit.site_id, visit.visitor_id);
                    engine.generations.insert(k, generation);
                    engine.visits.insert(k, visit);
                }
                Err(_) => corrupt += 1,
            }
        }
        (engine, corrupt)
    }

    /// Number of open visits.
    pub fn open_visits(&self) -> usize {
        self.visits.len()
    }

    /// Number of cells with pending deltas.
    pub fn pending_cells(&self) -> usize {
        self.deltas.len()
    }

    /// Processes one event of `site`.
    pub fn process(&mut self, e: &Event, site: &SiteInfo) {
        let mut key = (e.site_id, e.visitor_id);
        if !self.visits.contains_key(&key) {
            if let Some(prev) = e.prev_visitor_id {
                if self.visits.contains_key(&(e.site_id, prev)) {
                    key = (e.site_id, prev);
                }
            }
        }
        let session_id = e.session_id;
        let join = match self.visits.get(&key) {
            None => Join::New,
            Some(v) => {
                let session_differs =
                    matches!((v.session_id, session_id), (Some(a), Some(b)) if a != b);
                if e.timestamp_us < v.start_us - VISIT_TIMEOUT_US && !session_differs {
                    Join::Standalone
                } else if session_differs
                    || e.received_at_us - v.last_received_us > VISIT_TIMEOUT_US
                    || e.timestamp_us > v.last_us + VISIT_TIMEOUT_US
                    || e.timestamp_us < v.start_us - VISIT_TIMEOUT_US
                {
                    Join::Replace
                } else {
                    Join::Existing
                }
            }
        };
        match join {
            Join::Existing => {
                let generation = self
                    .generations
                    .get(&key)
                    .copied()
                    .unwrap_or(site.generation);
                if let Some(mut v) = self.visits.remove(&key) {
                    self.apply(&mut v, generation, e, site);
                    self.visits.insert(key, v);
                }
                self.changed.insert(key);
            }
            Join::Standalone => {
                let mut v = new_visit(e, site);
                self.apply(&mut v, site.generation, e, site);
                self.end(&v, site.generation);
            }
            Join::Replace | Join::New => {
                if let Some(old) = self.visits.remove(&key) {
                    let generation = self.generations.remove(&key).unwrap_or(site.generation);
                    self.end(&old, generation);
                    self.changed.insert(key);
                }
                let key = (e.site_id, e.visitor_id);
                let mut v = new_visit(e, site);
                self.apply(&mut v, site.generation, e, site);
                self.visits.insert(key, v);
                self.generations.insert(key, site.generation);
                self.changed.insert(key);
            }
        }
    }

    /// Ends every visit whose last event arrived before `now_us - VISIT_TIMEOUT_US -
    /// grace_us`: no later event can join it, so its exit page is final. Returns how many
    /// ended.
    pub fn close_idle(&mut self, now_us: i64, grace_us: i64) -> usize {
        let limit = now_us - VISIT_TIMEOUT_US - grace_us;
        let idle: Vec<(u64, u64)> = self
            .visits
            .iter()
            .filter(|(_, v)| v.last_received_us < limit)
            .map(|(k, _)| *k)
            .collect();
        for k in &idle {
            if let Some(v) = self.visits.remove(k) {
                let generation = self.generations.remove(k).unwrap_or(1);
                self.end(&v, generation);
                self.changed.insert(*k);
            }
        }
        idle.len()
    }

    /// Ends every open visit (end of a reprocessing run).
    pub fn close_all(&mut self) {
        self.close_idle(i64::MAX / 2, 0);
    }

    /// Takes the cell deltas accumulated since the last call.
    pub fn take_deltas(&mut self) -> HashMap<CellKey, CellValue> {
        std::mem::take(&mut self.deltas)
    }

    /// Takes the visit changes since the last call.
    pub fn take_visit_changes(&mut self) -> Vec<VisitChange> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|k| {
                let state = self.visits.get(&k).map(|v| {
                    postcard::to_stdvec(&(self.generations.get(&k).copied().unwrap_or(1), v))
                        .unwrap_or_default()
                });
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

    fn apply(&mut self, v: &mut Visit, generation: u32, e: &Event, site: &SiteInfo) {
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
        v.revenue_minor += revenue;

        // Event-scoped cells, in the event's own buckets.
        let mut scoped: Vec<(Dimension, &str, bool)> = Vec::with_capacity(3);
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
            total.revenue_minor += revenue;
            for (dim, value, first) in &scoped {
                let c = self.cell(e.site_id, generation, granularity, *dim, bucket, value);
                c.visitors.insert(v.visitor_id);
                c.pageviews += i64::from(pageview);
                c.events += 1;
                c.visits += i64::from(*first);
                if *dim == Dimension::Goal {
                    c.revenue_minor += revenue;
                }
            }
        }
        self.recontribute(v, generation);
    }

    /// Moves the visit's row in visit-scoped cells from where it was to where it belongs now.
    fn recontribute(&mut self, v: &mut Visit, generation: u32) {
        let new = v.contribution();
        match v.contributed.take() {
            Some(old) if old.hour == new.hour && old.day == new.day && old.values == new.values => {
                if old.row != new.row {
                    let diff = VisitRow {
                        pageviews: new.row.pageviews - old.row.pageviews,
                        events: new.row.events - old.row.events,
                        bounces: new.row.bounces - old.row.bounces,
                        duration_s: new.row.duration_s - old.row.duration_s,
                        revenue_minor: new.row.revenue_minor - old.row.revenue_minor,
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
                    revenue_minor: -old.row.revenue_minor,
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
                    c.revenue_minor += row.revenue_minor;
                    if let Some(id) = visitor {
                        c.visitors.insert(id);
                    }
                }
            }
        }
    }

    /// Writes the exit-page row of a visit that has ended.
    fn end(&mut self, v: &Visit, generation: u32) {
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

enum Join {
    New,
    Existing,
    Replace,
    Standalone,
}

fn first_time(v: &mut Visit, dim: Dimension, value: &str) -> bool {
    if v.seen.iter().any(|(d, s)| *d == dim && s == value) {
        false
    } else {
        v.seen.push((dim, value.to_string()));
        true
    }
}

fn set_first_event(v: &mut Visit, e: &Event, site: &SiteInfo) {
    v.first_event_us = e.timestamp_us;
    v.source = url_parts::source(e.utm.source.as_deref(), e.referrer.as_deref(), &site.domain);
    v.utm_source = e.utm.source.clone();
    v.utm_medium = e.utm.medium.clone();
    v.utm_campaign = e.utm.campaign.clone();
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
        entry: None,
        exit: None,
        pageviews: 0,
        events: 0,
        interactive_custom_events: 0,
        revenue_minor: 0,
        seen: Vec::new(),
        timezone: site.timezone.clone(),
        contributed: None,
    };
    set_first_event(&mut v, e, site);
    v
}

#[cfg(test)]
mod tests;
