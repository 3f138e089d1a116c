//! Backend services' shared state on both backends: a client assertion's `jti` is accepted once
//! and refused again until its `exp` (per client), then forgotten; an issued token is found by
//! its hash until it expires, and not after.

use mcr_store::Store;

async fn story(store: &dyn Store) {
    let t0 = 1_800_000_000_000_i64;
    let exp = t0 + 300_000;
    assert!(store
        .remember_assertion("epr", "j-1", exp, t0)
        .await
        .expect("remember"));
    assert!(
        !store
            .remember_assertion("epr", "j-1", exp, t0 + 1_000)
            .await
            .expect("remember"),
        "the same jti again is a replay"
    );
    assert!(
        store
            .remember_assertion("other-client", "j-1", exp, t0 + 1_000)
            .await
            .expect("remember"),
        "jti values are per client"
    );
    assert!(
        !store
            .remember_assertion("epr", "j-1", exp + 60_000, exp - 1)
            .await
            .expect("remember"),
        "a replay just before exp, with a later exp of its own, is still refused"
    );
    assert!(
        store
            .remember_assertion("epr", "j-2", exp + 300_000, exp + 1)
            .await
            .expect("remember"),
        "a new jti after another's exp"
    );

    store
        .put_system_token("hash-1", "{\"client\":\"epr\"}", t0 + 300_000, t0)
        .await
        .expect("put");
    assert_eq!(
        store
            .system_token("hash-1", t0 + 299_999)
            .await
            .expect("get"),
        Some(("{\"client\":\"epr\"}".to_owned(), t0 + 300_000))
    );
    assert_eq!(
        store
            .system_token("hash-1", t0 + 300_000)
            .await
            .expect("get"),
        None,
        "expired"
    );
    assert_eq!(store.system_token("no-such", t0).await.expect("get"), None);
    // Issuing another later forgets the expired one.
    store
        .put_system_token("hash-2", "two", t0 + 900_000, t0 + 600_000)
        .await
        .expect("put");
    assert_eq!(
        store.system_token("hash-1", t0).await.expect("get"),
        None,
        "forgotten once expired"
    );
}

#[tokio::test]
async fn backend_services_state_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}

#[tokio::test]
async fn backend_services_state_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
}
