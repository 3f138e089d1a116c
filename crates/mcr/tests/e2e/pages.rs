//! The clinician viewer and public pages over HTTP: sign in, find, the access step, the
//! record with its source banner, and untrusted text shown as text.

use crate::helpers::*;
use mcr::demo::DemoPatientLogin;
use mcr_domain::NhsNumber;
use mcr_sources::{Behaviour, Failure};

#[tokio::test]
async fn public_pages_need_no_sign_in_and_staff_pages_do() {
    let t = start().await;
    let http = t
        .browser_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("test step");
    for path in ["/", "/how-it-works", "/questions", "/privacy", "/signin"] {
        let resp = http.get(t.url(path)).send().await.expect("test step");
        let status = resp.status();
        if status != 200 {
            panic!(
                "{path}: {status} {:?} {}",
                resp.headers().clone(),
                resp.text().await.expect("test step")
            );
        }
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .expect("test step")
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let html = resp.text().await.expect("test step");
        assert!(!html.contains("<script>"), "no inline script on {path}");
        assert!(!html.contains("style=\""), "no inline style on {path}");
    }
    let resp = http.get(t.url("/app")).send().await.expect("test step");
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/signin");
}

/// The patient's permission recorded with the one-click button on their record page.
async fn permission_given(b: &Browser, nhs: &str) {
    let (status, _) = b
        .post(
            &format!("/app/patient/{nhs}/permission"),
            &[("answer", "given-patient")],
        )
        .await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn find_ask_and_read_a_record_with_every_source_named() {
    let t = start().await;
    let b = sign_in(&t, "ae.okafor").await;
    let nhs = t.patient("all_four_sources", 0);

    let (status, html) = b.get(&format!("/app?nhs={nhs}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("/app/patient/{nhs}")),
        "the result links to the record"
    );

    let (status, html) = b.get("/app?nhs=123").await;
    assert_eq!(
        status, 400,
        "a form error is the page again with the error summary"
    );
    assert!(html.contains("nhsuk-error-summary"), "error summary shown");
    assert!(html.contains("value=\"123\""), "keeps what the user typed");

    // The access step: one click records the patient's permission.
    let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("given-patient"),
        "the one-click permission button is offered"
    );
    permission_given(&b, &nhs).await;

    // One source down: named in the banner, the rest shown.
    t.demo
        .source("socialcare")
        .expect("test step")
        .set_behaviour(Behaviour {
            failure: Failure::Drop,
            ..Behaviour::default()
        });
    let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 200);
    for s in &t.demo.region.sources {
        assert!(
            html.contains(&s.organisation.name),
            "banner names {}",
            s.organisation.name
        );
    }
    assert!(
        html.contains("could not be reached") || html.contains("navailable"),
        "the down source is marked"
    );
}

#[tokio::test]
async fn an_answer_on_the_patients_behalf_puts_each_problem_beside_its_field() {
    let t = start().await;
    let b = sign_in(&t, "ae.okafor").await;
    let nhs = t.patient("needs_permission", 0);
    let url = format!("/app/patient/{nhs}/permission");
    let error_on = |html: &str, field: &str| html.contains(&format!("id=\"{field}-error\""));
    // No ground given: the error is on the reason code, not on the answer.
    let (status, html) = b.post(&url, &[("answer", "given-representative")]).await;
    assert_eq!(status, 400);
    assert!(error_on(&html, "reason-code"), "{html}");
    assert!(!error_on(&html, "reason-text") && !error_on(&html, "answer"));
    // A ground, no account of it: the error is on the words.
    let (status, html) = b
        .post(
            &url,
            &[
                ("answer", "given-representative"),
                ("reason-code", "parental-responsibility"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_on(&html, "reason-text"), "{html}");
    assert!(!error_on(&html, "reason-code") && !error_on(&html, "answer"));
    // Nothing was recorded: the record still needs permission.
    let (status, _) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn hostile_text_from_sources_is_shown_as_text() {
    let t = start().await;
    let b = sign_in(&t, "ae.okafor").await;
    for i in 0..2 {
        let nhs = t.patient("hostile_text", i);
        permission_given(&b, &nhs).await;
        let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
        assert_eq!(status, 200);
        assert!(
            !html.contains("<script>alert"),
            "script from a source reached the page"
        );
        assert!(
            !html.contains("<img src=x"),
            "markup from a source reached the page"
        );
        let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
        assert!(
            !html.contains(bidi),
            "a direction control from a source reached the page"
        );
        assert!(
            html.contains("fdp.exe") && html.contains('\u{FFFD}'),
            "the altered text is shown with a visible marker"
        );
        assert!(
            html.contains("hidden characters that change the direction text reads in"),
            "the page says the text was altered"
        );
    }
}

#[tokio::test]
async fn a_given_name_of_punctuation_does_not_widen_a_search() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let family = t
        .demo
        .region
        .person(&mcr_domain::NhsNumber::parse(&nhs).expect("nhs"))
        .expect("the sample patient")
        .family
        .clone();
    let b = sign_in(&t, "ae.okafor").await;
    for given in [".", "-", " . "] {
        let (status, html) = b
            .get(&format!(
                "/app?family={}&given={}&search=1",
                urlencode(&family),
                urlencode(given)
            ))
            .await;
        assert_eq!(status, 400, "given {given:?} counts as absent");
        assert!(
            !html.contains(&format!("/app/patient/{nhs}")),
            "no results listed"
        );
    }
    let (status, body) = t
        .get(
            "ae.okafor",
            &format!("/fhir/Patient?family={}&given=.", urlencode(&family)),
        )
        .await;
    assert_eq!(status, 400, "FHIR search with given=. is refused: {body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("given name"),
        "{body}"
    );
    // A real given name still finds the patient.
    let given = t
        .demo
        .region
        .person(&mcr_domain::NhsNumber::parse(&nhs).expect("nhs"))
        .expect("the sample patient")
        .given[0]
        .clone();
    let (status, body) = t
        .get(
            "ae.okafor",
            &format!(
                "/fhir/Patient?family={}&given={}",
                urlencode(&family),
                urlencode(&given)
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains(&nhs), "{body}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn refusals_name_every_old_way_of_sharing() {
    let t = start().await;
    let b = sign_in(&t, "ae.okafor").await;
    let nhs = t.patient("opted_out", 0);
    let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 403);
    assert!(
        html.contains("by phone, fax, secure email or post"),
        "the opted-out page names phone, fax, email and post"
    );
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403);
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    for word in ["phone", "fax", "email", "post"] {
        assert!(text.contains(word), "the refusal says {word}: {text}");
    }
}

#[tokio::test]
async fn an_opted_out_patient_gets_the_sentence_and_the_old_ways() {
    let t = start().await;
    let b = sign_in(&t, "ae.okafor").await;
    let nhs = t.patient("opted_out", 0);
    let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 403);
    assert!(html.contains("opted out"), "the sentence is shown");
}

/// The public opt-out form is limited per address and per person, with a 429 page that says
/// what happened and what else to do; what is refused is never recorded.
#[tokio::test]
async fn the_public_opt_out_form_is_rate_limited() {
    let t = start().await;
    let http = t.browser();
    let send = |given: String, family: &'static str| {
        let http = http.clone();
        let url = t.url("/opt-out");
        async move {
            let resp = http
                .post(url)
                .form(&[
                    ("given", given.as_str()),
                    ("family", family),
                    ("dob-day", "12"),
                    ("dob-month", "3"),
                    ("dob-year", "1961"),
                    ("postcode", "SG1 2AB"),
                    ("contact", "01438 000000"),
                ])
                .send()
                .await
                .expect("POST /opt-out");
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            (status, retry, resp.text().await.expect("page"))
        }
    };
    // Per person: the same name and date of birth twice is fine, a third time is refused.
    let given = |i: usize| format!("Ann{}", "e".repeat(i));
    for _ in 0..2 {
        assert_eq!(send(given(0), "Smithson").await.0, 303);
    }
    let (status, retry, html) = send(given(0), "Smithson").await;
    assert_eq!((status, retry), (429, true), "{html}");
    assert!(html.contains("Too many opt-out requests"), "{html}");
    assert!(html.contains("telling your GP practice"), "{html}");
    // Per address: different people from one address, refused once past the burst.
    let mut statuses = Vec::new();
    for i in 1..60 {
        let (status, _, _) = send(given(i), "Jones").await;
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.len() <= 10,
        "at most ten from one address at once: {statuses:?}"
    );
    // What was refused was not recorded: only the accepted requests are in the queue.
    let waiting = t
        .demo
        .gateway
        .gateway
        .store()
        .opt_out_requests(Some(mcr_store::OptOutState::Received), 1000)
        .await
        .expect("store");
    let accepted = 2 + statuses.iter().filter(|s| **s == 303).count();
    assert_eq!(waiting.len(), accepted);
}

/// An opt-out request becomes an objection only when the code from the letter posted to the
/// registered address comes back: not on matching demographics alone; a wrong code is refused
/// and audited; the right one, typed on the public site, starts the opt-out.
#[tokio::test]
async fn an_opt_out_needs_the_code_from_the_letter() {
    let t = start().await;
    let nhs = t.patient("needs_permission", 0);
    let n = mcr_domain::NhsNumber::parse(&nhs).expect("nhs");
    let person = t.demo.region.person(&n).expect("person").clone();
    let public = t.browser();
    let dob = person.birth_date;
    let resp = public
        .post(t.url("/opt-out"))
        .form(&[
            ("given", person.given[0].as_str()),
            ("family", person.family.as_str()),
            ("dob-day", &dob.format("%-d").to_string()),
            ("dob-month", &dob.format("%-m").to_string()),
            ("dob-year", &dob.format("%Y").to_string()),
            ("nhs", nhs.as_str()),
            ("postcode", person.postcode.as_str()),
            ("contact", "01438 000000"),
        ])
        .send()
        .await
        .expect("POST /opt-out");
    assert_eq!(resp.status(), 303);
    let reference = location(&resp)
        .split("reference=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("a reference")
        .to_owned();
    let store = t.demo.gateway.gateway.store().clone();
    let objections = || async {
        store
            .governance(&n)
            .await
            .expect("governance")
            .objections
            .len()
    };

    // Matching demographics alone is not enough.
    let po = sign_in(&t, "po.wright").await;
    let case = format!("/app/opt-outs/{reference}");
    let (status, html) = po
        .post(&case, &[("action", "verify"), ("patient", nhs.as_str())])
        .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Send a verification letter"), "{html}");
    assert_eq!(objections().await, 0, "no objection without the code");

    // The letter: recorded, shown as sent (and, in the demo, what it says).
    let (status, html) = po
        .post(
            &case,
            &[("action", "send-letter"), ("patient", nhs.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Letter sent on"), "{html}");
    let code = html
        .split("id=\"letter-code\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the demo shows the letter's code")
        .to_owned();
    let (_, again) = po.get(&case).await;
    assert!(!again.contains(&code), "the code is shown once");
    assert!(again.contains("Awaiting the letter code"), "{again}");

    // A wrong code is refused and audited.
    let wrong = if code.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    let send_code = |code: String| {
        let public = public.clone();
        let url = t.url("/opt-out/code");
        let reference = reference.clone();
        async move {
            let resp = public
                .post(url)
                .form(&[("reference", reference.as_str()), ("code", code.as_str())])
                .send()
                .await
                .expect("POST /opt-out/code");
            (resp.status().as_u16(), resp.text().await.expect("page"))
        }
    };
    let (status, html) = send_code(wrong.to_owned()).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("do not match a letter"), "{html}");
    assert_eq!(objections().await, 0, "a wrong code records nothing");
    let attempts = store
        .query_audit(&mcr_store::AuditQuery {
            actions: vec!["confirm-opt-out-code".into()],
            limit: 10,
            ..mcr_store::AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].record.outcome, "wrong-code");

    // The right code, as typed by the person, starts the opt-out.
    let (status, html) = send_code(code.to_lowercase().replace('-', " ")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Your opt-out has started"), "{html}");
    assert_eq!(objections().await, 1);
    let request = store
        .opt_out_request(&reference)
        .await
        .expect("read")
        .expect("request");
    assert_eq!(request.state, mcr_store::OptOutState::Verified);
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("opted out"), "{body}");
}

/// Patient matching found a record elsewhere carrying this NHS number for someone whose
/// details do not match (issue 19): the record view warns, without that person's details,
/// until records staff resolve it; another patient's view does not.
#[tokio::test]
async fn a_possible_wrong_nhs_number_is_warned_on_the_record_page() {
    let t = start().await;
    let nhs = t.patient("all_four_sources", 0);
    let other = t.patient("gp_only", 0);
    let store = t.demo.gateway.gateway.store().clone();
    let flagged = mcr_store::MatchCandidateRow {
        source: mcr_domain::SourceId::parse("acute").expect("test step"),
        local_id: "H-WRONG-1".into(),
        nhs_number: mcr_domain::NhsNumber::parse(&nhs).expect("test step"),
        kind: "possible-wrong-nhs-number".into(),
        score: 3.5,
        agreement: "family=exact given=differs birth-date=differs sex=differs postcode=full nhs-number=agree".into(),
        guard: None,
        family: "Zebedee".into(),
        given: "Quillon".into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(1983, 7, 9),
        gender: Some("male".into()),
        postcode: Some("SG5 3BT".into()),
        found_at: "2026-11-24T09:00:00Z".parse().expect("test step"),
    };
    store
        .replace_match_candidates(&[], &[flagged])
        .await
        .expect("test step");

    let b = sign_in(&t, "ae.okafor").await;
    for n in [&nhs, &other] {
        permission_given(&b, n).await;
    }
    let (status, html) = b.get(&format!("/app/patient/{nhs}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("identity-warnings"), "warned");
    assert!(html.contains("Possible wrong NHS number"), "{html}");
    assert!(
        !html.contains("Quillon") && !html.contains("Zebedee"),
        "never the other person's details"
    );
    let (status, html) = b.get(&format!("/app/patient/{other}")).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("identity-warnings"),
        "no warning for another patient"
    );
}

/// The patient matching queue (issue 19): records staff see each pair side by side with the
/// comparison; "not a match" and "link" are recorded with their audit records, the pair leaves
/// the queue, and a clinician may not look.
/// Decide (`verdict`) about the review pair of the acute trust's record `local_id` and `nhs`.
async fn decide(b: &Browser, local_id: &str, nhs: &NhsNumber, verdict: &str) -> (u16, String) {
    b.post(
        "/app/matching/decide",
        &[
            ("source", "acute"),
            ("local_id", local_id),
            ("nhs", nhs.as_str()),
            ("verdict", verdict),
        ],
    )
    .await
}

#[tokio::test]
async fn the_matching_queue_links_and_rules_out_pairs_and_audits_each_decision() {
    let t = start().await;
    let store = t.demo.gateway.gateway.store().clone();
    let twin = mcr_domain::NhsNumber::parse(&t.patient("gp_only", 0)).expect("test step");
    let owner = mcr_domain::NhsNumber::parse(&t.patient("gp_only", 1)).expect("test step");
    let pair = |local: &str, nhs: &mcr_domain::NhsNumber, guard: &str| {
        mcr_store::MatchCandidateRow {
        source: mcr_domain::SourceId::parse("acute").expect("test step"),
        local_id: local.into(),
        nhs_number: nhs.clone(),
        kind: "review".into(),
        score: 28.2,
        agreement: "family=exact given=typo birth-date=exact sex=differs postcode=full nhs-number=missing".into(),
        guard: Some(guard.into()),
        family: "Queue-Family".into(),
        given: "Queue-Given".into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(2001, 9, 15),
        gender: Some("male".into()),
        postcode: Some("LU2 7QQ".into()),
        found_at: "2026-11-24T09:00:00Z".parse().expect("test step"),
    }
    };
    // The demo region's own matching cases are in the queue already.
    let before = store.match_candidates().await.expect("test step").len();
    store
        .replace_match_candidates(
            &[],
            &[
                pair("H-TWIN", &twin, "possible-twin"),
                pair("H-OWNER", &owner, "ambiguous"),
            ],
        )
        .await
        .expect("test step");

    let clinician = sign_in(&t, "ae.okafor").await;
    let (status, _) = clinician.get("/app/matching").await;
    assert_eq!(status, 403, "clinicians do not review matching");

    // A receptionist at a GP practice reviews only the practice's records: the hospital's
    // pairs (demographics side by side) are not theirs to see.
    let receptionist = sign_in(&t, "rec.murphy").await;
    let (status, html) = receptionist.get("/app/matching").await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("Queue-Family"), "{html}");
    let (status, _) = decide(&receptionist, "H-TWIN", &twin, "link").await;
    assert_eq!(status, 403, "nor to decide");

    let b = sign_in(&t, "rec.obi").await;
    let (status, html) = b.get("/app/matching").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!("Waiting to be checked ({})", before + 2)),
        "{html}"
    );
    assert!(html.contains("Possible twin"), "the guard is explained");
    // The address's first line is compared and said so, never shown.
    assert!(
        html.contains("Address, first line") && html.contains("Compared, not shown"),
        "{html}"
    );
    assert!(
        html.contains("Queue-Given") && html.contains("Sex"),
        "side by side"
    );

    let (status, _) = decide(&b, "H-TWIN", &twin, "not-a-match").await;
    assert_eq!(status, 303);
    let (status, _) = decide(&b, "H-OWNER", &owner, "link").await;
    assert_eq!(status, 303);
    let (_, html) = b.get("/app/matching").await;
    assert!(
        html.contains(&format!("Waiting to be checked ({before})")),
        "{html}"
    );
    assert!(!html.contains("H-TWIN") && !html.contains("H-OWNER"));
    // Deciding again about a pair no longer in the queue is refused, and says why.
    let (status, html) = decide(&b, "H-TWIN", &twin, "link").await;
    assert_eq!(status, 400);
    assert!(html.contains("not waiting for review"), "{html}");

    let acute = mcr_domain::SourceId::parse("acute").expect("test step");
    assert_eq!(
        store
            .link_for_local(&acute, "H-OWNER")
            .await
            .expect("test step")
            .map(|l| l.nhs_number),
        Some(owner.clone())
    );
    assert!(store
        .link_for_local(&acute, "H-TWIN")
        .await
        .expect("test step")
        .is_none());
    let decisions = store.match_decisions().await.expect("test step");
    assert_eq!(decisions.len(), 2);
    assert!(decisions.iter().all(|d| d.decided_by == "rec.obi"));
    let trail = store.audit_rows(0, 10_000).await.expect("test step");
    let actions: Vec<&str> = trail
        .iter()
        .map(|r| r.record.action.as_str())
        .filter(|a| a.starts_with("match-") || a.contains("match-queue"))
        .collect();
    assert!(
        actions.contains(&"match-not-a-match") && actions.contains(&"match-link"),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"read-match-queue"),
        "reads are audited too: {actions:?}"
    );
    assert!(
        trail
            .iter()
            .all(|r| !r.record.payload.contains("Queue-Given")),
        "no demographics in the audit trail"
    );
}

/// The demo's patients proofed to P9 and to P5 (demo.json names one of each).
fn p9_and_p5(t: &TestDemo) -> (&DemoPatientLogin, &DemoPatientLogin) {
    let at = |level: &str| {
        t.demo
            .info
            .patient_logins
            .iter()
            .find(|l| l.level == level)
            .unwrap_or_else(|| panic!("demo.json names a {level} patient"))
    };
    (at("P9"), at("P5"))
}

/// A demo patient signs in at `/my-record` through the demo's NHS login; returns the status
/// and page of `/my-record` afterwards.
/// Sign a demo patient in through the demo's NHS login; their session cookie.
async fn patient_session(t: &TestDemo, login_id: &str) -> String {
    let http = t.browser();
    let start = http
        .post(t.url("/my-record/signin"))
        .form(&[("go", "1")])
        .send()
        .await
        .expect("POST /my-record/signin");
    assert_eq!(start.status(), 303, "to NHS login");
    let login = set_cookie(&start, "mcr_patient_login").expect("a sign-in in progress");
    let login = login.split(';').next().expect("cookie").to_owned();
    let authorize = url::Url::parse(&location(&start)).expect("authorize URL");
    assert!(
        authorize
            .query_pairs()
            .any(|(k, v)| k == "vtr" && v.contains("P9.Cp.Cd")),
        "{authorize}"
    );
    let back = choose_user(&http, &authorize, login_id).await;
    assert_eq!(back.status(), 303, "NHS login sends the patient back");
    let resp = http
        .get(location(&back))
        .header("cookie", &login)
        .send()
        .await
        .expect("callback");
    assert_eq!(resp.status(), 200, "signed in");
    let cookie = set_cookie(&resp, "mcr_patient").expect("a patient session");
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("http-equiv=\"refresh\" content=\"0;url=/my-record\""),
        "on to /my-record from a page of the gateway's own"
    );
    cookie.split(';').next().expect("cookie").to_owned()
}

async fn patient_signs_in(t: &TestDemo, login_id: &str) -> (u16, String) {
    let cookie = patient_session(t, login_id).await;
    patient_page(t, &cookie, "/my-record").await
}

async fn patient_page(t: &TestDemo, cookie: &str, path: &str) -> (u16, String) {
    let page = t
        .browser()
        .get(t.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (page.status().as_u16(), page.text().await.expect("page"))
}

async fn patient_chooses(t: &TestDemo, cookie: &str, choice: &str) -> (u16, String) {
    let resp = t
        .browser()
        .post(t.url("/my-record/choice"))
        .header("cookie", cookie)
        .header("origin", t.url(""))
        .form(&[("choice", choice)])
        .send()
        .await
        .expect("POST /my-record/choice");
    (resp.status().as_u16(), resp.text().await.expect("page"))
}

#[tokio::test]
async fn demo_patients_sign_in_with_the_demos_nhs_login_p9_sees_history_p5_general_information() {
    let t = start().await;
    let resp = t
        .http
        .get(t.url("/my-record/signin"))
        .send()
        .await
        .expect("GET /my-record/signin");
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.expect("page");
    assert!(page.contains("Continue to NHS login"), "{page}");
    assert!(
        !page.contains("type=\"radio\""),
        "no stand-in patient picker in the demo: {page}"
    );
    let (p9, p5) = p9_and_p5(&t);

    let (status, page) = patient_signs_in(&t, &p9.login_id).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Who viewed your record"), "{page}");

    let (status, page) = patient_signs_in(&t, &p5.login_id).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("level P5") && page.contains("Prove who you are"),
        "{page}"
    );
    assert!(!page.contains("Who viewed your record"), "{page}");
}

/// A patient proofed to P9 opts out online and it takes effect at once, recorded as their own
/// act; they opt back in the same way. Below P9 nothing can be changed, and the attempt is
/// audited.
#[tokio::test]
async fn a_p9_patient_opts_out_and_back_in_online_at_once_and_below_p9_cannot() {
    let t = start().await;
    let (p9, p5) = p9_and_p5(&t);
    let nhs = p9.nhs_number.clone();
    let cookie = patient_session(&t, &p9.login_id).await;

    let (status, page) = patient_page(&t, &cookie, "/my-record").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Your record is shared through My Care Record"),
        "{page}"
    );
    let (status, page) = patient_page(&t, &cookie, "/my-record/choice").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Do you want your record shared"), "{page}");

    // No choice made: said, nothing changed.
    let (status, page) = patient_chooses(&t, &cookie, "").await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("Select whether to share your record or to opt out"),
        "{page}"
    );

    // Opt out: at once. A clinician with the patient's permission is refused, opted out.
    let (status, page) = patient_chooses(&t, &cookie, "opt-out").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You have opted out"), "{page}");
    t.give_permission("ae.okafor", &nhs).await;
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"], "opted-out",
        "{body}"
    );
    let (_, page) = patient_page(&t, &cookie, "/my-record").await;
    assert!(page.contains("You have opted out of sharing"), "{page}");
    // Saying it twice records nothing more.
    let (status, _) = patient_chooses(&t, &cookie, "opt-out").await;
    assert_eq!(status, 200);

    // Back in: the same clinician, with the same permission, sees the record.
    let (status, page) = patient_chooses(&t, &cookie, "share").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Your record is shared again"), "{page}");
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200, "{body}");

    // The register and the audit trail say it was the patient, on NHS login at P9.
    let (status, trail) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient={nhs}&_count=100"),
        )
        .await;
    assert_eq!(status, 200, "{trail}");
    let own: Vec<&serde_json::Value> = trail["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r.to_string().contains("nhs-login:P9"))
        .collect();
    assert_eq!(
        own.len(),
        2,
        "one opt-out, one opt-in, each the patient's own: {trail}"
    );
    for r in &own {
        assert!(r.to_string().contains("\"value\":\"patient\""), "{r}");
    }

    // P5: general information, no choice, and nothing recorded.
    let p5_cookie = patient_session(&t, &p5.login_id).await;
    let (status, page) = patient_chooses(&t, &p5_cookie, "opt-out").await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Prove who you are"), "{page}");
    let (status, page) = patient_page(&t, &p5_cookie, "/my-record/choice").await;
    assert_eq!(status, 403, "{page}");
}

/// The sources' capability statements, read at start-up, are shown to staff and counted in
/// `/metrics`, with how each is searched and the forms of patient reference it cannot be asked
/// for; a GP Connect source says its areas are the specification's.
#[tokio::test]
async fn staff_see_what_each_source_says_it_can_be_asked_for() {
    let t = start().await;
    let staff = t.sign_in("ae.okafor").await;
    let resp = staff
        .http
        .get(t.url("/app/sources"))
        .header("cookie", &staff.cookie)
        .send()
        .await
        .expect("GET /app/sources");
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.expect("page");
    assert!(page.contains("<h1>Source systems</h1>"), "{page}");
    for org in [
        "East and North Hertfordshire NHS Trust",
        "Hertfordshire Community NHS Trust",
    ] {
        assert!(page.contains(org), "{org}: {page}");
    }
    assert!(page.contains("Asked for (searched by patient"), "{page}");
    // The simulated sources list `Patient` without a search by patient: it is read by its
    // id, so it is asked for, and nothing they list goes unasked.
    assert!(
        !page.contains("Listed, not searchable by patient"),
        "{page}"
    );
    assert!(page.contains("My Care Record simulated source"), "{page}");
    assert!(page.contains("GP Connect specification"), "{page}");
    assert!(
        !page.contains("Never read"),
        "every R4 source was read at start-up: {page}"
    );
    // How each is searched: the simulated R4 sources find every form of patient reference
    // (configured `every-form`), so none is asked by NHS number and none has items it cannot
    // find; the GP Connect source is asked by NHS number alone.
    assert!(page.contains("How it is searched"), "{page}");
    assert!(page.contains("patient_search = every-form"), "{page}");
    assert!(
        page.contains("Nothing: its search finds every form of patient reference"),
        "{page}"
    );
    assert!(
        page.contains("By NHS number, in one GP Connect structured-record request"),
        "{page}"
    );
    assert!(!page.contains("Asked by NHS number"), "{page}");

    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("mcr_source_capability_types{source=\"acute\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: i64 = line
        .rsplit(' ')
        .next()
        .expect("value")
        .parse()
        .expect("number");
    assert!(n >= 5, "{line}");
    for form in ["identifier", "other-server", "contained"] {
        let series = format!("mcr_source_unsearchable_form{{source=\"acute\",form=\"{form}\"}} 0");
        assert!(
            metrics.lines().any(|l| l == series),
            "an every-form source can be asked for every form: {series} in {metrics}"
        );
    }

    // Not signed in: to the sign-in page.
    let anonymous = t
        .browser()
        .get(t.url("/app/sources"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 303);
}

/// A pair with a local identity (issue 19: an index person made from a record with no NHS
/// number) is in the matching queue in its own list, labelled with the local identity's own
/// identifier, never as an NHS number, and counted in the queue read's audit record.
/// The records a source sent that could not be read are listed on the matching page, by
/// source, with why and no demographics, for the people who may see that source's records;
/// the queue read's audit record counts them.
#[tokio::test]
async fn the_matching_page_lists_the_records_that_could_not_be_read() {
    let t = start().await;
    let store = t.demo.gateway.gateway.store().clone();
    let (_, before) = store
        .unreadable(
            &mcr_domain::SourceId::parse("acute").expect("test step"),
            500,
        )
        .await
        .expect("test step");
    let row = |local_id: &str, reason: &str| mcr_store::UnmatchedRecord {
        source: mcr_domain::SourceId::parse("acute").expect("test step"),
        local_id: local_id.into(),
        reason: reason.into(),
        candidates: 0,
        seen_at: "2026-11-24T09:00:00Z".parse().expect("test step"),
    };
    store
        .record_unmatched_batch(&[
            row("H-NO-DOB", "no-birth-date"),
            row("H-BAD-DOB", "birth-date-unreadable"),
            row("H-NO-NAME", "no-name"),
            // Left unmatched by matching: not a record that could not be read.
            row("H-NO-MATCH", "no-match"),
        ])
        .await
        .expect("test step");

    let b = sign_in(&t, "rec.obi").await;
    let (status, html) = b.get("/app/matching").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!("Records that could not be read ({})", before + 3)),
        "{html}"
    );
    for (id, why) in [
        ("H-NO-DOB", "No date of birth"),
        ("H-BAD-DOB", "Date of birth not a whole date"),
        ("H-NO-NAME", "No name"),
    ] {
        assert!(
            html.contains(&format!(
                "<td class=\"nhsuk-table__cell app-untrusted\">{id}</td>\n      <td class=\"nhsuk-table__cell\">{why}</td>"
            )),
            "{id}: {html}"
        );
    }
    assert!(!html.contains("H-NO-MATCH"), "{html}");
    assert!(html.contains("24 November 2026"), "{html}");

    // A receptionist at a GP practice does not see the hospital's records.
    let receptionist = sign_in(&t, "rec.murphy").await;
    let (_, html) = receptionist.get("/app/matching").await;
    assert!(!html.contains("H-NO-DOB"), "{html}");
    assert!(
        html.contains("Records that could not be read (0)"),
        "{html}"
    );

    let trail = store.audit_rows(0, 10_000).await.expect("test step");
    assert!(
        trail.iter().any(|r| r.record.action == "read-match-queue"
            && r.record
                .payload
                .contains(&format!("{} record(s) that could not be read", before + 3))),
        "the queue read counts them"
    );
}

#[tokio::test]
async fn the_matching_queue_shows_a_local_identity_as_one_never_as_an_nhs_number() {
    let t = start().await;
    let store = t.demo.gateway.gateway.store().clone();
    let made = store
        .put_local_persons(&[mcr_store::LocalPersonRecord {
            source: mcr_domain::SourceId::parse("acute").expect("test step"),
            local_id: "H-LOCAL-SISTER".into(),
            family: "Localfamily".into(),
            given: "Louise".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1990, 4, 2).expect("test step"),
            gender: Some("female".into()),
            postcode: Some("SG1 1AA".into()),
            address: None,
            at: "2026-11-24T09:00:00Z".parse().expect("test step"),
        }])
        .await
        .expect("test step");
    let person = made[0].0;
    // The demo region's own pair with a local identity (its twins) is in the queue already.
    let before = store.local_candidates().await.expect("test step").len();
    store
        .replace_local_candidates(
            &[],
            &[mcr_store::LocalCandidateRow {
                source: mcr_domain::SourceId::parse("acute").expect("test step"),
                local_id: "H-LOCAL-BROTHER".into(),
                person,
                score: 27.5,
                agreement: "family=exact given=typo birth-date=exact sex=differs postcode=full nhs-number=missing".into(),
                guard: Some("possible-twin".into()),
                family: "Localfamily".into(),
                given: "Louis".into(),
                birth_date: chrono::NaiveDate::from_ymd_opt(1990, 4, 2),
                gender: Some("male".into()),
                postcode: Some("SG1 1AA".into()),
                found_at: "2026-11-24T09:00:00Z".parse().expect("test step"),
            }],
        )
        .await
        .expect("test step");

    let b = sign_in(&t, "rec.obi").await;
    let (status, html) = b.get("/app/matching").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!(
            "Records that may be a local identity ({})",
            before + 1
        )),
        "{html}"
    );
    let label = person.to_string();
    assert!(label.starts_with('L') && mcr_domain::NhsNumber::parse(&label).is_err());
    assert!(
        html.contains(&format!("record <span class=\"app-untrusted\">H-LOCAL-BROTHER</span> and local identity {label}")),
        "{html}"
    );
    assert!(html.contains("Local identity: no NHS number"));
    assert!(!html.contains(&format!("NHS number {label}")));
    assert!(html.contains("Possible twin"), "the guard is explained");
    // No decision form names the local identity as an NHS number.
    assert!(!html.contains(&format!("name=\"nhs\" value=\"{label}\"")));

    // A receptionist at a GP practice does not see the hospital's pair.
    let receptionist = sign_in(&t, "rec.murphy").await;
    let (_, html) = receptionist.get("/app/matching").await;
    assert!(!html.contains("H-LOCAL-BROTHER"), "{html}");

    let trail = store.audit_rows(0, 10_000).await.expect("test step");
    assert!(
        trail.iter().any(|r| r.record.action == "read-match-queue"
            && r.record
                .payload
                .contains(&format!("{} with a local identity", before + 1))),
        "the queue read counts the local pairs"
    );
}
