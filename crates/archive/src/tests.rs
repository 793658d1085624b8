#![allow(clippy::unwrap_used)]

use footfall_model::event::{Event, Protocol, Revenue, Utm};

use super::*;

/// 2024-03-01T12:59:59Z in µs.
const T: i64 = 1_709_297_999_000_000;

fn full_event(i: u64) -> Event {
    Event {
        event_id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10 + u128::from(i),
        site_id: 7,
        received_at_us: T + i as i64 * 1_000_000,
        timestamp_us: T - 5_000_000 + i as i64,
        name: "Signup".into(),
        hostname: "shop.example".into(),
        path: "/café".into(),
        title: Some("Welcome".into()),
        referrer: Some("https://www.google.com/".into()),
        utm: Utm {
            source: Some("news".into()),
            medium: None,
            campaign: Some("spring".into()),
            term: None,
            content: Some("b".into()),
        },
        props: vec![
            ("plan".into(), "gold".into()),
            ("plan".into(), "again".into()),
        ],
        revenue: Some(Revenue {
            amount_minor: 1999,
            currency: "EUR".into(),
        }),
        engagement_ms: Some(1200),
        interactive: false,
        visitor_id: u64::MAX - i,
        prev_visitor_id: Some(3),
        session_id: None,
        user_agent: "Mozilla/5.0".into(),
        screen: None,
        language: Some("de-DE".into()),
        country: Some("DE".into()),
        region: None,
        city: Some("Berlin".into()),
        protocol: Protocol::Ga4MeasurementProtocol,
        bot: Some("crawler".into()),
    }
}

fn archive(dir: &std::path::Path) -> Archive {
    let url = url::Url::from_directory_path(dir).unwrap();
    Archive::open(url.as_str(), &S3Settings::default()).unwrap()
}

#[test]
fn every_field_survives_a_record_batch() {
    let mut bare = Event::pageview(1, 2, 3, "/");
    bare.props.clear();
    let rows = vec![
        ArchivedEvent {
            partition: 3,
            offset: 10,
            event: full_event(0),
        },
        ArchivedEvent {
            partition: 3,
            offset: 11,
            event: bare,
        },
    ];
    let batch = schema::to_record_batch(&rows).unwrap();
    assert_eq!(schema::from_record_batch(&batch).unwrap(), rows);
}

#[tokio::test]
async fn files_are_split_by_hour_of_receipt_and_named_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    // Offset 100 is received at 12:59:59, 101 and 102 at 13:00:00 and 13:00:01.
    let rows: Vec<ArchivedEvent> = (0..3)
        .map(|i| ArchivedEvent {
            partition: 2,
            offset: 100 + i,
            event: full_event(i),
        })
        .collect();
    let written = a.write(&rows).await.unwrap();
    let names: Vec<String> = written.iter().map(|f| f.path.to_string()).collect();
    assert_eq!(
        names,
        vec![
            "events/v1/date=2024-03-01/hour=12/p0002-o00000000000000000100-00000000000000000100-t1709297994-1709297995.parquet",
            "events/v1/date=2024-03-01/hour=13/p0002-o00000000000000000101-00000000000000000102-t1709297994-1709297995.parquet",
        ]
    );
    assert!(dir.path().join(&names[0]).is_file());
    let listed = a.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].offsets, (100, 100));
    assert_eq!(listed[1].hour_us, T + 1_000_000);
    assert_eq!(a.read(&listed[1]).await.unwrap(), rows[1..].to_vec());
}

#[tokio::test]
async fn scans_select_dedupe_and_order_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let row = |partition: u32, offset: u64, site_id: u64, ts_s: i64| {
        let mut event = Event::pageview(site_id, 1, ts_s * 1_000_000, "/");
        event.received_at_us = T;
        ArchivedEvent {
            partition,
            offset,
            event,
        }
    };
    // Two overlapping writes of partition 0 (as after a crash), and partition 1.
    a.write(&[row(0, 1, 7, 1000), row(0, 2, 7, 2000)])
        .await
        .unwrap();
    a.write(&[row(0, 2, 7, 2000), row(0, 3, 8, 3000), row(0, 4, 7, 9000)])
        .await
        .unwrap();
    a.write(&[row(1, 0, 7, 1500)]).await.unwrap();
    let sel = Selection {
        sites: Some([7].into_iter().collect()),
        timestamps_us: (1_000_000_000, 5_000_000_000),
        received_us: (0, 0),
        offsets_below: [(1, 0)].into_iter().collect(),
    };
    let got: Vec<(u32, u64)> = a
        .scan(&sel)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    // Site 8's offset 3, offset 4 (outside the time window) and all of partition 1 (below
    // offset 0) are left out; offset 2 appears once.
    assert_eq!(got, vec![(0, 1), (0, 2)]);
    let by_receipt = Selection {
        timestamps_us: (0, 0),
        received_us: (T, T + 1),
        ..Selection::default()
    };
    assert_eq!(a.scan(&by_receipt).await.unwrap().len(), 5);
}

#[test]
fn locations_are_checked() {
    let err = |u: &str| {
        Archive::open(u, &S3Settings::default())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("ftp://host/x").contains("not supported"),
        "{}",
        err("ftp://host/x")
    );
    assert!(err("not a url").contains("not a URL"));
    assert!(err("s3:///x").contains("names a bucket"));
}

#[tokio::test]
async fn compaction_merges_a_closed_hour_and_keeps_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path());
    let row = |offset: u64, received: i64| {
        let mut event = Event::pageview(7, offset, received, "/");
        event.received_at_us = received;
        ArchivedEvent {
            partition: 0,
            offset,
            event,
        }
    };
    let hour = 1_709_298_000_000_000; // 2024-03-01T13:00Z
    a.write(&[row(1, hour), row(2, hour + 1)]).await.unwrap();
    a.write(&[row(2, hour + 1), row(3, hour + 2)])
        .await
        .unwrap();
    a.write(&[row(4, hour + 3)]).await.unwrap();
    a.write(&[row(5, hour + HOUR_US)]).await.unwrap();
    a.write(&[row(6, hour + HOUR_US + 1)]).await.unwrap();
    let everything = Selection {
        timestamps_us: (i64::MIN, i64::MAX),
        ..Selection::default()
    };
    let before = a.scan(&everything).await.unwrap();
    // Only the 13:00 hour is closed.
    assert_eq!(a.compact(0, hour + HOUR_US).await.unwrap(), 3);
    let files = a.list().await.unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files[0].offsets, (1, 4));
    assert_eq!(a.read(&files[0]).await.unwrap().len(), 4);
    let after = a.scan(&everything).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(a.compact(0, hour + HOUR_US).await.unwrap(), 0, "idempotent");
    assert_eq!(
        a.compact(1, i64::MAX).await.unwrap(),
        0,
        "other partitions untouched"
    );
}
