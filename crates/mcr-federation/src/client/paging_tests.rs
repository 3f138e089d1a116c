//! A search's pages over real HTTP: the next page asked for while this one is read, and every
//! paging rule (page limit, a link to another server, the byte budget, the deadline, a failed
//! page) holding as the pages are asked for ahead. Against a small server of this test's own
//! that logs when each page was asked for and answered.

use super::budget::Budget;
use super::page::Seen;
use super::{Ask, HttpSource, Received, SourceConfig};
use crate::FederationConfig;
use mcr_domain::FailureReason;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server answers: `pages` pages of three Conditions, each after `latency`, padded
/// with `pad` bytes; page `fail` answers 500; page 1's next link points at `first_next`.
#[derive(Default)]
struct Server {
    pages: u32,
    latency: Duration,
    pad: usize,
    fail: Option<u32>,
    first_next: Option<String>,
    /// (page, asked at, answered at), in the order asked.
    log: Mutex<Vec<(u32, Instant, Instant)>>,
}

impl Server {
    fn asked(&self) -> Vec<u32> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _, _)| *p)
            .collect()
    }
}

/// `server` on a fresh port; its base URL.
async fn serve(server: Arc<Server>) -> url::Url {
    use axum::extract::{Query, State};
    use axum::http::{header, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/fhir/", listener.local_addr().expect("addr"));
    let me = base.clone();
    let app = axum::Router::new()
        .route(
            "/fhir/Condition",
            axum::routing::get(
                move |State(s): State<Arc<Server>>,
                      Query(q): Query<std::collections::HashMap<String, String>>| {
                    let me = me.clone();
                    async move {
                        let asked = Instant::now();
                        let n: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                        tokio::time::sleep(s.latency).await;
                        let answer = if s.fail == Some(n) {
                            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
                        } else {
                            (StatusCode::OK, page(&s, &me, n))
                        };
                        s.log.lock().unwrap().push((n, asked, Instant::now()));
                        (
                            answer.0,
                            [(header::CONTENT_TYPE, "application/fhir+json")],
                            answer.1,
                        )
                    }
                },
            ),
        )
        .with_state(server);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&base).expect("url")
}

/// Page `n` as a FHIR server writes it: `link` before `entry`.
fn page(s: &Server, base: &str, n: u32) -> String {
    let mut links =
        vec![serde_json::json!({"relation": "self", "url": format!("{base}Condition?page={n}")})];
    let next = match (&s.first_next, n) {
        (Some(other), 1) => Some(other.clone()),
        _ => (n < s.pages).then(|| format!("{base}Condition?page={}", n + 1)),
    };
    if let Some(next) = next {
        links.push(serde_json::json!({"relation": "next", "url": next}));
    }
    let entries: Vec<_> = (1..=3)
        .map(|i| {
            serde_json::json!({"resource": {
                "resourceType": "Condition",
                "id": format!("c{n}-{i}"),
                "subject": {"reference": "Patient/p1"},
                "note": [{"text": "x".repeat(s.pad)}],
            }})
        })
        .collect();
    serde_json::json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 3 * s.pages,
        "link": links,
        "entry": entries,
    })
    .to_string()
}

fn source(base: url::Url, max_pages: u32) -> HttpSource {
    HttpSource::new(
        SourceConfig {
            id: mcr_domain::SourceId::parse("acute").expect("id"),
            organisation: mcr_domain::Organisation {
                code: mcr_domain::OdsCode::parse("RWH").expect("ods"),
                name: "Acute".into(),
                kind: mcr_domain::OrgKind::AcuteTrust,
                member: true,
                suspended: false,
            },
            base_url: base,
            resource_types: vec!["Condition".into()],
            batch: false,
            kind: super::SourceKind::FhirR4,
            gp_connect: None,
            deadline_ms: None,
            feed_timeout_secs: None,
            patient_search: crate::PatientSearch::default(),
            identifier_search: crate::IdentifierSearch::default(),
        },
        reqwest::Client::new(),
        FederationConfig {
            max_pages,
            ..FederationConfig::default()
        },
    )
}

/// A view's budget: `bytes`, and a deadline `within` from now.
fn view_budget(bytes: u64, within: Duration) -> Arc<Budget> {
    let ask = Ask {
        signed: None,
        until: tokio::time::Instant::now() + within,
        deadline: within,
        other_forms: Vec::new(),
        elsewhere: Vec::new(),
    };
    Arc::new(Budget::for_view(bytes, None, &ask))
}

/// Every Condition of the search from `base`, each kept after `read` (a slow reader), with
/// when each was kept.
async fn search(
    src: &HttpSource,
    base: &url::Url,
    budget: &Arc<Budget>,
    read: Duration,
) -> Result<Vec<(String, Instant)>, FailureReason> {
    let keep = |r: Received<'_>| {
        std::thread::sleep(read);
        (
            mcr_fhir::resource_id(r.doc).unwrap_or_default().to_owned(),
            Instant::now(),
        )
    };
    let first = base.join("Condition?page=1").expect("url");
    src.search_all(first, "Condition", None, budget, &keep, Seen::default())
        .await
        .map(|(kept, _)| kept)
}

fn ids(kept: &[(String, Instant)]) -> Vec<&str> {
    kept.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_page_is_asked_for_before_this_one_is_read_one_request_at_a_time() {
    let server = Arc::new(Server {
        pages: 3,
        latency: Duration::from_millis(20),
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    let src = source(base.clone(), 10);
    let budget = Arc::new(Budget::new(1 << 20, None));
    // Reading each resource takes 40 ms: a page takes 120 ms to read.
    let kept = search(&src, &base, &budget, Duration::from_millis(40))
        .await
        .expect("searched");
    assert_eq!(
        ids(&kept),
        ["c1-1", "c1-2", "c1-3", "c2-1", "c2-2", "c2-3", "c3-1", "c3-2", "c3-3"]
    );
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
    for n in 0..2 {
        let (_, _, answered) = log[n];
        let (_, next_asked, _) = log[n + 1];
        // Page n+1 asked for only once page n was answered: one request at a time.
        assert!(
            next_asked >= answered,
            "page {} asked before page {} was answered",
            n + 2,
            n + 1
        );
        // ...and before the first of page n's resources was read.
        let first_read = kept[3 * n].1;
        assert!(
            next_asked < first_read,
            "page {} asked {:?} after page {}'s first resource was read",
            n + 2,
            next_asked.duration_since(first_read),
            n + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_at_its_page_limit_fails_saying_so_and_never_asks_past_it() {
    let server = Arc::new(Server {
        pages: 3,
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    let budget = Arc::new(Budget::new(1 << 20, None));
    let err = search(&source(base.clone(), 2), &base, &budget, Duration::ZERO)
        .await
        .expect_err("past the limit");
    assert_eq!(
        err,
        FailureReason::Malformed {
            detail: "more than 2 pages".into()
        }
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.asked(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_server_is_refused_and_never_asked() {
    let server = Arc::new(Server {
        pages: 2,
        ..Server::default()
    });
    // The same server on another port: another origin, whose asks the same log would show.
    let elsewhere = serve(Arc::clone(&server)).await;
    let base = serve(Arc::new(Server {
        pages: 2,
        first_next: Some(format!("{elsewhere}Condition?page=2")),
        ..Server::default()
    }))
    .await;
    let budget = Arc::new(Budget::new(1 << 20, None));
    let err = search(&source(base.clone(), 10), &base, &budget, Duration::ZERO)
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        FailureReason::Malformed {
            detail: "a paging link points to another server".into()
        }
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.asked(), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_byte_budget_is_cut_and_the_pages_before_it_kept() {
    let server = Arc::new(Server {
        pages: 3,
        pad: 10_000,
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    // Room for one page of three 10 kB resources, not two.
    let budget = view_budget(45_000, Duration::from_secs(30));
    let kept = search(&source(base.clone(), 10), &base, &budget, Duration::ZERO)
        .await
        .expect("partial");
    assert_eq!(ids(&kept), ["c1-1", "c1-2", "c1-3"]);
    assert_eq!(
        budget.take_cut(),
        Some(FailureReason::TooLarge {
            limit_bytes: 45_000
        })
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.asked(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_arrived_by_the_deadline_is_kept_and_the_search_marked_cut() {
    let server = Arc::new(Server {
        pages: 3,
        latency: Duration::from_millis(300),
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    // Page 1 arrives at about 300 ms, page 2 would at about 600.
    let budget = view_budget(1 << 20, Duration::from_millis(450));
    let kept = search(&source(base.clone(), 10), &base, &budget, Duration::ZERO)
        .await
        .expect("partial");
    assert_eq!(ids(&kept), ["c1-1", "c1-2", "c1-3"]);
    assert_eq!(
        budget.take_cut(),
        Some(FailureReason::Timeout { after_ms: 450 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_after_good_ones_keeps_them_in_a_view_cut_short_with_its_status() {
    let server = Arc::new(Server {
        pages: 3,
        fail: Some(2),
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    let budget = view_budget(1 << 20, Duration::from_secs(30));
    let kept = search(&source(base.clone(), 10), &base, &budget, Duration::ZERO)
        .await
        .expect("what arrived is kept");
    assert_eq!(ids(&kept), ["c1-1", "c1-2", "c1-3"]);
    assert_eq!(
        budget.take_cut(),
        Some(FailureReason::HttpStatus { status: 500 })
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.asked(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_after_good_ones_fails_a_feed_with_its_status() {
    let server = Arc::new(Server {
        pages: 3,
        fail: Some(2),
        ..Server::default()
    });
    let base = serve(Arc::clone(&server)).await;
    // A feed (the index's sync): part of it must never be taken for all of it.
    let budget = Arc::new(Budget::new(1 << 20, None));
    let err = search(&source(base.clone(), 10), &base, &budget, Duration::ZERO)
        .await
        .expect_err("failed");
    assert_eq!(err, FailureReason::HttpStatus { status: 500 });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.asked(), [1, 2]);
}
