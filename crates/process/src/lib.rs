//! The processor (DESIGN §4.3): turns the log's events into visits and rollup cells.
//!
//! - [`engine::Engine`] is the pure core: it takes events in log order and produces cell
//!   *deltas* and visit state changes. It does no I/O and reads no clock, so the same code
//!   serves streaming and reprocessing, and a replay of the same events yields the same cells.
//! - [`runner`] is the streaming consumer: one task per log partition that reads, feeds the
//!   engine, turns deltas into absolute cell values and flushes them every few seconds
//!   together with the log position and the open visits, in one store batch.
//!
//! ## Rules
//!
//! - A **visit** ends after [`engine::VISIT_TIMEOUT_US`] (30 minutes) without events from its
//!   visitor, by event time; it does not end at midnight. An event joins an open visit of its
//!   visitor when its time lies within 30 minutes of the visit's span, it arrives within 30
//!   minutes (by receipt time) of the visit's last event, and its client session id (if any)
//!   agrees; otherwise it starts a new visit. A visitor may have several open visits (a batch
//!   of back-dated events next to a visit in progress, interleaved client sessions), at most
//!   [`engine::MAX_OPEN_VISITS_PER_VISITOR`]. Out-of-order events are placed by event time:
//!   the entry page, source and UTM come from the earliest event, the exit page from the
//!   latest pageview.
//! - A visit **bounces** when it has at most one pageview and no interactive custom event.
//! - **Visit duration** is the time from its first to its last event, whole seconds.
//! - **Visit-scoped** dimensions (entry page, exit page, source, UTM) count the whole visit
//!   (visitors, visits, pageviews, events, bounces, duration, revenue) in the hour and day
//!   where the visit started. When a visit changes, its previous contribution is retracted
//!   and the new one added. The exit page is only known when the visit ends, so exit-page
//!   cells are written when it ends.
//! - **Event-scoped** dimensions (page, hostname, goal) count each event in its own bucket:
//!   visitors, pageviews, events, revenue, and visits (a visit counts once per value, in the
//!   bucket of its first event with that value).
//! - The **site total** counts visitors, pageviews, events and revenue by event bucket, and
//!   visits, bounces and duration in the bucket where the visit started.
//! - Revenue counts only in the site's currency (no exchange rates are applied).
//!
//! A retraction cannot remove a visitor from a sketch, so a late event that moves a visit to
//! another start bucket or source leaves the visitor counted in the old cell too (visitor
//! counts there are an upper bound; sums are exact).

pub mod cap;
pub mod engine;
pub mod reprocess;
pub mod runner;
mod visit;

pub use engine::{Engine, SiteInfo};
