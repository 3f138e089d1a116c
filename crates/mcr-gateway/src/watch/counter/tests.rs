//! The counters in memory, written behind on SQLite and remembered after a restart.

use super::*;
use chrono::TimeZone;

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 3, 10, 0, 0)
        .single()
        .expect("time")
        + Duration::minutes(min)
}

#[tokio::test]
async fn distinct_patients_in_a_moving_window() {
    let c = MemoryCounters::default();
    let w = Duration::minutes(60);
    // (minute, patient, distinct, refused)
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
        let got = c.count_view("u", p, t(min), w, 3).await.expect("memory");
        assert_eq!(
            (got.distinct, got.refused),
            (distinct, refused),
            "minute {min}, patient {p}"
        );
    }
    let first = c.count_view("v", "x", t(0), w, 3).await.expect("memory");
    assert_eq!(first.oldest, Some(t(0)));
}

/// How many times a test looks again, 10 ms apart, for what the writer writes behind: up to
/// 30 s, so a machine busy with other work does not fail a test that is only waiting.
const LOOKS: usize = 3_000;

/// The store's views for `user`, once the writer has written `n` of them.
async fn written(store: &dyn mcr_store::Store, user: &str, n: usize) -> Vec<String> {
    for _ in 0..LOOKS {
        let mut seen: Vec<_> = store
            .watch_views_since(0)
            .await
            .expect("read")
            .into_iter()
            .filter(|v| v.user_id == user)
            .map(|v| v.patient)
            .collect();
        if seen.len() >= n {
            seen.sort();
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the writer did not write {n} views for {user} within 5 s");
}

#[tokio::test]
async fn written_behind_on_sqlite_and_remembered_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = mcr_store::connect_and_migrate(&url).await.expect("open");
    let counters = counters_for(store.clone());
    let w = Duration::minutes(60);
    for (min, p) in [(0, "a"), (1, "b"), (2, "a")] {
        let got = counters
            .count_view("u", p, t(min), w, 3)
            .await
            .expect("count");
        assert!(!got.refused);
    }
    assert_eq!(written(&*store, "u", 2).await, ["a", "b"]);
    drop(counters);
    drop(store);

    // A restart: a new store handle and counters start from what was written.
    let store = mcr_store::connect_and_migrate(&url)
        .await
        .expect("open again");
    let counters = counters_for(store.clone());
    let third = counters
        .count_view("u", "c", t(3), w, 3)
        .await
        .expect("count");
    assert_eq!(
        (third.distinct, third.oldest),
        (3, Some(t(1))),
        "b is the oldest"
    );
    let fourth = counters
        .count_view("u", "d", t(4), w, 3)
        .await
        .expect("count");
    assert!(fourth.refused, "the limit holds across the restart");
    assert_eq!(
        written(&*store, "u", 3).await,
        ["a", "b", "c"],
        "refused: not written"
    );

    // Flags: claimed in memory, their state written behind and read back after a restart.
    let key = FlagKey {
        user_id: "u".into(),
        rule: WatchRule::ManyPatients,
        patient: None,
    };
    let claims = [
        counters.claim_flag(&key, t(5), w).await.expect("claim"),
        counters.claim_flag(&key, t(6), w).await.expect("claim"),
        counters.claim_flag(&key, t(7), w).await.expect("claim"),
    ];
    assert_eq!(
        claims,
        [
            FlagClaim::Write {
                suppressed_before: 0
            },
            FlagClaim::Suppress,
            FlagClaim::Suppress
        ]
    );
    for _ in 0..LOOKS {
        let flags = store.watch_flags_since(0).await.expect("read flags");
        if flags.iter().any(|f| f.user_id == "u" && f.held == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let again = counters_for(store.clone());
    assert_eq!(
        again.claim_flag(&key, t(30), w).await.expect("claim"),
        FlagClaim::Suppress,
        "still within the window after a restart"
    );
    assert_eq!(
        again.claim_flag(&key, t(66), w).await.expect("claim"),
        FlagClaim::Write {
            suppressed_before: 3
        },
        "the next flag written says how many were held back, across the restart"
    );

    // A view out of the window when the gateway started is not loaded.
    let late = counters_for(store.clone());
    let got = late.count_view("u", "e", t(62), w, 3).await.expect("count");
    assert_eq!(
        got.distinct, 2,
        "b (minute 1) and a (minute 2) have left; c and e remain"
    );
}

#[test]
fn a_batch_folds_to_each_views_latest_time_and_each_flags_last_state() {
    let view = |u: &str, p: &str, ms| {
        Behind::View(mcr_store::WatchView {
            user_id: u.into(),
            patient: p.into(),
            seen_ms: ms,
        })
    };
    let flag = |u: &str, held| {
        Behind::Flag(mcr_store::WatchFlag {
            user_id: u.into(),
            rule: "many-patients".into(),
            patient: String::new(),
            last_ms: 5,
            held,
        })
    };
    let (mut views, flags) = fold(
        [
            view("u", "a", 10),
            flag("u", 1),
            view("u", "a", 30),
            view("u", "b", 20),
            view("u", "a", 25),
            flag("v", 1),
            flag("u", 2),
        ]
        .into_iter(),
    );
    views.sort_by(|x, y| x.patient.cmp(&y.patient));
    let times: Vec<_> = views
        .iter()
        .map(|v| (v.patient.as_str(), v.seen_ms))
        .collect();
    assert_eq!(times, [("a", 30), ("b", 20)]);
    let held: Vec<_> = flags.iter().map(|f| (f.user_id.as_str(), f.held)).collect();
    assert_eq!(held, [("u", 2), ("v", 1)], "first-seen order, last state");
}

#[tokio::test]
async fn the_writer_takes_everything_waiting_not_a_fixed_batch() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..6_000 {
        tx.send(Behind::View(mcr_store::WatchView {
            user_id: "u".into(),
            patient: format!("p{i}"),
            seen_ms: i,
        }))
        .expect("queued");
    }
    let mut batch = Vec::new();
    assert!(take_all(&mut rx, &mut batch).await);
    assert_eq!(batch.len(), 6_000, "one pass takes the whole queue");
    drop(tx);
    batch.clear();
    assert!(!take_all(&mut rx, &mut batch).await, "ends when dropped");
}

#[tokio::test]
async fn idle_users_are_swept() {
    let c = MemoryCounters::default();
    let w = Duration::minutes(60);
    for i in 0..SWEEP_EVERY {
        c.count_view(&format!("u{i}"), "p", t(0), w, 10)
            .await
            .expect("memory");
    }
    assert_eq!(c.users_held(), usize::try_from(SWEEP_EVERY).expect("fits"));
    for _ in 0..SWEEP_EVERY {
        c.count_view("late", "p", t(120), w, 10)
            .await
            .expect("memory");
    }
    assert_eq!(c.users_held(), 1, "only the active user is kept");
}
