//! The watch's counters on both backends: distinct patients per user in a moving window, a
//! patient above the limit refused and not counted; a flag claimed once per window, the ones
//! held back handed to the next; a store opened again (a restart) remembers; old counts are
//! forgotten. On PostgreSQL, two handles (two gateways) counting one user at once never let
//! more patients through than the limit.

use mcr_store::{Store, WatchCount};
use std::sync::Arc;

const MIN: i64 = 60_000;
const T0: i64 = 1_800_000_000_000;

fn t(min: i64) -> i64 {
    T0 + min * MIN
}

async fn count(store: &dyn Store, user: &str, patient: &str, min: i64, limit: u64) -> WatchCount {
    store
        .count_watch_view(user, patient, t(min), t(min) - 60 * MIN, limit)
        .await
        .expect("count")
}

async fn story(store: &dyn Store) {
    // (minute, patient, distinct, refused): the same cases as the in-memory counters'.
    let cases = [
        (0, "a", 1, false),
        (1, "b", 2, false),
        (2, "a", 2, false),
        (3, "c", 3, false),
        (4, "d", 4, true),
        // a was seen again at 2, so at 61 only b has left the window.
        (61, "d", 3, false),
        (62, "e", 3, false),
        (62, "f", 4, true),
        (200, "e", 1, false),
    ];
    for (min, p, distinct, refused) in cases {
        let got = count(store, "u", p, min, 3).await;
        assert_eq!(
            (got.distinct, got.refused),
            (distinct, refused),
            "minute {min}, patient {p}"
        );
    }
    let first = count(store, "v", "x", 0, 3).await;
    assert_eq!(first.oldest_ms, Some(t(0)));
    let refused = {
        for p in ["y", "z"] {
            count(store, "v", p, 10, 3).await;
        }
        count(store, "v", "w", 20, 3).await
    };
    assert!(refused.refused);
    assert_eq!(
        refused.oldest_ms,
        Some(t(0)),
        "a refusal says when the oldest view leaves the window"
    );

    // Flags: the first in a window is written; the ones after it are held back and counted,
    // and the first written after the window says how many.
    let claim = |rule: &'static str, patient: &'static str, min: i64| async move {
        store
            .claim_watch_flag("u", rule, patient, t(min), t(min) - 60 * MIN)
            .await
            .expect("claim")
    };
    let claim_as = |user: &'static str, min: i64| async move {
        store
            .claim_watch_flag(user, "many-patients", "", t(min), t(min) - 60 * MIN)
            .await
            .expect("claim")
    };
    assert_eq!(claim("many-patients", "", 0).await, Some(0));
    assert_eq!(claim("many-patients", "", 0).await, None, "same moment");
    assert_eq!(claim("many-patients", "", 30).await, None);
    assert_eq!(
        claim("same-family-name", "p1", 30).await,
        Some(0),
        "per patient"
    );
    assert_eq!(claim("same-family-name", "p2", 30).await, Some(0));
    assert_eq!(claim("many-patients", "", 59).await, None);
    assert_eq!(
        claim("many-patients", "", 60).await,
        Some(3),
        "three held back"
    );
    assert_eq!(claim("many-patients", "", 61).await, None);
    assert_eq!(claim("many-patients", "", 200).await, Some(1));

    // Forgetting: views at or before the time, and flags with none held back since.
    assert!(store.forget_watch(t(500)).await.expect("forget") > 0);
    assert_eq!(count(store, "u", "e", 501, 3).await.distinct, 1);
    assert_eq!(claim("many-patients", "", 501).await, Some(0), "forgotten");

    // Views written behind (a gateway counting in memory): the later time is kept, and a
    // gateway starting up reads back the window's views.
    let view = |patient: &str, min: i64| mcr_store::WatchView {
        user_id: "behind".into(),
        patient: patient.into(),
        seen_ms: t(min),
    };
    store
        .record_watch_views(&[view("b1", 600), view("b2", 610), view("b1", 590)])
        .await
        .expect("record");
    store
        .record_watch_views(&[view("b2", 605), view("b3", 540)])
        .await
        .expect("record again");
    let mut back: Vec<_> = store
        .watch_views_since(t(550))
        .await
        .expect("read back")
        .into_iter()
        .filter(|v| v.user_id == "behind")
        .collect();
    back.sort_by(|a, b| a.patient.cmp(&b.patient));
    assert_eq!(back, vec![view("b1", 600), view("b2", 610)], "latest kept, old left out");
    assert_eq!(
        count(store, "behind", "b4", 620, 3).await.distinct,
        3,
        "counted with what was written behind"
    );
    let flag = |last: i64, held: i64| mcr_store::WatchFlag {
        user_id: "behind".into(),
        rule: "many-patients".into(),
        patient: String::new(),
        last_ms: t(last),
        held,
    };
    store
        .record_watch_flags(&[flag(600, 0), flag(600, 4)])
        .await
        .expect("record flags");
    let flags = store.watch_flags_since(t(550)).await.expect("read flags");
    assert!(flags.contains(&flag(600, 4)), "the last state written: {flags:?}");
    assert_eq!(
        claim_as("behind", 630).await,
        None,
        "the store's own claim sees the written-behind flag"
    );
}

#[tokio::test]
async fn watch_counts_on_sqlite_and_a_reopened_store_remembers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;
    for p in ["r1", "r2"] {
        count(&*store, "restart", p, 0, 3).await;
    }
    drop(store);
    let store = mcr_store::connect_and_migrate(&url)
        .await
        .expect("open again");
    assert_eq!(count(&*store, "restart", "r3", 1, 3).await.distinct, 3);
    assert!(count(&*store, "restart", "r4", 1, 3).await.refused);
}

#[tokio::test]
async fn watch_counts_on_postgres_shared_by_two_gateways() {
    let url = mcr_testkit::postgres_url().await;
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    story(&*store).await;

    // Two gateways' handles, one user opening 40 patients at once through both, limit 10.
    let other = mcr_store::connect_and_migrate(&url).await.expect("open");
    let handles: [Arc<dyn Store>; 2] = [store, other];
    let views: Vec<_> = (0..40)
        .map(|i| {
            let store = handles[i % 2].clone();
            tokio::spawn(async move {
                let p = format!("patient-{i}");
                count(&*store, "busy", &p, 5, 10).await
            })
        })
        .collect();
    let mut allowed = 0;
    for v in views {
        if !v.await.expect("task").refused {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "exactly the limit, counted across both");
    let after = count(&*handles[1], "busy", "patient-new", 6, 10).await;
    assert_eq!((after.distinct, after.refused), (11, true));
}
