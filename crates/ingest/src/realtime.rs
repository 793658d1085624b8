//! Current visitors: distinct visitors per site whose events this collector accepted in the
//! last [`WINDOW_US`] (5 minutes, the window Plausible's realtime view uses).
//!
//! Rollups have hour buckets, too coarse for "right now", so the collector keeps each site's
//! recent visitor ids (already salted hashes, never addresses) with when it last saw them.
//! It is in memory and per process: after a restart it fills up again within the window, and
//! with several collector replicas each one knows only the visitors whose events it took,
//! which `docs/query-api.md` says. Bot events and accounting records are not counted.
//!
//! Memory is bounded: at most [`MAX_VISITORS_PER_SITE`] ids per site (16 bytes each); past it
//! new visitors are not added, and answers say they are approximate (a lower bound) while a
//! visitor turned away is inside the window. Expired ids are dropped at most once per
//! [`PRUNE_EVERY_US`] per site on the event path, so a flood of new visitor ids costs one scan
//! per second, not one per event.

use std::collections::HashMap;
use std::sync::Mutex;

/// The window, µs.
pub const WINDOW_US: i64 = 5 * 60 * 1_000_000;
/// Most visitor ids kept per site.
pub const MAX_VISITORS_PER_SITE: usize = 200_000;
/// Least time between two prunes of one site on the event path, µs.
pub const PRUNE_EVERY_US: i64 = 1_000_000;
/// Shards of the table, so that sites on different shards do not wait for one lock.
const SHARDS: usize = 16;

struct SiteWindow {
    /// Visitor id → last seen, UTC µs.
    last_seen: HashMap<u64, i64>,
    /// When a visitor was last turned away for the bound, UTC µs.
    turned_away_us: Option<i64>,
    pruned_us: i64,
    inserts_since_prune: usize,
}

impl SiteWindow {
    fn new(now_us: i64) -> Self {
        SiteWindow {
            last_seen: HashMap::new(),
            turned_away_us: None,
            pruned_us: now_us,
            inserts_since_prune: 0,
        }
    }

    fn prune(&mut self, now_us: i64) {
        let since = now_us - WINDOW_US;
        self.last_seen.retain(|_, t| *t >= since);
        self.inserts_since_prune = 0;
        self.pruned_us = now_us;
    }
}

/// Current visitors per site; see the module docs.
pub struct Realtime {
    shards: Vec<Mutex<HashMap<u64, SiteWindow>>>,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

/// An answer of [`Realtime::visitors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentVisitors {
    /// Distinct visitors in the window.
    pub visitors: u64,
    /// True when the per-site bound turned visitors away, so the count is a lower bound.
    pub approximate: bool,
}

impl Realtime {
    fn shard(&self, site_id: u64) -> &Mutex<HashMap<u64, SiteWindow>> {
        &self.shards[(site_id % SHARDS as u64) as usize]
    }

    /// Notes that `visitor_id` of `site_id` sent an event at `now_us` (UTC µs).
    pub fn record(&self, site_id: u64, visitor_id: u64, now_us: i64) {
        let Ok(mut shard) = self.shard(site_id).lock() else {
            return;
        };
        let w = shard
            .entry(site_id)
            .or_insert_with(|| SiteWindow::new(now_us));
        if let Some(t) = w.last_seen.get_mut(&visitor_id) {
            *t = (*t).max(now_us);
            return;
        }
        let due = now_us - w.pruned_us >= PRUNE_EVERY_US;
        if due && (w.last_seen.len() >= MAX_VISITORS_PER_SITE || w.inserts_since_prune >= 4096) {
            w.prune(now_us);
        }
        if w.last_seen.len() >= MAX_VISITORS_PER_SITE {
            w.turned_away_us = Some(now_us);
            return;
        }
        w.inserts_since_prune += 1;
        w.last_seen.insert(visitor_id, now_us);
    }

    /// Distinct visitors of `site_id` seen in the window that ends at `now_us`.
    pub fn visitors(&self, site_id: u64, now_us: i64) -> CurrentVisitors {
        let Ok(mut shard) = self.shard(site_id).lock() else {
            return CurrentVisitors {
                visitors: 0,
                approximate: true,
            };
        };
        let Some(w) = shard.get_mut(&site_id) else {
            return CurrentVisitors {
                visitors: 0,
                approximate: false,
            };
        };
        w.prune(now_us);
        let answer = CurrentVisitors {
            visitors: w.last_seen.len() as u64,
            approximate: w.turned_away_us.is_some_and(|t| t >= now_us - WINDOW_US),
        };
        if w.last_seen.is_empty() && !answer.approximate {
            shard.remove(&site_id);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * 1_000_000;

    #[test]
    fn counts_distinct_visitors_of_the_last_five_minutes_per_site() {
        let r = Realtime::default();
        let t0 = 1_000 * MIN;
        r.record(1, 10, t0);
        r.record(1, 10, t0 + MIN); // same visitor again
        r.record(1, 11, t0 + 2 * MIN);
        r.record(2, 10, t0 + 2 * MIN); // another site
        assert_eq!(r.visitors(1, t0 + 2 * MIN).visitors, 2);
        assert_eq!(r.visitors(2, t0 + 2 * MIN).visitors, 1);
        // At t0 + 6 min visitor 10 was last seen 5 min ago (kept), at t0 + 6 min + 1 µs not.
        assert_eq!(r.visitors(1, t0 + 6 * MIN).visitors, 2);
        assert_eq!(r.visitors(1, t0 + 6 * MIN + 1).visitors, 1);
        assert_eq!(r.visitors(1, t0 + 8 * MIN).visitors, 0);
        assert_eq!(r.visitors(3, t0).visitors, 0);
    }

    #[test]
    fn the_bound_makes_answers_approximate_until_the_window_moves_on() {
        let r = Realtime::default();
        let t0 = 1_000 * MIN;
        for v in 0..(MAX_VISITORS_PER_SITE as u64 + 5) {
            r.record(7, v, t0);
        }
        let a = r.visitors(7, t0);
        assert_eq!(a.visitors, MAX_VISITORS_PER_SITE as u64);
        assert!(a.approximate);
        // One minute on, the first visitor leaves the window (it is pruned) but the visitors
        // turned away at t0 would still be in it: still approximate.
        r.record(7, 0, t0 + 60 * 1_000_000);
        let b = r.visitors(7, t0 + WINDOW_US);
        assert!(b.approximate);
        let later = r.visitors(7, t0 + WINDOW_US + 60 * 1_000_000 + 1);
        assert_eq!(later.visitors, 0);
        assert!(!later.approximate);
    }
}
