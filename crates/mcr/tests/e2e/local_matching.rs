//! Deciding about local identities from the matching pages over HTTP (issue 19): the demo
//! region's hospital holds two twins with no NHS number whom the GP does not hold; the demo's
//! own sync made a local identity of one and put the other in review beside it. Records staff
//! rule the pair out, link another record, and unlink it from the local identity's page; each
//! is refused to those who may not decide and without the form token, and each is in the audit
//! trail with its own action, never with an NHS number.

use crate::helpers::*;
use mcr_domain::{LocalPersonId, NhsNumber, SourceId};

fn acute() -> SourceId {
    SourceId::parse("acute").expect("test step")
}

/// Posts a local identity decision: the status and the redirect's location (or the page).
async fn decide(b: &Browser, form: Vec<(&'static str, String)>) -> (u16, String) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post_then("/app/matching/local/decide", &form).await
}

#[tokio::test]
async fn records_staff_rule_out_link_and_unlink_a_local_identitys_records_audited() {
    let t = start().await;
    let store = t.demo.gateway.gateway.store().clone();
    // The twins' pair, as the demo's sync left it.
    let pair = store
        .local_candidates()
        .await
        .expect("test step")
        .into_iter()
        .find(|c| c.family == "Okonjo-Hartley")
        .expect("the demo's twins are in review beside a local identity");
    let person: LocalPersonId = pair.person;
    let label = person.to_string();
    assert!(NhsNumber::parse(&label).is_err());
    let brother = pair.local_id.clone();
    let sister = store
        .local_person(person)
        .await
        .expect("test step")
        .expect("held")
        .origin
        .1;

    let b = sign_in(&t, "rec.obi").await;
    let (status, html) = b.get("/app/matching").await;
    assert_eq!(status, 200, "{html}");
    // The decision forms name the local identity as one, never as an NHS number.
    assert!(
        html.contains(&format!("name=\"person\" value=\"{label}\"")),
        "{html}"
    );
    assert!(!html.contains(&format!("name=\"nhs\" value=\"{label}\"")));
    assert!(html.contains(&format!("Link to local identity {label}")));

    let form = |local: &str, verdict: &'static str| {
        vec![
            ("source", "acute".to_owned()),
            ("local_id", local.to_owned()),
            ("person", label.clone()),
            ("verdict", verdict.to_owned()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| decide(&b, f);

    // Who may not decide: a clinician; a GP practice's records staff (not their record);
    // anyone without the form token.
    for user in ["ae.okafor", "rec.murphy"] {
        let other = sign_in(&t, user).await;
        let f = form(&brother, "not-a-match");
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _) = other.post("/app/matching/local/decide", &f).await;
        assert_eq!(status, 403, "{user}");
    }
    let s = t.sign_in("rec.obi").await;
    let no_token = s
        .http
        .post(t.url("/app/matching/local/decide"))
        .header("cookie", &s.cookie)
        .form(&form(&brother, "not-a-match"))
        .send()
        .await
        .expect("test step");
    assert_eq!(no_token.status().as_u16(), 403);
    assert_eq!(
        store
            .local_candidates_of(&acute(), &brother)
            .await
            .expect("test step")
            .len(),
        1,
        "nothing decided by a refused request"
    );

    // Not a match: the pair leaves the queue, and a second decision about it says why not.
    let (status, location) = post(form(&brother, "not-a-match")).await;
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/app/matching?done="), "{location}");
    let (_, html) = b.get("/app/matching").await;
    assert!(!html.contains(&brother), "{html}");
    let (status, html) = post(form(&brother, "link")).await;
    assert_eq!(status, 400);
    assert!(html.contains("not waiting for review"), "{html}");

    // Another record of hers waits beside the local identity: linked.
    let mut cousin = pair.clone();
    cousin.local_id = "H-LOCAL-SAME".into();
    cousin.given = "Louise".into();
    store
        .replace_local_candidates(&[], &[cousin])
        .await
        .expect("test step");
    let (status, _) = post(form("H-LOCAL-SAME", "link")).await;
    assert_eq!(status, 303);
    assert_eq!(
        store
            .local_link_of(&acute(), "H-LOCAL-SAME")
            .await
            .expect("test step")
            .map(|l| l.person),
        Some(person)
    );

    // The local identity's page lists its records: the one it was made from cannot be
    // unlinked; the linked one can, and then is gone.
    let page = format!("/app/matching/local/{label}");
    let (status, html) = b.get(&page).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("Local identity {label}")), "{html}");
    assert!(html.contains("Made from this record"), "{html}");
    assert!(html.contains(&sister), "{html}");
    assert!(html.contains("unlink-acute-H-LOCAL-SAME"), "{html}");
    let (status, html) = post(form(&sister, "unlink")).await;
    assert_eq!(status, 400);
    assert!(html.contains("was made from"), "{html}");
    let (status, location) = post(form("H-LOCAL-SAME", "unlink")).await;
    assert_eq!(status, 303);
    assert!(location.starts_with(&format!("{page}?done=")), "{location}");
    let (_, html) = b.get(&location).await;
    assert!(html.contains("Record unlinked"), "{html}");
    assert!(!html.contains("H-LOCAL-SAME"), "{html}");
    assert_eq!(
        store
            .local_link_of(&acute(), "H-LOCAL-SAME")
            .await
            .expect("test step"),
        None
    );
    // A clinician may not read the local identity's page either.
    let clinician = sign_in(&t, "ae.okafor").await;
    assert_eq!(clinician.get(&page).await.0, 403);

    // Each decision in the audit trail with its own action: the record and the local
    // identity named, never an NHS number; the refusals too.
    let trail = store.audit_rows(0, 100_000).await.expect("test step");
    let of = |action: &str| -> Vec<_> {
        trail
            .iter()
            .filter(|r| r.record.action == action)
            .map(|r| {
                (
                    r.record.outcome.clone(),
                    r.record.patient.clone(),
                    r.record.payload.clone(),
                )
            })
            .collect()
    };
    let ruled = of("local-match-not-a-match");
    assert_eq!(
        ruled.iter().map(|(o, _, _)| o.as_str()).collect::<Vec<_>>(),
        vec!["deny", "deny", "recorded"],
        "{ruled:?}"
    );
    for action in [
        "local-match-not-a-match",
        "local-match-link",
        "local-match-unlink",
    ] {
        let rows = of(action);
        assert!(rows.iter().any(|(o, _, _)| o == "recorded"), "{action}");
        for (_, patient, payload) in &rows {
            assert_eq!(patient, &None, "{action}");
            assert!(!payload.contains("Okonjo"), "{action}: {payload}");
        }
        assert!(
            rows.iter().any(|(_, _, p)| p.contains(&label)),
            "{action}: {rows:?}"
        );
    }
    assert!(of("read-local-identity")
        .iter()
        .any(|(o, _, _)| o == "deny"));
}
