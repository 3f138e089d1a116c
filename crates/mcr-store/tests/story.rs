//! One story, told against every backend: what the gateway keeps, written and read back.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use mcr_domain::{NhsNumber, SourceId};
use mcr_store::{
    connect, connect_and_migrate, AuditAppend, AuditFilter, AuditRow, DemographicQuery,
    IndexedPatient, LinkMethod, SourceLink, Store, StoreError, UnmatchedRecord, AUDIT_GENESIS_HASH,
};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    story(&mcr_testkit::sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_on_postgres() {
    story(&mcr_testkit::postgres_url().await).await;
}

#[tokio::test]
async fn a_url_of_no_known_kind_is_a_config_error() {
    for url in [
        "mysql://localhost/db",
        "",
        "sqlite3:x.db",
        "postgres://u@[::1/db",
        "postgres://u@host:notaport/db",
    ] {
        let err = connect(url).await.expect_err(url);
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn config_errors_do_not_echo_the_url() {
    let err = connect("postgres://user:s3cret@[::1/db")
        .await
        .expect_err("bad url");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn a_closed_postgres_port_is_unavailable_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = std::time::Instant::now();
    let err = connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_and_migrate_gives_a_ready_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = connect_and_migrate(&mcr_testkit::sqlite_url(dir.path()))
        .await
        .expect("open");
    assert_eq!(store.patient_count().await.expect("count"), 0);
}

#[tokio::test]
async fn a_relative_sqlite_url_is_a_file_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Relative to the current directory, which tests share: use a unique name and remove it.
    let name = format!("mcr-store-relative-{}.db", std::process::id());
    let abs = std::env::current_dir().expect("cwd").join(&name);
    let store = connect_and_migrate(&format!("sqlite://{name}"))
        .await
        .expect("open");
    store.ping().await.expect("ping");
    assert!(abs.is_file());
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", abs.display()));
    }
    drop(dir);
}

// ---------------------------------------------------------------------------------------------

fn nhs(n: u32) -> NhsNumber {
    // Test-range numbers (999...): the first candidate from `n` upward with a valid check digit.
    (n..)
        .find_map(|k| {
            let s = format!("999{k:06}");
            let mut first9 = [0u8; 9];
            for (d, c) in first9.iter_mut().zip(s.bytes()) {
                *d = c - b'0';
            }
            NhsNumber::from_first_nine(first9)
        })
        .expect("a valid NHS number")
}

fn source(s: &str) -> SourceId {
    SourceId::parse(s).expect("source id")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, nanos)
        .single()
        .expect("time")
}

fn patient(
    n: &NhsNumber,
    family: &str,
    given: &str,
    born: NaiveDate,
    postcode: Option<&str>,
) -> IndexedPatient {
    IndexedPatient {
        nhs_number: n.clone(),
        family: family.into(),
        given: given.into(),
        birth_date: born,
        gender: Some("female".into()),
        postcode: postcode.map(Into::into),
        address: postcode.map(|_| "4 MILL LANE".into()),
        gp_practice: Some("E82001".into()),
        // Nanoseconds: what is written must read back exactly.
        updated_at: at(0, 123_456_789),
    }
}

fn link(n: &NhsNumber, src: &str, local: &str) -> SourceLink {
    SourceLink {
        nhs_number: n.clone(),
        source: source(src),
        local_id: local.into(),
        method: LinkMethod::NhsNumber,
        family: "Family".into(),
        given: "Given".into(),
        birth_date: Some(date(1970, 1, 2)),
        postcode: None,
        linked_at: at(5, 1),
    }
}

fn chain(seq: i64, prev: &str, r: &AuditAppend) -> String {
    let mut h = DefaultHasher::new();
    (
        seq,
        prev,
        &r.at,
        &r.correlation_id,
        &r.user_id,
        &r.org_code,
        &r.patient,
    )
        .hash(&mut h);
    (&r.action, &r.outcome, &r.payload).hash(&mut h);
    format!("{:016x}", h.finish())
}

fn audit(i: i64, user: &str, org: &str, patient: Option<&NhsNumber>, outcome: &str) -> AuditAppend {
    AuditAppend {
        role_profile_id: None,
        at: at(100 + i, 999_999_999),
        correlation_id: format!("corr-{i}"),
        user_id: user.into(),
        org_code: org.into(),
        patient: patient.map(|p| p.as_str().to_owned()),
        action: "view-record".into(),
        outcome: outcome.into(),
        payload: format!("{{\"i\":{i}}}"),
    }
}

fn search(family: &str) -> DemographicQuery {
    DemographicQuery {
        family: family.into(),
        ..DemographicQuery::default()
    }
}

fn nhs_of(found: &[IndexedPatient]) -> Vec<NhsNumber> {
    found.iter().map(|p| p.nhs_number.clone()).collect()
}

async fn story(url: &str) {
    let store: Arc<dyn Store> = connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate again is a no-op");
    store.ping().await.expect("ping");
    assert!(["sqlite", "postgres"].contains(&store.backend()));
    assert_eq!(store.patient_count().await.expect("count"), 0);

    index_story(store.as_ref()).await;
    unmatched_story(store.as_ref()).await;
    watermark_story(store.as_ref()).await;
    audit_story(store.clone(), url).await;

    // A second handle on the same database sees everything (and migrating it changes nothing).
    let again = connect_and_migrate(url).await.expect("reopen");
    assert_eq!(again.patient_count().await.expect("count"), 3);
    assert_eq!(
        again.audit_rows(0, 10_000).await.expect("rows").len(),
        5 + 32 * 5
    );
}

async fn index_story(store: &dyn Store) {
    let (a, b, c, nobody) = (nhs(1), nhs(20), nhs(40), nhs(60));
    let mary = patient(
        &a,
        "O'Brien-Smith",
        "Mary Anne",
        date(1970, 1, 2),
        Some("SG1 2AB"),
    );
    let margaret = patient(
        &b,
        "OBRIEN SMITH",
        "Margaret",
        date(1970, 1, 2),
        Some("sg12ab"),
    );
    let john = patient(&c, "Jones", "John", date(1980, 5, 5), None);
    let early_mary = IndexedPatient {
        given: "Mary".into(),
        ..mary.clone()
    };
    // The same patient twice in one batch: the later one wins, as if applied in order.
    store
        .upsert_patients(&[early_mary, margaret.clone(), john.clone(), mary.clone()])
        .await
        .expect("upsert patients");
    store
        .upsert_patients(&[])
        .await
        .expect("an empty batch is fine");
    assert_eq!(store.patient_count().await.expect("count"), 3);
    assert_eq!(
        store.patient(&a).await.expect("lookup").as_ref(),
        Some(&mary)
    );
    assert_eq!(
        store.patient(&c).await.expect("lookup").as_ref(),
        Some(&john)
    );
    assert_eq!(store.patient(&nobody).await.expect("lookup"), None);

    // Replace: a move of house.
    let moved = IndexedPatient {
        postcode: Some("AL1 1AA".into()),
        updated_at: at(50, 7),
        ..mary.clone()
    };
    store
        .upsert_patients(std::slice::from_ref(&moved))
        .await
        .expect("upsert again");
    assert_eq!(
        store.patient(&a).await.expect("lookup"),
        Some(moved.clone())
    );
    // Fill gaps only: a known patient is left alone.
    store
        .insert_missing_patients(std::slice::from_ref(&moved))
        .await
        .expect("insert missing");
    assert_eq!(
        store.patient(&a).await.expect("lookup"),
        Some(moved.clone()),
        "unchanged"
    );
    store
        .upsert_patients(std::slice::from_ref(&mary))
        .await
        .expect("and back");
    let kept = IndexedPatient {
        postcode: Some("EN1 1AA".into()),
        ..mary.clone()
    };
    store
        .insert_missing_patients(std::slice::from_ref(&kept))
        .await
        .expect("insert missing");
    assert_eq!(
        store.patient(&a).await.expect("lookup"),
        Some(mary.clone()),
        "an existing patient is not replaced"
    );

    // Search: normalised family, ordered by given name.
    let found = store
        .search_patients(&search("obrien-smith"), 10)
        .await
        .expect("search");
    assert_eq!(
        nhs_of(&found),
        vec![b.clone(), a.clone()],
        "MARGARET before MARYANNE"
    );
    assert_eq!(found[1], mary);
    assert_eq!(
        nhs_of(
            &store
                .search_patients(&search("O'BRIEN SMITH"), 10)
                .await
                .expect("s")
        )
        .len(),
        2
    );
    assert_eq!(
        store
            .search_patients(&search("obrien-smith"), 1)
            .await
            .expect("s")
            .len(),
        1
    );
    assert!(
        store
            .search_patients(&search("Obrien"), 10)
            .await
            .expect("s")
            .is_empty(),
        "family is exact"
    );
    assert!(store
        .search_patients(&search("nobody"), 10)
        .await
        .expect("s")
        .is_empty());
    assert!(store
        .search_patients(&search(""), 10)
        .await
        .expect("s")
        .is_empty());
    assert!(store
        .search_patients(&search("'-"), 10)
        .await
        .expect("s")
        .is_empty());

    let given = |g: &str| DemographicQuery {
        given: Some(g.into()),
        ..search("O'Brien-Smith")
    };
    assert_eq!(
        nhs_of(&store.search_patients(&given("mar"), 10).await.expect("s")),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        nhs_of(&store.search_patients(&given("Mary"), 10).await.expect("s")),
        vec![a.clone()]
    );
    assert_eq!(
        nhs_of(
            &store
                .search_patients(&given("mary-a"), 10)
                .await
                .expect("s")
        ),
        vec![a.clone()]
    );
    assert_eq!(
        nhs_of(&store.search_patients(&given("Marg"), 10).await.expect("s")),
        vec![b.clone()]
    );
    assert!(
        store
            .search_patients(&given("Anne"), 10)
            .await
            .expect("s")
            .is_empty(),
        "given is a prefix"
    );
    assert_eq!(
        store
            .search_patients(&given(" "), 10)
            .await
            .expect("s")
            .len(),
        2,
        "blank given ignored"
    );

    let born = |d: NaiveDate| DemographicQuery {
        birth_date: Some(d),
        ..search("jones")
    };
    assert_eq!(
        nhs_of(
            &store
                .search_patients(&born(date(1980, 5, 5)), 10)
                .await
                .expect("s")
        ),
        vec![c.clone()]
    );
    assert!(store
        .search_patients(&born(date(1980, 5, 6)), 10)
        .await
        .expect("s")
        .is_empty());

    let postcode = |p: &str| DemographicQuery {
        postcode: Some(p.into()),
        ..search("obrien smith")
    };
    assert_eq!(
        store
            .search_patients(&postcode("sg1  2ab"), 10)
            .await
            .expect("s")
            .len(),
        2
    );
    assert_eq!(
        store
            .search_patients(&postcode("SG12AB"), 10)
            .await
            .expect("s")
            .len(),
        2
    );
    assert!(store
        .search_patients(&postcode("SG1 2AC"), 10)
        .await
        .expect("s")
        .is_empty());
    assert!(
        store
            .search_patients(
                &DemographicQuery {
                    postcode: Some("x".into()),
                    ..search("jones")
                },
                10
            )
            .await
            .expect("s")
            .is_empty(),
        "a patient with no postcode does not match a postcode"
    );
    let all = DemographicQuery {
        family: "o brien smith".into(),
        given: Some("MARY".into()),
        birth_date: Some(date(1970, 1, 2)),
        postcode: Some("sg1 2ab".into()),
    };
    assert_eq!(
        nhs_of(&store.search_patients(&all, 10).await.expect("s")),
        vec![a.clone()]
    );

    // Links.
    let gp_a = link(&a, "gp", "P1");
    let acute_a = SourceLink {
        method: LinkMethod::Demographics,
        postcode: Some("SG1 2AB".into()),
        ..link(&a, "acute", "H-77")
    };
    let gp_c = SourceLink {
        birth_date: None,
        ..link(&c, "gp", "P3")
    };
    let stale = SourceLink {
        local_id: "P1".into(),
        family: "Old".into(),
        ..link(&c, "gp", "P1")
    };
    store
        .upsert_links(&[stale, gp_c.clone(), acute_a.clone(), gp_a.clone()])
        .await
        .expect("links");
    store.upsert_links(&[]).await.expect("empty batch");
    assert_eq!(
        store.links(&a).await.expect("links"),
        vec![acute_a.clone(), gp_a.clone()],
        "ordered by source"
    );
    assert_eq!(store.links(&c).await.expect("links"), vec![gp_c.clone()]);
    assert!(store.links(&nobody).await.expect("links").is_empty());
    assert_eq!(
        store.link_for_local(&source("gp"), "P1").await.expect("l"),
        Some(gp_a.clone())
    );
    assert_eq!(
        store.link_for_local(&source("gp"), "P9").await.expect("l"),
        None
    );
    assert_eq!(
        store
            .link_for_local(&source("acute"), "P1")
            .await
            .expect("l"),
        None
    );

    // A source re-points its local record at another patient.
    let repointed = SourceLink {
        linked_at: at(60, 0),
        ..link(&b, "acute", "H-77")
    };
    store
        .upsert_links(std::slice::from_ref(&repointed))
        .await
        .expect("relink");
    assert_eq!(store.links(&a).await.expect("links"), vec![gp_a]);
    assert_eq!(store.links(&b).await.expect("links"), vec![repointed]);
}

async fn unmatched_story(store: &dyn Store) {
    let record = |src: &str, local: &str, reason: &str, n: u32| UnmatchedRecord {
        source: source(src),
        local_id: local.into(),
        reason: reason.into(),
        candidates: n,
        seen_at: at(70, 42),
    };
    assert!(store.unmatched(None).await.expect("u").is_empty());
    store
        .record_unmatched(&record("gp", "X1", "no-match", 0))
        .await
        .expect("record");
    store
        .record_unmatched(&record("acute", "Y1", "ambiguous", 2))
        .await
        .expect("record");
    store
        .record_unmatched(&record("gp", "X2", "no-match", 0))
        .await
        .expect("record");
    // Seen again: replaced, not duplicated.
    store
        .record_unmatched(&record("gp", "X1", "ambiguous", 3))
        .await
        .expect("record");
    assert_eq!(
        store.unmatched(None).await.expect("u"),
        vec![
            record("acute", "Y1", "ambiguous", 2),
            record("gp", "X1", "ambiguous", 3),
            record("gp", "X2", "no-match", 0)
        ]
    );
    assert_eq!(
        store.unmatched(Some(&source("gp"))).await.expect("u"),
        vec![
            record("gp", "X1", "ambiguous", 3),
            record("gp", "X2", "no-match", 0)
        ]
    );
    assert!(store
        .unmatched(Some(&source("social")))
        .await
        .expect("u")
        .is_empty());
    store
        .clear_unmatched(&source("gp"), "X1")
        .await
        .expect("clear");
    store
        .clear_unmatched(&source("gp"), "never-there")
        .await
        .expect("clearing nothing is fine");
    assert_eq!(
        store.unmatched(Some(&source("gp"))).await.expect("u"),
        vec![record("gp", "X2", "no-match", 0)]
    );
}

async fn watermark_story(store: &dyn Store) {
    let gp = source("gp");
    assert_eq!(store.sync_watermark(&gp).await.expect("w"), None);
    store
        .set_sync_watermark(&gp, "2024-01-01T00:00:00Z")
        .await
        .expect("set");
    store
        .set_sync_watermark(&source("acute"), "2023-06-01T00:00:00Z")
        .await
        .expect("set");
    assert_eq!(
        store.sync_watermark(&gp).await.expect("w").as_deref(),
        Some("2024-01-01T00:00:00Z")
    );
    store
        .set_sync_watermark(&gp, "2024-02-01T00:00:00.5+00:00")
        .await
        .expect("move on");
    assert_eq!(
        store.sync_watermark(&gp).await.expect("w").as_deref(),
        Some("2024-02-01T00:00:00.5+00:00")
    );
    assert_eq!(
        store.sync_watermark(&source("social")).await.expect("w"),
        None
    );
}

async fn audit_story(store: Arc<dyn Store>, url: &str) {
    let (a, b) = (nhs(1), nhs(20));
    assert!(store.audit_rows(0, 100).await.expect("rows").is_empty());
    let first = audit(0, "u1", "RWR", Some(&a), "permit");
    let row = store.append_audit(&first, &chain).await.expect("append");
    assert_eq!(row.seq, 1);
    assert_eq!(row.prev_hash, AUDIT_GENESIS_HASH);
    assert_eq!(row.hash, chain(1, AUDIT_GENESIS_HASH, &first));
    assert_eq!(row.record, first);
    let seeded = [
        audit(1, "u2", "RWR", Some(&b), "deny"),
        audit(2, "u1", "E82001", Some(&a), "permit"),
        audit(3, "u3", "E82001", None, "error"),
        audit(4, "u1", "RWR", Some(&a), "needs-permission"),
    ];
    let mut prev = row;
    for record in &seeded {
        let row = store.append_audit(record, &chain).await.expect("append");
        assert_eq!((row.seq, &row.prev_hash), (prev.seq + 1, &prev.hash));
        prev = row;
    }

    // 32 appenders at once, five records each, half of them through a second handle on the
    // same database (as a second process or gateway instance would write): one chain, no gap,
    // no duplicate.
    let other = connect_and_migrate(url).await.expect("second handle");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let store = if t % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            for k in 0..5 {
                let record = audit(
                    1000 + t * 5 + k,
                    &format!("busy-{t}"),
                    "RWR",
                    None,
                    "permit",
                );
                store
                    .append_audit(&record, &chain)
                    .await
                    .expect("concurrent append");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("appender task");
    }
    let total = 5 + 32 * 5;
    let mut rows: Vec<AuditRow> = Vec::new();
    loop {
        let after = rows.last().map_or(0, |r| r.seq);
        let page = store.audit_rows(after, 37).await.expect("page");
        if page.is_empty() {
            break;
        }
        rows.extend(page);
    }
    assert_eq!(rows.len(), total);
    let mut prev_hash = AUDIT_GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i64::try_from(i).expect("small") + 1, "contiguous");
        assert_eq!(row.prev_hash, prev_hash, "chained at {}", row.seq);
        assert_eq!(
            row.hash,
            chain(row.seq, &row.prev_hash, &row.record),
            "hash at {}",
            row.seq
        );
        prev_hash = row.hash.clone();
    }
    assert_eq!(rows[0].record, first, "read back exactly");
    assert_eq!(&rows[1].record, &seeded[0]);
    assert_eq!(
        store
            .audit_rows(total as i64 - 2, 10)
            .await
            .expect("tail")
            .len(),
        2
    );
    assert_eq!(store.audit_rows(0, 3).await.expect("head").len(), 3);

    // Search, newest first.
    let seqs = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    let find = |f: AuditFilter| {
        let store = store.clone();
        async move { seqs(store.search_audit(&f).await.expect("search")) }
    };
    assert_eq!(
        find(AuditFilter {
            patient: Some(a.as_str().into()),
            ..AuditFilter::default()
        })
        .await,
        vec![5, 3, 1]
    );
    assert_eq!(
        find(AuditFilter {
            user_id: Some("u1".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![5, 3, 1]
    );
    assert_eq!(
        find(AuditFilter {
            org_code: Some("E82001".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![4, 3]
    );
    assert_eq!(
        find(AuditFilter {
            outcome: Some("deny".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        find(AuditFilter {
            user_id: Some("u1".into()),
            org_code: Some("RWR".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![5, 1]
    );
    // Time: `at` of record i is 100 + i seconds (plus 0.999999999 s).
    let window = AuditFilter {
        from: Some(at(101, 0)),
        to: Some(at(103, 999_999_999)),
        ..AuditFilter::default()
    };
    assert_eq!(find(window).await, vec![4, 3, 2]);
    let before = AuditFilter {
        to: Some(at(100, 999_999_998)),
        ..AuditFilter::default()
    };
    assert!(
        find(before).await.is_empty(),
        "`to` is inclusive to the nanosecond, and no more"
    );
    assert_eq!(
        find(AuditFilter {
            to: Some(at(100, 999_999_999)),
            ..AuditFilter::default()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        find(AuditFilter {
            from: Some(at(100, 0) + Duration::days(1)),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        find(AuditFilter {
            limit: 3,
            ..AuditFilter::default()
        })
        .await,
        vec![165, 164, 163]
    );
    assert_eq!(
        find(AuditFilter::default()).await.len(),
        100,
        "no limit given: one default page"
    );
    assert!(find(AuditFilter {
        user_id: Some("nobody".into()),
        ..AuditFilter::default()
    })
    .await
    .is_empty());
}
