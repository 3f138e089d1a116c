//! Shared state on both backends: a page session is alive until idle or too old, ends at
//! sign-out; a sign-in in progress is taken once and only while young; a rate-limit bucket
//! empties, says how long to wait, refills, and is kept per key; a lease has one holder at a
//! time, is renewed by it and taken over once expired.

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
