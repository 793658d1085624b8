//! Hand-computed scenarios, one per rule. Every expected figure is worked out in the comment
//! above it from the rule in the crate docs.

use std::collections::BTreeMap;

use chrono::DateTime;
use footfall_model::event::Event;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};

use super::*;

const SITE: u64 = 1;

fn site(tz: &str) -> SiteInfo {
    SiteInfo {
        domain: "shop.example".into(),
        timezone: tz.into(),
        currency: "EUR".into(),
        generation: 1,
    }
}

fn us(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

fn pv(visitor: u64, at: &str, path: &str) -> Event {
    Event::pageview(SITE, visitor, us(at), path)
}

/// Runs events through an engine and folds its deltas into absolute cells, as the runner
/// does.
fn run(events: &[Event], tz: &str, close: bool) -> BTreeMap<CellKey, CellValue> {
    let mut engine = Engine::new();
    let s = site(tz);
    for e in events {
        engine.process(e, &s);
    }
    if close {
        engine.close_all();
    }
    let mut cells: BTreeMap<CellKey, CellValue> = BTreeMap::new();
    fold_into(&mut engine, &mut cells);
    cells.retain(|_, v| !v.is_zero());
    cells
}

/// Adds the engine's pending deltas to `cells`, as a flush does.
fn fold_into(engine: &mut Engine, cells: &mut BTreeMap<CellKey, CellValue>) {
    for (k, d) in engine.take_deltas() {
        cells.entry(k).or_default().merge(&d);
    }
}

fn get<'a>(
    cells: &'a BTreeMap<CellKey, CellValue>,
    g: Granularity,
    d: Dimension,
    bucket: i64,
    value: &str,
) -> Option<&'a CellValue> {
    cells.get(&CellKey {
        site_id: SITE,
        generation: 1,
        granularity: g,
        dimension: d,
        bucket,
        value: value.into(),
    })
}

fn hour(at: &str) -> i64 {
    us(at) / 1_000_000
}

fn day(date: &str) -> i64 {
    footfall_model::bucket::date_to_day(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
    )
}

#[test]
fn visit_crossing_an_hour_and_a_single_page_visit() {
    // Visitor 1: /a at 10:50, /b at 11:10 (20 min apart: one visit of 1,200 s, not a bounce).
    // Visitor 2: /a at 11:20 only (one visit, a bounce, 0 s).
    let events = [
        pv(1, "2024-05-01T10:50:00Z", "/a"),
        pv(1, "2024-05-01T11:10:00Z", "/b"),
        pv(2, "2024-05-01T11:20:00Z", "/a"),
    ];
    let cells = run(&events, "UTC", true);
    let d = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    // 2 visits, 1 bounce (50 %), 1,200 s of duration in all, 3 pageviews, 2 visitors.
    assert_eq!(
        (
            d.visits,
            d.bounces,
            d.visit_duration_s,
            d.pageviews,
            d.visitors.estimate()
        ),
        (2, 1, 1200, 3, 2)
    );
    // Visit 1 started in the 10:00 hour: it counts there, though its second pageview is at 11:10.
    let h10 = get(
        &cells,
        Granularity::Hour,
        Dimension::Total,
        hour("2024-05-01T10:00:00Z"),
        "",
    )
    .unwrap();
    assert_eq!(
        (
            h10.visits,
            h10.bounces,
            h10.visit_duration_s,
            h10.pageviews,
            h10.visitors.estimate()
        ),
        (1, 0, 1200, 1, 1)
    );
    let h11 = get(
        &cells,
        Granularity::Hour,
        Dimension::Total,
        hour("2024-05-01T11:00:00Z"),
        "",
    )
    .unwrap();
    assert_eq!(
        (
            h11.visits,
            h11.bounces,
            h11.visit_duration_s,
            h11.pageviews,
            h11.visitors.estimate()
        ),
        (1, 1, 0, 2, 2)
    );
    // Entry pages: both visits entered on /a. Exit pages: /b (visit 1) and /a (visit 2).
    let entry_a = get(
        &cells,
        Granularity::Day,
        Dimension::EntryPage,
        day("2024-05-01"),
        "/a",
    )
    .unwrap();
    assert_eq!(
        (entry_a.visits, entry_a.bounces, entry_a.pageviews),
        (2, 1, 3)
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::ExitPage,
            day("2024-05-01"),
            "/b"
        )
        .unwrap()
        .visits,
        1
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::ExitPage,
            day("2024-05-01"),
            "/a"
        )
        .unwrap()
        .visits,
        1
    );
    // Pages: /a viewed twice by two visitors in two visits; /b once.
    let page_a = get(
        &cells,
        Granularity::Day,
        Dimension::Page,
        day("2024-05-01"),
        "/a",
    )
    .unwrap();
    assert_eq!(
        (page_a.pageviews, page_a.visits, page_a.visitors.estimate()),
        (2, 2, 2)
    );
}

#[test]
fn thirty_minutes_of_inactivity_end_a_visit_but_midnight_does_not() {
    // 10:00 and 10:31 are 31 min apart: two visits. 23:50 and 00:10 are 20 min apart: one
    // visit, counted on the day it started.
    let events = [
        pv(1, "2024-05-01T10:00:00Z", "/"),
        pv(1, "2024-05-01T10:31:00Z", "/"),
        pv(2, "2024-05-01T23:50:00Z", "/x"),
        pv(2, "2024-05-02T00:10:00Z", "/y"),
    ];
    let cells = run(&events, "UTC", true);
    let d1 = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    assert_eq!((d1.visits, d1.bounces, d1.visit_duration_s), (3, 2, 1200));
    let d2 = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-02"),
        "",
    )
    .unwrap();
    assert_eq!((d2.visits, d2.pageviews), (0, 1));
}

#[test]
fn out_of_order_events_are_placed_by_event_time() {
    // Arrival order: /b (10:10), /a (10:00, with a referrer), /c (10:20).
    // By event time the visit is /a → /b → /c: entry /a, exit /c, 1,200 s, source from /a.
    let mut a = pv(1, "2024-05-01T10:00:00Z", "/a");
    a.referrer = Some("https://news.example/story".into());
    let events = [
        pv(1, "2024-05-01T10:10:00Z", "/b"),
        a,
        pv(1, "2024-05-01T10:20:00Z", "/c"),
    ];
    let cells = run(&events, "UTC", true);
    let dd = day("2024-05-01");
    let t = get(&cells, Granularity::Day, Dimension::Total, dd, "").unwrap();
    assert_eq!((t.visits, t.bounces, t.visit_duration_s), (1, 0, 1200));
    assert_eq!(
        get(&cells, Granularity::Day, Dimension::EntryPage, dd, "/a")
            .unwrap()
            .visits,
        1
    );
    assert!(
        get(&cells, Granularity::Day, Dimension::EntryPage, dd, "/b").is_none_or(|c| c.visits == 0)
    );
    assert_eq!(
        get(&cells, Granularity::Day, Dimension::ExitPage, dd, "/c")
            .unwrap()
            .visits,
        1
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::Source,
            dd,
            "news.example"
        )
        .unwrap()
        .visits,
        1
    );
    assert!(get(
        &cells,
        Granularity::Day,
        Dimension::Source,
        dd,
        footfall_enrich::sources::DIRECT
    )
    .is_none_or(|c| c.visits == 0));
    assert!(cells
        .values()
        .all(|c| c.visit_duration_s >= 0 && c.visits >= 0 && c.bounces >= 0));
}

#[test]
fn interactive_custom_event_prevents_bounce_and_goals_count() {
    // Visit 1: one pageview + interactive "Signup" with 19.99 EUR: not a bounce.
    // Visit 2: one pageview + non-interactive "Scroll": a bounce.
    let mut signup = pv(1, "2024-05-01T10:01:00Z", "/");
    signup.name = "Signup".into();
    signup.revenue = Some(footfall_model::event::Revenue {
        amount_minor: 1999,
        currency: "EUR".into(),
    });
    let mut scroll = pv(2, "2024-05-01T10:01:00Z", "/");
    scroll.name = "Scroll".into();
    scroll.interactive = false;
    let events = [
        pv(1, "2024-05-01T10:00:00Z", "/"),
        signup,
        pv(2, "2024-05-01T10:00:00Z", "/"),
        scroll,
    ];
    let cells = run(&events, "UTC", true);
    let dd = day("2024-05-01");
    let t = get(&cells, Granularity::Day, Dimension::Total, dd, "").unwrap();
    assert_eq!(
        (t.visits, t.bounces, t.pageviews, t.events, t.revenue_minor),
        (2, 1, 2, 4, 1999)
    );
    let g = get(&cells, Granularity::Day, Dimension::Goal, dd, "Signup").unwrap();
    assert_eq!(
        (g.visitors.estimate(), g.events, g.revenue_minor),
        (1, 1, 1999)
    );
}

#[test]
fn engine_state_survives_save_and_restore() {
    // Flushing after the first event and restoring must give the same cells as one run.
    let events = [
        pv(1, "2024-05-01T10:00:00Z", "/a"),
        pv(1, "2024-05-01T10:05:00Z", "/b"),
    ];
    let whole = run(&events, "UTC", true);

    let s = site("UTC");
    let mut first = Engine::new();
    first.process(&events[0], &s);
    let mut cells: BTreeMap<CellKey, CellValue> = BTreeMap::new();
    fold_into(&mut first, &mut cells);
    let saved: Vec<Vec<u8>> = first
        .take_visit_changes()
        .into_iter()
        .filter_map(|(_, _, s)| s)
        .collect();
    let (mut second, corrupt) = Engine::restore(&saved);
    assert_eq!(corrupt, 0);
    second.process(&events[1], &s);
    second.close_all();
    fold_into(&mut second, &mut cells);
    cells.retain(|_, v| !v.is_zero());
    assert_eq!(cells, whole);
}

#[test]
fn idle_visits_close_only_after_the_timeout_and_grace() {
    let s = site("UTC");
    let mut e = Engine::new();
    let ev = pv(1, "2024-05-01T10:00:00Z", "/a");
    e.process(&ev, &s);
    assert_eq!(e.close_idle(ev.received_at_us + VISIT_TIMEOUT_US), 0);
    assert_eq!(
        e.close_idle(ev.received_at_us + VISIT_TIMEOUT_US + IDLE_GRACE_US + 1),
        1
    );
    assert_eq!(e.open_visits(), 0);
}

#[test]
fn back_dated_events_form_their_own_visit_next_to_one_in_progress() {
    // Visitor 1 is browsing at 12:00. A batch received at 12:01 carries pageviews of 09:00
    // and 09:05 (GA4 allows back-dating): they are one visit of 300 s, not two bounces.
    // Day totals: 2 visits (12:00 single page: a bounce; 09:00 two pages), 1 bounce, 300 s.
    let mut late_a = pv(1, "2024-05-01T09:00:00Z", "/old-a");
    let mut late_b = pv(1, "2024-05-01T09:05:00Z", "/old-b");
    late_a.received_at_us = us("2024-05-01T12:01:00Z");
    late_b.received_at_us = us("2024-05-01T12:01:00Z");
    let cells = run(
        &[pv(1, "2024-05-01T12:00:00Z", "/now"), late_a, late_b],
        "UTC",
        true,
    );
    let t = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    assert_eq!(
        (t.visits, t.bounces, t.visit_duration_s, t.pageviews),
        (2, 1, 300, 3)
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Hour,
            Dimension::Total,
            hour("2024-05-01T09:00:00Z"),
            ""
        )
        .unwrap()
        .visits,
        1
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::EntryPage,
            day("2024-05-01"),
            "/old-a"
        )
        .unwrap()
        .visits,
        1
    );
}

#[test]
fn interleaved_client_sessions_are_separate_visits() {
    // Session ids 7, 8, 7, 8 from one client within minutes: two visits of two pages each.
    let events: Vec<Event> = [(7, "10:00"), (8, "10:01"), (7, "10:02"), (8, "10:03")]
        .iter()
        .map(|(sid, at)| {
            let mut e = pv(1, &format!("2024-05-01T{at}:00Z"), "/");
            e.session_id = Some(*sid);
            e
        })
        .collect();
    let cells = run(&events, "UTC", true);
    let t = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    assert_eq!(
        (
            t.visits,
            t.bounces,
            t.visit_duration_s,
            t.visitors.estimate()
        ),
        (2, 0, 240, 1)
    );
}

#[test]
fn previous_salt_id_continues_the_visit_across_the_rotation() {
    // 23:55 under yesterday's id 100; 00:05 under today's id 200 with prev 100: one visit.
    let mut next = pv(200, "2024-05-02T00:05:00Z", "/b");
    next.prev_visitor_id = Some(100);
    let cells = run(&[pv(100, "2024-05-01T23:55:00Z", "/a"), next], "UTC", true);
    let t = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    assert_eq!((t.visits, t.bounces, t.visit_duration_s), (1, 0, 600));
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::ExitPage,
            day("2024-05-01"),
            "/b"
        )
        .unwrap()
        .visits,
        1
    );
}

#[test]
fn an_event_arriving_more_than_30_minutes_after_the_last_starts_a_new_visit() {
    // Event times 1 minute apart, but the second arrives 31 minutes after the first.
    let first = pv(1, "2024-05-01T10:00:00Z", "/a");
    let mut second = pv(1, "2024-05-01T10:01:00Z", "/b");
    second.received_at_us = us("2024-05-01T10:31:00Z");
    let cells = run(&[first, second], "UTC", true);
    let t = get(
        &cells,
        Granularity::Day,
        Dimension::Total,
        day("2024-05-01"),
        "",
    )
    .unwrap();
    assert_eq!((t.visits, t.bounces), (2, 2));
}

#[test]
fn a_late_earlier_event_moves_the_visit_to_its_start_hour() {
    // /b at 10:10 arrives first (the visit sits in the 10:00 hour), then /a at 09:55: the
    // visit now starts at 09:55, so it moves to the 09:00 hour with 900 s and no bounce.
    let cells = run(
        &[
            pv(1, "2024-05-01T10:10:00Z", "/b"),
            pv(1, "2024-05-01T09:55:00Z", "/a"),
        ],
        "UTC",
        false,
    );
    let h9 = get(
        &cells,
        Granularity::Hour,
        Dimension::Total,
        hour("2024-05-01T09:00:00Z"),
        "",
    )
    .unwrap();
    assert_eq!((h9.visits, h9.bounces, h9.visit_duration_s), (1, 0, 900));
    let h10 = get(
        &cells,
        Granularity::Hour,
        Dimension::Total,
        hour("2024-05-01T10:00:00Z"),
        "",
    )
    .unwrap();
    assert_eq!(
        (h10.visits, h10.bounces, h10.visit_duration_s, h10.pageviews),
        (0, 0, 0, 1)
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Hour,
            Dimension::EntryPage,
            hour("2024-05-01T09:00:00Z"),
            "/a"
        )
        .unwrap()
        .visits,
        1
    );
}

#[test]
fn the_memory_bound_ends_the_visits_that_arrived_earliest() {
    // Three visitors arriving at 10:00, 10:01, 10:02; keep 1: the first two end early with
    // their exit pages written; the third stays open.
    let s = site("UTC");
    let mut e = Engine::new();
    for (v, at) in [(1, "10:00"), (2, "10:01"), (3, "10:02")] {
        e.process(
            &pv(v, &format!("2024-05-01T{at}:00Z"), &format!("/v{v}")),
            &s,
        );
    }
    assert_eq!(e.end_oldest(1), 2);
    assert_eq!(e.open_visits(), 1);
    let mut cells: BTreeMap<CellKey, CellValue> = BTreeMap::new();
    fold_into(&mut e, &mut cells);
    let exits: Vec<&str> = cells
        .keys()
        .filter(|k| k.dimension == Dimension::ExitPage && k.granularity == Granularity::Day)
        .map(|k| k.value.as_str())
        .collect();
    assert_eq!(exits, vec!["/v1", "/v2"]);
    assert_eq!(e.end_oldest(5), 0);
}

#[test]
fn the_memory_bound_ends_exactly_the_excess_even_when_arrivals_tie() {
    // Five visitors whose last events arrived at the same instant (an import batch): keeping 3
    // ends exactly 2, not all five.
    let s = site("UTC");
    let mut e = Engine::new();
    for v in 1..=5u64 {
        let mut ev = pv(v, "2024-05-01T10:00:00Z", "/");
        ev.received_at_us = us("2024-05-01T12:00:00Z");
        e.process(&ev, &s);
    }
    assert_eq!(e.end_oldest(3), 2);
    assert_eq!(e.open_visits(), 3);
}

#[test]
fn custom_properties_count_per_name_and_value() {
    let mut e1 = pv(1, "2024-05-01T10:00:00Z", "/");
    e1.props = vec![("plan".into(), "pro".into())];
    let mut e2 = pv(2, "2024-05-01T10:00:00Z", "/");
    e2.props = vec![("plan".into(), "pro".into()), ("size".into(), "xl".into())];
    let cells = run(&[e1, e2], "UTC", false);
    let sep = footfall_model::rollup::PROP_SEPARATOR;
    let pro = get(
        &cells,
        Granularity::Day,
        Dimension::Prop,
        day("2024-05-01"),
        &format!("plan{sep}pro"),
    )
    .unwrap();
    assert_eq!(
        (pro.visitors.estimate(), pro.pageviews, pro.visits),
        (2, 2, 2)
    );
    assert_eq!(
        get(
            &cells,
            Granularity::Day,
            Dimension::Prop,
            day("2024-05-01"),
            &format!("size{sep}xl")
        )
        .unwrap()
        .pageviews,
        1
    );
}

#[test]
fn engagement_events_extend_their_visit_and_count_in_no_metric() {
    // Visitor 1: a pageview at 10:00:00, then an engagement event at 10:02:30 when leaving:
    // one visit of 150 s, still one pageview and one event, still a bounce (one pageview, no
    // interactive custom event), and no goal named "engagement".
    // Visitor 2: an engagement event with no visit open: ignored, no visit is started.
    let engage = |visitor: u64, at: &str| {
        let mut e = pv(visitor, at, "/");
        e.name = footfall_model::event::ENGAGEMENT.into();
        e.engagement_ms = Some(150_000);
        e
    };
    let events = [
        pv(1, "2024-05-01T10:00:00Z", "/"),
        engage(1, "2024-05-01T10:02:30Z"),
        engage(2, "2024-05-01T10:03:00Z"),
    ];
    let cells = run(&events, "UTC", true);
    let dd = day("2024-05-01");
    let t = get(&cells, Granularity::Day, Dimension::Total, dd, "").unwrap();
    assert_eq!(
        (
            t.visitors.estimate(),
            t.visits,
            t.pageviews,
            t.events,
            t.bounces,
            t.visit_duration_s
        ),
        (1, 1, 1, 1, 1, 150)
    );
    assert!(get(&cells, Granularity::Day, Dimension::Goal, dd, "engagement").is_none());
}
