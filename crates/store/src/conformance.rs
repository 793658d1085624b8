//! The conformance suite every [`Store`] runs. Expected values follow from the contract in
//! the crate docs, not from any implementation.

use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};

use crate::{
    ApiKey, CellRange, Checkpoint, Generation, GenerationState, NewSite, ServedSpan, Store,
    StoreError, VisitWrite, WriteBatch,
};

fn key(site_id: u64, dimension: Dimension, bucket: i64, value: &str) -> CellKey {
    CellKey {
        site_id,
        generation: 1,
        granularity: Granularity::Hour,
        dimension,
        bucket,
        value: value.into(),
    }
}

fn cell(visits: i64, visitors: &[u64]) -> CellValue {
    let mut c = CellValue {
        visits,
        pageviews: visits * 2,
        ..Default::default()
    };
    visitors.iter().for_each(|v| c.visitors.insert(*v));
    c
}

/// Runs every scenario against a fresh, empty store.
pub async fn run_all<S: Store>(store: &S) {
    batches_write_cells_visits_and_checkpoints(store).await;
    scans_are_bounded_and_ordered(store).await;
    sites_are_unique_by_domain_and_measurement_id(store).await;
    keys_and_salts(store).await;
    generations_and_served_spans(store).await;
}

/// A batch's cells, visit states and checkpoint are all visible after it returns; a later
/// batch overwrites, and a zero cell or a `None` visit deletes.
pub async fn batches_write_cells_visits_and_checkpoints<S: Store>(store: &S) {
    let k = key(101, Dimension::Page, 3600, "/a");
    let batch = WriteBatch {
        consumer: "processor".into(),
        cells: vec![(k.clone(), cell(2, &[1, 2]))],
        visits: vec![VisitWrite {
            partition: 3,
            site_id: 101,
            visitor_id: 7,
            state: Some(b"v1".to_vec()),
        }],
        checkpoints: vec![Checkpoint {
            partition: 3,
            offset: 42,
            complete_through_us: 1000,
        }],
        mirrors: Vec::new(),
    };
    store
        .write_batch(std::sync::Arc::new(batch))
        .await
        .expect("write");
    let got = store
        .get_cells(&[k.clone(), key(101, Dimension::Page, 3600, "/none")])
        .await
        .expect("get");
    assert_eq!(got, vec![Some(cell(2, &[1, 2])), None]);
    assert_eq!(
        store.checkpoint("processor", 3).await.expect("cp"),
        Some(Checkpoint {
            partition: 3,
            offset: 42,
            complete_through_us: 1000
        })
    );
    assert_eq!(store.checkpoint("processor", 4).await.expect("cp"), None);
    assert_eq!(
        store.load_visits(3).await.expect("visits"),
        vec![b"v1".to_vec()]
    );
    assert!(store.load_visits(4).await.expect("visits").is_empty());

    let batch = WriteBatch {
        consumer: "processor".into(),
        cells: vec![(k.clone(), CellValue::default())],
        visits: vec![VisitWrite {
            partition: 3,
            site_id: 101,
            visitor_id: 7,
            state: None,
        }],
        checkpoints: vec![Checkpoint {
            partition: 3,
            offset: 50,
            complete_through_us: 2000,
        }],
        mirrors: Vec::new(),
    };
    store
        .write_batch(std::sync::Arc::new(batch))
        .await
        .expect("write");
    assert_eq!(store.get_cells(&[k]).await.expect("get"), vec![None]);
    assert!(store.load_visits(3).await.expect("visits").is_empty());
    assert_eq!(
        store
            .checkpoint("processor", 3)
            .await
            .expect("cp")
            .map(|c| c.offset),
        Some(50)
    );
}

/// A scan returns exactly the cells of its site, generation, granularity and dimension with
/// buckets in `from..=to`, ordered by bucket then value.
pub async fn scans_are_bounded_and_ordered<S: Store>(store: &S) {
    let cells = vec![
        (key(202, Dimension::Page, -3600, "/x"), cell(1, &[1])),
        (key(202, Dimension::Page, 0, "/b"), cell(1, &[1])),
        (key(202, Dimension::Page, 0, "/a"), cell(1, &[2])),
        (key(202, Dimension::Page, 7200, "/c"), cell(1, &[3])),
        (key(202, Dimension::Source, 0, "google.com"), cell(1, &[3])),
        (key(203, Dimension::Page, 0, "/other-site"), cell(1, &[3])),
        (
            CellKey {
                generation: 2,
                ..key(202, Dimension::Page, 0, "/gen2")
            },
            cell(1, &[3]),
        ),
        (
            CellKey {
                site_id: 202,
                generation: 1,
                granularity: Granularity::Day,
                dimension: Dimension::Total,
                bucket: 19_000,
                value: String::new(),
            },
            cell(1, &[3]),
        ),
        (
            CellKey {
                site_id: 202,
                generation: 1,
                granularity: Granularity::Day,
                dimension: Dimension::Total,
                bucket: 18_990,
                value: String::new(),
            },
            cell(1, &[3]),
        ),
    ];
    store
        .write_batch(std::sync::Arc::new(WriteBatch {
            consumer: "processor".into(),
            cells,
            ..Default::default()
        }))
        .await
        .expect("write");
    let range = CellRange {
        site_id: 202,
        generation: 1,
        granularity: Granularity::Hour,
        dimension: Dimension::Page,
        from: -3600,
        to: 3600,
    };
    let got: Vec<(i64, String)> = store
        .scan_cells(&range)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| (k.bucket, k.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (-3600, "/x".to_string()),
            (0, "/a".to_string()),
            (0, "/b".to_string())
        ]
    );
    let empty = CellRange {
        from: 10,
        to: 5,
        ..range
    };
    assert!(store.scan_cells(&empty).await.expect("scan").is_empty());
    // Bucket 0 of site 202's hourly pages holds /a and /b (not /gen2, another generation);
    // bucket 7200 holds /c; bucket 3600 nothing.
    let bucket = |b: i64| CellRange {
        from: b,
        to: b,
        ..range.clone()
    };
    assert_eq!(
        store
            .count_cells(&[bucket(0), bucket(7200), bucket(3600), empty.clone()], 100)
            .await
            .expect("count"),
        vec![2, 1, 0, 0]
    );
    assert_eq!(
        store
            .count_cells(std::slice::from_ref(&range), 2)
            .await
            .expect("count"),
        vec![2],
        "counting stops at the limit"
    );
    assert_eq!(
        store.first_day(202, 1).await.expect("first day"),
        Some(18_990)
    );
    assert_eq!(store.first_day(203, 1).await.expect("first day"), None);
}

/// Site ids are allocated; domains and measurement ids are unique; updates change only the
/// mutable fields.
pub async fn sites_are_unique_by_domain_and_measurement_id<S: Store>(store: &S) {
    let new = |domain: &str, mid: &str| NewSite {
        domain: domain.into(),
        timezone: "Europe/Berlin".into(),
        currency: "EUR".into(),
        measurement_id: mid.into(),
        api_secret_hash: "h".into(),
        created_at_us: 5,
    };
    let a = store
        .create_site(new("a.example", "G-AAAAAAAAAA"))
        .await
        .expect("create");
    let b = store
        .create_site(new("b.example", "G-BBBBBBBBBB"))
        .await
        .expect("create");
    assert_ne!(a.id, b.id);
    assert!(matches!(
        store.create_site(new("a.example", "G-CCCCCCCCCC")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_site(new("c.example", "G-AAAAAAAAAA")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .site_by_domain("b.example")
            .await
            .expect("get")
            .map(|s| s.id),
        Some(b.id)
    );
    assert_eq!(
        store
            .site_by_measurement_id("G-AAAAAAAAAA")
            .await
            .expect("get")
            .map(|s| s.id),
        Some(a.id)
    );
    assert_eq!(
        store.site_by_domain("nope.example").await.expect("get"),
        None
    );
    let mut changed = a.clone();
    changed.timezone = "Asia/Kolkata".into();
    changed.domain = "ignored.example".into();
    changed.keep_query_params = vec!["q".into()];
    changed.hash_routing = true;
    store.update_site(&changed).await.expect("update");
    let got = store.site(a.id).await.expect("get").expect("exists");
    assert_eq!(
        (got.timezone.as_str(), got.domain.as_str()),
        ("Asia/Kolkata", "a.example")
    );
    assert_eq!(
        (got.keep_query_params.clone(), got.hash_routing),
        (vec!["q".to_string()], true),
        "path rules are mutable"
    );
    assert!(
        a.keep_query_params.is_empty() && !a.hash_routing,
        "a new site keeps no query parameters and does not route by hash"
    );
    let listed: Vec<String> = store
        .list_sites()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.domain)
        .collect();
    assert!(listed.contains(&"a.example".to_string()) && listed.contains(&"b.example".to_string()));
    let ghost = crate::Site { id: 999_999, ..got };
    assert!(matches!(
        store.update_site(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Keys are found by hash; a salt, once created, is returned to every later caller.
pub async fn keys_and_salts<S: Store>(store: &S) {
    let k = ApiKey {
        hash: "abc123".into(),
        prefix: "ff_ab".into(),
        site_ids: vec![1, 2],
        created_at_us: 9,
    };
    store.put_key(&k).await.expect("put");
    assert_eq!(store.key_by_hash("abc123").await.expect("get"), Some(k));
    assert_eq!(store.key_by_hash("zzz").await.expect("get"), None);
    let first = store.salt("day:2024-01-01", [1; 32]).await.expect("salt");
    let second = store.salt("day:2024-01-01", [2; 32]).await.expect("salt");
    assert_eq!((first, second), ([1; 32], [1; 32]));
    assert!(store
        .salt_names()
        .await
        .expect("names")
        .contains(&"day:2024-01-01".to_string()));
    store.delete_salt("day:2024-01-01").await.expect("delete");
    assert!(!store
        .salt_names()
        .await
        .expect("names")
        .contains(&"day:2024-01-01".to_string()));
}

/// Generation ids are never handed out twice; records are kept per site; served spans keep a
/// history that `pop_served` walks back.
pub async fn generations_and_served_spans<S: Store>(store: &S) {
    let a = store.allocate_generation().await.expect("allocate");
    let b = store.allocate_generation().await.expect("allocate");
    assert!(a >= 2 && b > a, "ids {a}, {b}");
    let g = |site_id: u64, id: u32| Generation {
        id,
        site_id,
        from_day: 19_000,
        to_day: 19_030,
        state: GenerationState::Building,
        partition: 1,
        cut_offset: 77,
        created_at_us: 5,
        events: 0,
    };
    let mirror = |partition: u32, generation: u32| crate::Mirror {
        partition,
        generation,
        site_id: 404,
        from_day: 19_000,
        to_day: 19_030,
        cut_offset: 77,
    };
    store
        .write_batch(std::sync::Arc::new(WriteBatch {
            consumer: "processor".into(),
            mirrors: vec![mirror(6, a), mirror(6, b), mirror(7, a)],
            ..Default::default()
        }))
        .await
        .expect("write");
    assert_eq!(
        store.mirrors(6).await.expect("mirrors"),
        vec![mirror(6, a), mirror(6, b)]
    );
    assert_eq!(store.mirrors(8).await.expect("mirrors"), vec![]);
    store.put_generation(&g(404, a)).await.expect("put");
    store.put_generation(&g(405, b)).await.expect("put");
    let ready = Generation {
        state: GenerationState::Ready,
        events: 12,
        ..g(404, a)
    };
    store.put_generation(&ready).await.expect("put");
    assert_eq!(
        store.generations(Some(404)).await.expect("list"),
        vec![ready.clone()]
    );
    let all = store.generations(None).await.expect("list");
    assert!(all.contains(&ready) && all.contains(&g(405, b)));

    assert_eq!(store.served(404).await.expect("served"), vec![]);
    assert!(matches!(
        store.pop_served(404).await,
        Err(StoreError::NotFound(_))
    ));
    let first = vec![ServedSpan {
        from_day: 19_000,
        to_day: 19_030,
        generation: a,
    }];
    // The second switch cuts the first span in three.
    let second = vec![
        ServedSpan {
            from_day: 19_000,
            to_day: 19_009,
            generation: a,
        },
        ServedSpan {
            from_day: 19_010,
            to_day: 19_011,
            generation: b,
        },
        ServedSpan {
            from_day: 19_012,
            to_day: 19_030,
            generation: a,
        },
    ];
    assert_eq!(
        store
            .serve_span(404, 19_000, 19_030, a)
            .await
            .expect("serve"),
        first
    );
    assert_eq!(
        store
            .serve_span(404, 19_010, 19_011, b)
            .await
            .expect("serve"),
        second
    );
    assert_eq!(store.served(404).await.expect("served"), second);
    assert_eq!(store.served(405).await.expect("served"), vec![]);
    assert_eq!(store.pop_served(404).await.expect("pop"), first);
    assert_eq!(store.pop_served(404).await.expect("pop"), vec![]);
    assert_eq!(store.served(404).await.expect("served"), vec![]);
}
