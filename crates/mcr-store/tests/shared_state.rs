//! Shared state on both backends: a page session is alive until idle or too old, ends at
//! sign-out; a sign-in in progress is taken once and only while young; a rate-limit bucket
//! empties, says how long to wait, refills, and is kept per key; a lease has one holder at a
//! time, is renewed by it and taken over once expired; a one-time value is used once.

use mcr_store::{Bucket, Store};

async fn story(store: &dyn Store) {
    let (idle, max) = (30_000, 100_000);
    let t0 = 1_800_000_000_000_i64;
    store
        .put_session("h1", "{\"who\":1}", t0, idle, max)
        .await
        .expect("put");
    assert_eq!(
        store
            .touch_session("h1", t0 + 20_000, idle, max)
            .await
            .expect("touch"),
        Some("{\"who\":1}".into())
    );
    // Used at +20 s, so alive at +45 s; and again at +70 s, +95 s.
    for at in [45_000, 70_000, 95_000] {
        assert!(
            store
                .touch_session("h1", t0 + at, idle, max)
                .await
                .expect("touch")
                .is_some(),
            "alive at {at}"
        );
    }
    assert_eq!(
        store
            .touch_session("h1", t0 + 101_000, idle, max)
            .await
            .expect("touch"),
        None,
        "too old despite use"
    );
    store
        .put_session("h2", "two", t0, idle, max)
        .await
        .expect("put");
    assert_eq!(
        store
            .touch_session("h2", t0 + 31_000, idle, max)
            .await
            .expect("touch"),
        None,
        "idle too long"
    );
    store
        .put_session("h3", "three", t0, idle, max)
        .await
        .expect("put");
    assert!(store
        .touch_session("h3", t0, idle, max)
        .await
        .expect("touch")
        .is_some());
    store.end_session("h3").await.expect("end");
    assert_eq!(
        store
            .touch_session("h3", t0, idle, max)
            .await
            .expect("touch"),
        None
    );
    assert_eq!(
        store
            .touch_session("nope", t0, idle, max)
            .await
            .expect("touch"),
        None
    );

    store
        .put_login("l1", "pkce", t0, 600_000)
        .await
        .expect("login");
    assert_eq!(
        store
            .take_login("l1", t0 + 1_000, 600_000)
            .await
            .expect("take"),
        Some("pkce".into())
    );
    assert_eq!(
        store
            .take_login("l1", t0 + 1_000, 600_000)
            .await
            .expect("take"),
        None,
        "once"
    );
    store
        .put_login("l2", "late", t0, 600_000)
        .await
        .expect("login");
    assert_eq!(
        store
            .take_login("l2", t0 + 600_001, 600_000)
            .await
            .expect("take"),
        None,
        "too late"
    );

    let bucket = Bucket {
        burst: 3,
        per_minute: 60,
    };
    for _ in 0..3 {
        assert_eq!(
            store.take_token("k", bucket, t0).await.expect("take"),
            Ok(())
        );
    }
    assert_eq!(
        store.take_token("k", bucket, t0).await.expect("take"),
        Err(1)
    );
    assert_eq!(
        store.take_token("other", bucket, t0).await.expect("take"),
        Ok(()),
        "per key"
    );
    assert_eq!(
        store
            .take_token("k", bucket, t0 + 1_100)
            .await
            .expect("take"),
        Ok(())
    );
    assert_eq!(
        store
            .take_token("k", bucket, t0 + 1_100)
            .await
            .expect("take"),
        Err(1)
    );
    let slow = Bucket {
        burst: 1,
        per_minute: 2,
    };
    assert_eq!(
        store.take_token("slow", slow, t0).await.expect("take"),
        Ok(())
    );
    assert_eq!(
        store.take_token("slow", slow, t0).await.expect("take"),
        Err(30)
    );
    assert_eq!(
        store.forget_buckets(t0 + 1).await.expect("forget"),
        2,
        "k stays"
    );
    assert_eq!(
        store.take_token("slow", slow, t0).await.expect("take"),
        Ok(()),
        "forgotten is full"
    );

    // A one-time value (a SMART launch): used once, refused while that use lasts, and usable
    // again only after it has expired.
    let ttl = 60_000;
    assert!(store.use_once("launch-a", t0, ttl).await.expect("use"));
    assert!(
        !store.use_once("launch-a", t0 + 1, ttl).await.expect("use"),
        "a replay"
    );
    assert!(
        !store
            .use_once("launch-a", t0 + ttl, ttl)
            .await
            .expect("use"),
        "still held at its end"
    );
    assert!(
        store.use_once("launch-b", t0 + 1, ttl).await.expect("use"),
        "another value"
    );
    assert!(
        store
            .use_once("launch-a", t0 + ttl + 1, ttl)
            .await
            .expect("use"),
        "forgotten once expired"
    );

    // A lease: one holder at a time, renewed by it, taken over only once expired, and given
    // up only by its holder.
    let ttl = 10_000;
    assert!(store.take_lease("sync", "a", t0, ttl).await.expect("take"));
    assert!(
        !store
            .take_lease("sync", "b", t0 + 1, ttl)
            .await
            .expect("take"),
        "held by a"
    );
    assert!(
        store
            .take_lease("sync", "a", t0 + 5_000, ttl)
            .await
            .expect("take"),
        "renewed by its holder"
    );
    assert!(
        !store
            .take_lease("sync", "b", t0 + 12_000, ttl)
            .await
            .expect("take"),
        "the renewal lasts from when it was made"
    );
    assert!(
        store
            .take_lease("other", "b", t0 + 1, ttl)
            .await
            .expect("take"),
        "another lease"
    );
    assert!(
        store
            .take_lease("sync", "b", t0 + 15_001, ttl)
            .await
            .expect("take"),
        "taken over once expired"
    );
    store.release_lease("sync", "a").await.expect("release");
    assert!(
        !store
            .take_lease("sync", "a", t0 + 15_002, ttl)
            .await
            .expect("take"),
        "a cannot give up what b holds"
    );
    store.release_lease("sync", "b").await.expect("release");
    assert!(
        store
            .take_lease("sync", "a", t0 + 15_003, ttl)
            .await
            .expect("take"),
        "free once its holder gave it up"
    );
}

#[tokio::test]
async fn shared_state_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}

#[tokio::test]
async fn shared_state_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}

/// The first load of a region's index by `COPY` (PostgreSQL): what is copied reads back as
/// written, searchable by its normalised columns, awkward characters included; a second copy
/// of the same NHS number fails whole.
#[tokio::test]
async fn copy_loads_an_empty_index_on_postgres() {
    use chrono::{NaiveDate, TimeZone, Utc};
    use mcr_domain::NhsNumber;
    use mcr_store::{DemographicQuery, IndexStore, IndexedPatient};
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::PostgresStore::open(&url).await.expect("open");
    mcr_store::Store::migrate(&store).await.expect("migrate");
    let person = |nhs: &str, family: &str, given: &str| IndexedPatient {
        nhs_number: NhsNumber::parse(nhs).expect("valid"),
        family: family.into(),
        given: given.into(),
        birth_date: NaiveDate::from_ymd_opt(1950, 3, 1).expect("date"),
        gender: Some("female".into()),
        postcode: Some("ls1 4ab".into()),
        address: Some("4 MILL LANE".into()),
        gp_practice: None,
        updated_at: Utc
            .with_ymd_and_hms(2026, 12, 4, 9, 0, 0)
            .single()
            .expect("time"),
    };
    let people = vec![
        person("9434765919", "O'Brien-Smith", "Ann\tMarie"),
        person("9434765870", "Back\\slash", "Bea"),
    ];
    assert_eq!(store.copy_patients(&people).await.expect("copy"), 2);
    for p in &people {
        assert_eq!(
            store.patient(&p.nhs_number).await.expect("read").as_ref(),
            Some(p)
        );
    }
    let hits = store
        .search_patients(
            &DemographicQuery {
                family: "o'brien smith".into(),
                given: Some("ann".into()),
                birth_date: Some(NaiveDate::from_ymd_opt(1950, 3, 1).expect("date")),
                postcode: Some("LS1 4AB".into()),
            },
            20,
        )
        .await
        .expect("search");
    assert_eq!(hits, vec![people[0].clone()]);
    assert!(
        store.copy_patients(&people[..1]).await.is_err(),
        "already there"
    );
    assert_eq!(store.patient_count().await.expect("count"), 2);
}
