//! The record page sent as its sources answer: the opening (whose record, who is still being
//! asked) leaves before a slow source has answered, and the whole page, once it has, says
//! everything the page says of a record.

use crate::helpers::*;
use mcr_sources::Behaviour;
use std::time::{Duration, Instant};

/// Text as the pages escape it.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('\'', "&#x27;")
}

/// How long the slow source takes; the deadline is well beyond it, so it answers in full.
const SLOW_MS: u64 = 2_500;

#[tokio::test]
async fn the_opening_leaves_before_a_slow_source_answers_and_the_close_says_it_all() {
    let t = start_with(None, 6_000).await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    let slow = t
        .demo
        .region
        .sources
        .iter()
        .find(|s| s.id.as_str() == "socialcare")
        .expect("the social care source")
        .organisation
        .name
        .clone();
    let slow = esc(&slow);
    t.demo
        .source("socialcare")
        .expect("socialcare")
        .set_behaviour(Behaviour {
            latency_ms: (SLOW_MS, SLOW_MS),
            ..Behaviour::default()
        });
    let page = t.sign_in(AE).await;

    let asked = Instant::now();
    let mut resp = get_with_cookie(
        &page.http,
        t.url(&format!("/app/patient/{nhs}")),
        &page.cookie,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut chunks: Vec<(Duration, String)> = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("a chunk") {
        chunks.push((
            asked.elapsed(),
            String::from_utf8_lossy(&chunk).into_owned(),
        ));
    }
    let html: String = chunks.iter().map(|(_, c)| c.as_str()).collect();

    // The opening: before the slow source has answered, with the patient's name from the
    // index and the organisations still being asked, and nothing of the banner yet.
    let opening_at = chunks
        .iter()
        .scan(String::new(), |so_far, (at, c)| {
            so_far.push_str(c);
            Some((*at, so_far.contains("Still asking:")))
        })
        .find(|(_, has)| *has)
        .map(|(at, _)| at)
        .expect("the page says who is still being asked");
    assert!(
        opening_at < Duration::from_millis(SLOW_MS - 500),
        "the opening arrived at {opening_at:?}, not before the slow source answered"
    );
    let opening: String = chunks
        .iter()
        .take_while(|(at, _)| *at <= opening_at)
        .map(|(_, c)| c.as_str())
        .collect();
    assert!(opening.contains("Still asking:"), "{opening}");
    assert!(opening.contains(&slow), "names the slow source: {opening}");
    assert!(opening.contains("app-record-title"), "{opening}");
    assert!(
        !opening.contains("id=\"sources\""),
        "the sources' banner waits for every source"
    );
    let ended = chunks.last().map(|(at, _)| *at).expect("chunks");
    assert!(
        ended >= Duration::from_millis(SLOW_MS),
        "the page ends once the slow source has answered: {ended:?}"
    );
    assert!(chunks.len() >= 2, "sent in parts: {}", chunks.len());

    // The whole page says what the record page says: every source in the banner, answered;
    // the summary, each section in the page's order; the end saying the record is complete.
    assert!(html.contains("id=\"sources\""), "{html}");
    assert!(html.contains("Every source answered"), "{html}");
    for s in &t.demo.region.sources {
        assert!(
            html.contains(&format!("<strong>{}</strong>", esc(&s.organisation.name)))
                || s.id.as_str() == "gp",
            "{} is not in the banner",
            s.organisation.name
        );
    }
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} is not on the page"))
    };
    let order = [
        "id=\"summary\"",
        "id=\"alerts\"",
        "id=\"legal\"",
        "id=\"allergies\"",
        "id=\"medications-current\"",
        "id=\"medications-past\"",
        "id=\"problems\"",
        "id=\"encounters\"",
        "id=\"appointments\"",
        "id=\"results\"",
        "id=\"immunisations\"",
        "id=\"procedures\"",
        "id=\"referrals\"",
        "id=\"documents\"",
        "id=\"care-team\"",
        "id=\"care\"",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{} before {}", pair[0], pair[1]);
    }
    assert!(html.contains("id=\"patient-postcode\""));
    assert!(html.contains("End of the record: every source answered"));
    assert!(html.trim_end().ends_with("</html>"), "a whole page");

    // What the slow source holds is on the page, and its items are shown once.
    assert!(
        html.matches(&format!("<span class=\"app-source\">{slow}"))
            .count()
            > 0,
        "an item from {slow}"
    );

    // Audited: the decision, before the page; what each source gave, after.
    let (status, audit) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient=Patient/{nhs}&_count=100"),
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let text = audit.to_string();
    assert!(text.contains("view-record-answered"), "{audit}");
}

#[tokio::test]
async fn a_source_past_its_deadline_is_named_as_missing_at_the_end_of_a_streamed_page() {
    let t = start_with(None, 1_500).await;
    let nhs = t.patient("all_four_sources", 0);
    t.give_permission(AE, &nhs).await;
    t.demo
        .source("socialcare")
        .expect("socialcare")
        .set_behaviour(Behaviour {
            latency_ms: (10_000, 10_000),
            ..Behaviour::default()
        });
    let page = t.sign_in(AE).await;
    let html = page.html(t.url(&format!("/app/patient/{nhs}"))).await;
    assert!(
        html.contains("Some information is missing: not every source answered in full"),
        "{html}"
    );
    assert!(html.contains("Unavailable"), "{html}");
    assert!(
        html.contains("End of the record as far as the sources answered"),
        "the last line says what is missing"
    );
    assert!(html.trim_end().ends_with("</html>"));
}
