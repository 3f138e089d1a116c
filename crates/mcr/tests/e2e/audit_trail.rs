//! The audit trail read back: the FHIR AuditEvent search and its access rules, a patient's
//! access history and its download, the privacy officer's review queue with anomaly flags;
//! and views refused when the trail cannot be written.

use crate::helpers::*;
use mcr_domain::Principal;
use mcr_gateway::{
    AnomalyFlag, DownloadFormat, EmergencyRequest, RelationshipClaim, RequestContext, ReviewFilter,
    ReviewOutcome, ViewOutcome,
};
use mcr_store::AuditQuery;
use serde_json::Value;

fn ctx(t: &TestDemo, user: &str) -> RequestContext {
    let u = t
        .demo
        .info
        .users
        .iter()
        .find(|u| u.id == user)
        .expect("demo user");
    let organisation = t
        .demo
        .gateway
        .gateway
        .orgs()
        .get(&mcr_domain::OdsCode::parse(&u.org_code).expect("ods"))
        .expect("org")
        .clone();
    RequestContext {
        principal: Principal {
            role_profile: None,
            user_id: u.id.clone(),
            name: u.name.clone(),
            role: u.role,
            organisation,
        },
        correlation_id: format!("test-{user}"),
        system: None,
    }
}

fn details(entry: &Value) -> Vec<String> {
    entry["resource"]["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
        .map(|d| d["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ids(bundle: &Value) -> Vec<i64> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    e["resource"]["id"]
                        .as_str()
                        .expect("id")
                        .parse()
                        .expect("a number")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn link<'a>(bundle: &'a Value, relation: &str) -> Option<&'a str> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)?["url"]
        .as_str()
}

#[tokio::test]
async fn audit_event_search_pages_with_links_and_finds_one_record_by_id() {
    audit_search_pages(&start().await).await;
}

/// The same on PostgreSQL, whose store reads pages backwards its own way.
#[tokio::test]
async fn audit_event_search_pages_on_postgres() {
    let t = start_with(Some(mcr_testkit::postgres_url().await), 1_500).await;
    assert_eq!(t.demo.gateway.gateway.store().backend(), "postgres");
    audit_search_pages(&t).await;
}

async fn audit_search_pages(t: &TestDemo) {
    let patient = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &patient).await;
    for _ in 0..3 {
        let (status, _) = t.everything("ae.okafor", &patient).await;
        assert_eq!(status, 200);
    }
    let search = format!("/fhir/AuditEvent?patient=Patient/{patient}");

    // Pages of two, newest first, each with a next link until the last; no total that is
    // only the page's size.
    let (status, first) = t.get("po.wright", &format!("{search}&_count=2")).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.get("total").is_none(), "{first}");
    assert_eq!(ids(&first).len(), 2);
    assert!(link(&first, "previous").is_none());
    assert!(link(&first, "self").is_some_and(|u| u.contains("_count=2")));
    let mut paged = ids(&first);
    let mut next = link(&first, "next").map(str::to_owned);
    let mut second = None;
    while let Some(url) = next {
        let path = url
            .strip_prefix(&t.demo.info.gateway_url)
            .expect("our own URL");
        let (status, page) = t.get("po.wright", path).await;
        assert_eq!(status, 200, "{page}");
        assert!(ids(&page).len() <= 2);
        paged.extend(ids(&page));
        next = link(&page, "next").map(str::to_owned);
        second.get_or_insert(page);
        assert!(paged.len() < 100, "paging does not end: {paged:?}");
    }
    assert!(
        paged.windows(2).all(|w| w[0] > w[1]),
        "newest first, none twice: {paged:?}"
    );
    // Every record there was when the first page was read, once: the same as one big page.
    let (_, all) = t.get("po.wright", &format!("{search}&_count=100")).await;
    let all: Vec<i64> = ids(&all).into_iter().filter(|id| *id <= paged[0]).collect();
    assert_eq!(paged, all);
    assert!(
        paged.len() >= 5,
        "a permission, three views, a search: {paged:?}"
    );

    // Back from the second page is the first.
    let second = second.expect("a second page");
    let previous = link(&second, "previous").expect("a previous link");
    let path = previous
        .strip_prefix(&t.demo.info.gateway_url)
        .expect("our own URL");
    let (status, back) = t.get("po.wright", path).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(ids(&back), ids(&first));

    // `_id` finds one record, within the caller's scope; a bad one is a clear error.
    let one = paged[2];
    let (status, found) = t
        .get("po.wright", &format!("/fhir/AuditEvent?_id={one}"))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), vec![one]);
    let (status, body) = t.get("po.wright", "/fhir/AuditEvent?_id=seven").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("_id=seven"), "{body}");
}

#[tokio::test]
async fn audit_event_search_follows_the_access_rules_and_is_itself_audited() {
    let t = start().await;
    let patient = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &patient).await;
    let (status, _) = t.everything("ae.okafor", &patient).await;
    assert_eq!(status, 200);

    // A privacy officer sees every record, in the BALP shape.
    let today = t.demo.gateway.gateway.clock().now().date_naive();
    let (status, bundle) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient=Patient/{patient}&date=ge{today}&date=le{today}"),
        )
        .await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().expect("entries");
    let view = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["subtype"][1]["code"] == "view-record" && r["outcome"] == "0")
        .unwrap_or_else(|| panic!("a permitted view in {bundle}"));
    assert_eq!(view["resourceType"], "AuditEvent");
    assert_eq!(view["type"]["code"], "rest");
    assert_eq!(
        view["subtype"][0]["system"],
        "http://hl7.org/fhir/restful-interaction"
    );
    assert_eq!(view["agent"][0]["who"]["identifier"]["value"], "ae.okafor");
    assert_eq!(view["agent"][0]["who"]["display"], "Dr Chidi Okafor");
    assert_eq!(
        view["agent"][0]["role"][0]["coding"][0]["code"],
        "clinician"
    );
    assert_eq!(view["agent"][0]["requestor"], true);
    assert_eq!(
        view["entity"][0]["what"]["identifier"]["value"],
        patient.as_str()
    );
    assert_eq!(view["purposeOfEvent"][0]["coding"][0]["code"], "directcare");
    assert_eq!(
        view["source"]["observer"]["display"],
        "My Care Record gateway"
    );
    assert!(entries
        .iter()
        .all(|e| e["resource"]["entity"][0]["what"]["identifier"]["value"] == patient.as_str()));

    // Filter by agent and outcome.
    let (status, bundle) = t
        .get("po.wright", "/fhir/AuditEvent?agent=ae.okafor&outcome=0")
        .await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(
            |e| e["resource"]["agent"][0]["who"]["identifier"]["value"] == "ae.okafor"
                && e["resource"]["outcome"] == "0"
        ));

    // Staff of a source organisation see only accesses that touched their data.
    let (status, bundle) = t.get("nurse.evans", "/fhir/AuditEvent").await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(
        !entries.is_empty(),
        "the acute doctor's view asked the community trust"
    );
    for e in entries {
        assert!(details(e).contains(&"source:community".to_owned()), "{e}");
    }

    // Anyone else is refused, and the refusal is audited.
    let (status, body) = t.get("hospice.ali", "/fhir/AuditEvent").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // Bad input gets clear words.
    let (status, body) = t
        .get("po.wright", "/fhir/AuditEvent?date=last-tuesday")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("YYYY-MM-DD"),
        "{body}"
    );
    let (status, body) = t
        .get(
            "po.wright",
            "/fhir/AuditEvent?date=ge2024-01-01&date=le2026-01-01",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("one year"),
        "{body}"
    );
    let (status, body) = t
        .get(
            "po.wright",
            &format!("/fhir/AuditEvent?patient={}", unknown_patient(&t).await),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = t
        .get("po.wright", "/fhir/AuditEvent?patient=1234567890")
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = t.get("po.wright", "/fhir/AuditEvent?colour=blue").await;
    assert_eq!(status, 400, "{body}");

    // Every search, permitted or not, is in the trail.
    let store = t.demo.gateway.gateway.store();
    let searches = store
        .query_audit(&AuditQuery {
            actions: vec!["search-audit".into()],
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    let by = |user: &str, outcome: &str| {
        searches
            .iter()
            .any(|r| r.record.user_id == user && r.record.outcome == outcome)
    };
    assert!(by("po.wright", "permit") && by("nurse.evans", "permit") && by("hospice.ali", "deny"));
    // And the audit trail is still one intact chain.
    assert!(matches!(
        mcr_audit::verify(store.as_ref()).await.expect("verify"),
        mcr_audit::Verification::Intact { .. }
    ));
}

/// The view's audit record is written while the record is merged: what it says each source
/// gave (status, items, items withheld) must be what the view shows.
#[tokio::test]
async fn a_views_audit_record_counts_what_each_source_gave_as_the_view_shows_it() {
    let t = start().await;
    let patient = t.patient("sensitive_items", 0);
    t.give_permission("ae.okafor", &patient).await;
    let g = &t.demo.gateway.gateway;
    let ViewOutcome::Record(pending) = g
        .view_record(&ctx(&t, "ae.okafor"), &nhs(&patient))
        .await
        .expect("view")
    else {
        panic!("the view is permitted");
    };
    let view = pending.committed().await.expect("audit committed");
    let shown: Vec<(String, String, usize, usize)> = view
        .record
        .sources
        .iter()
        .map(|s| {
            let status = match &s.status {
                mcr_domain::SourceStatus::Ok => "ok".to_owned(),
                mcr_domain::SourceStatus::Partial(r) => format!("partial-{}", r.code()),
                mcr_domain::SourceStatus::Failed(r) => r.code().to_owned(),
            };
            (s.source.to_string(), status, s.items, s.withheld)
        })
        .collect();
    assert!(
        shown.iter().any(|(_, _, _, withheld)| *withheld > 0),
        "this patient has items withheld: {shown:?}"
    );
    let rows = g
        .store()
        .query_audit(&AuditQuery {
            actions: vec!["view-record".into()],
            patient: Some(patient.clone()),
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    let event: mcr_audit::AuditEvent =
        serde_json::from_str(&rows.first().expect("the view's record").record.payload)
            .expect("an audit event");
    assert_eq!(event.outcome, "permit");
    let audited: Vec<(String, String, usize, usize)> = event
        .sources
        .iter()
        .map(|s| (s.source.clone(), s.status.clone(), s.items, s.withheld))
        .collect();
    assert_eq!(audited, shown);
}

#[tokio::test]
async fn a_refused_views_audit_record_says_why() {
    let t = start().await;
    let patient = t.patient("sensitive_items", 0);
    let g = &t.demo.gateway.gateway;
    let mut outcomes = Vec::new();
    for user in ["ae.okafor", "hospice.ali", "rec.murphy", "pharm.lee"] {
        let ViewOutcome::NotPermitted(decision) = g
            .view_record(&ctx(&t, user), &nhs(&patient))
            .await
            .expect("view")
        else {
            panic!("{user} may not view this record without asking");
        };
        let rows = g
            .store()
            .query_audit(&AuditQuery {
                actions: vec!["view-record".into()],
                user_id: Some(user.into()),
                limit: 1,
                ..AuditQuery::default()
            })
            .await
            .expect("query");
        let event: mcr_audit::AuditEvent =
            serde_json::from_str(&rows.first().expect("the refusal's record").record.payload)
                .expect("an audit event");
        assert_eq!(event.outcome, decision.code(), "{user}");
        assert_eq!(event.patient.as_deref(), Some(patient.as_str()), "{user}");
        assert_eq!(
            event.detail.as_deref(),
            Some(decision.sentence().as_str()),
            "{user}: the sentence the user was shown"
        );
        if let mcr_policy::Decision::Deny(d) = &decision {
            assert_eq!(event.basis.as_deref(), Some(d.code.as_str()), "{user}");
        }
        outcomes.push(event.outcome);
    }
    assert!(outcomes.iter().any(|o| o == "deny"), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| o.as_str().starts_with("needs-")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn patients_see_who_viewed_them_and_privacy_officers_review_emergencies() {
    let t = start().await;
    let g = &t.demo.gateway.gateway;
    let patient = t.patient("all_four_sources", 0);
    let n = nhs(&patient);
    let (status, body) = t
        .emergency_access("hospice.ali", &patient, "Brought in unresponsive")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = t.everything("hospice.ali", &patient).await;
    assert_eq!(status, 200);

    // The patient's history, in plain words, and as a download.
    let history = g.access_history(&n, None).await.expect("history");
    let line = history
        .views
        .iter()
        .find(|v| v.org_code == "G9H01")
        .expect("the hospice's view");
    assert_eq!(line.organisation, "Garden House Hospice Care");
    assert_eq!(line.role, "Doctor");
    assert!(
        line.reason.starts_with("Emergency access"),
        "{}",
        line.reason
    );
    let csv = history.download(DownloadFormat::Csv);
    assert!(csv.body.starts_with("time,organisation,"), "{}", csv.body);
    assert!(csv.body.contains("Garden House Hospice Care") && csv.filename.ends_with(".csv"));
    let json: Value =
        serde_json::from_str(&history.download(DownloadFormat::Json).body).expect("json");
    assert_eq!(
        json["views"][0]["organisation"],
        "Garden House Hospice Care"
    );

    // The review queue shows the case with the view that followed.
    let po = ctx(&t, "po.wright");
    let queue = g
        .review_queue(&po, &ReviewFilter::default())
        .await
        .expect("queue");
    let item = queue
        .items
        .iter()
        .find(|i| i.kind == "emergency-access" && i.user_id == "hospice.ali")
        .expect("the emergency access");
    assert_eq!(item.patient.as_deref(), Some(patient.as_str()));
    assert_eq!(item.reason_code.as_deref(), Some("unconscious"));
    assert_eq!(item.reason.as_deref(), Some("Brought in unresponsive"));
    assert!(
        item.views_after.iter().any(|v| v.outcome == "permit"),
        "{:?}",
        item.views_after
    );

    // Only a privacy officer can review; the review is audited and leaves the queue.
    let err = g
        .record_review(
            &ctx(&t, "ae.okafor"),
            item.seq,
            ReviewOutcome::Appropriate,
            "fine",
        )
        .await;
    assert!(
        matches!(err, Err(mcr_gateway::GatewayError::Forbidden(_))),
        "{err:?}"
    );
    let review_seq = g
        .record_review(
            &po,
            item.seq,
            ReviewOutcome::Appropriate,
            "Checked with the ward: patient was admitted unconscious.",
        )
        .await
        .expect("review");
    let bad = g
        .record_review(&po, review_seq, ReviewOutcome::Appropriate, "x")
        .await;
    assert!(
        matches!(bad, Err(mcr_gateway::GatewayError::Invalid(_))),
        "only alerts can be reviewed"
    );
    let queue = g
        .review_queue(&po, &ReviewFilter::default())
        .await
        .expect("queue");
    assert!(
        queue.items.iter().all(|i| i.seq != item.seq),
        "reviewed cases leave the queue"
    );
    let all = g
        .review_queue(
            &po,
            &ReviewFilter {
                include_reviewed: true,
                user_id: Some("hospice.ali".into()),
                ..ReviewFilter::default()
            },
        )
        .await
        .expect("queue");
    let reviewed = all
        .items
        .iter()
        .find(|i| i.seq == item.seq)
        .expect("still there on request");
    assert_eq!(reviewed.reviews[0].outcome, "appropriate");
    assert_eq!(reviewed.reviews[0].by_user_id, "po.wright");
    assert!(matches!(
        g.review_queue(&ctx(&t, "ae.okafor"), &ReviewFilter::default())
            .await,
        Err(mcr_gateway::GatewayError::Forbidden(_))
    ));

    // A user reaching more than 20 patients in an hour without a relationship is flagged.
    let mut others = Vec::new();
    for p in &t.demo.region.people {
        if others.len() == 21 {
            break;
        }
        if p.nhs_number.as_str() != patient
            && g.store()
                .patient(&p.nhs_number)
                .await
                .expect("index")
                .is_some()
        {
            others.push(p.nhs_number.clone());
        }
    }
    let ali = ctx(&t, "hospice.ali");
    for o in &others {
        g.claim_relationship(
            &ali,
            &RelationshipClaim {
                nhs_number: o.clone(),
                reason: "Referred for respite".into(),
                start: None,
                end: None,
            },
        )
        .await
        .expect("claim");
    }
    // A doctor viewing a patient with their own surname is flagged.
    let relative = t.demo.region.person(&n).expect("person").family.clone();
    let mut namesake = ctx(&t, "ae.okafor");
    namesake.principal.name = format!("Dr Chidi {}", relative.to_uppercase());
    g.emergency_access(
        &namesake,
        &EmergencyRequest {
            nhs_number: n.clone(),
            reason_code: "unconscious".into(),
            reason_text: "Found collapsed".into(),
        },
    )
    .await
    .expect("emergency");
    let ViewOutcome::Record(pending) = g.view_record(&namesake, &n).await.expect("view") else {
        panic!("the emergency view is permitted");
    };
    pending.committed().await.expect("audit committed");

    let queue = g
        .review_queue(&po, &ReviewFilter::default())
        .await
        .expect("queue");
    assert!(queue.anomalies.iter().any(|a| a.user_id == "hospice.ali" && matches!(a.flag, AnomalyFlag::ManyPatientsWithoutRelationship { patients, .. } if patients > 20)), "{:?}", queue.anomalies);
    assert!(
        queue.anomalies.iter().any(|a| a.user_id == "ae.okafor"
            && a.flag
                == AnomalyFlag::SameSurname {
                    patient: patient.clone()
                }),
        "{:?}",
        queue.anomalies
    );
    let claim = queue
        .items
        .iter()
        .find(|i| i.kind == "claim-relationship" && i.user_id == "hospice.ali")
        .expect("claims queued");
    assert!(claim
        .flags
        .iter()
        .any(|f| matches!(f, AnomalyFlag::ManyPatientsWithoutRelationship { .. })));
    let emergency = queue
        .items
        .iter()
        .find(|i| i.user_id == "ae.okafor" && i.kind == "emergency-access")
        .expect("namesake's emergency");
    assert!(emergency.flags.contains(&AnomalyFlag::SameSurname {
        patient: patient.clone()
    }));
}

#[tokio::test]
async fn views_are_refused_with_no_clinical_data_when_the_audit_trail_cannot_be_written() {
    let dir = tempfile::tempdir().expect("dir");
    let url = mcr_testkit::sqlite_url(dir.path());
    let t = start_with(Some(url.clone()), 1_500).await;
    let patient = t.patient("all_four_sources", 0);
    t.give_permission("ae.okafor", &patient).await;
    let (status, bundle) = t.everything("ae.okafor", &patient).await;
    assert_eq!(status, 200);
    // Words that only the clinical record holds: every coded display in the bundle.
    let mut clinical: Vec<String> = Vec::new();
    for e in bundle["entry"].as_array().expect("entries") {
        let r = &e["resource"];
        if matches!(
            r["resourceType"].as_str(),
            Some("Provenance" | "OperationOutcome" | "Patient")
        ) {
            continue;
        }
        for field in ["code", "medicationCodeableConcept"] {
            if let Some(d) = r[field]["coding"][0]["display"].as_str() {
                clinical.push(d.to_owned());
            }
        }
    }
    assert!(
        clinical.len() > 5,
        "the record has clinical items: {clinical:?}"
    );
    let family = t
        .demo
        .region
        .person(&nhs(&patient))
        .expect("person")
        .family
        .clone();

    // Signed in to the pages while the trail can still record the sign-in.
    let page = t.sign_in("ae.okafor").await;

    // The audit store refuses every new record (as a full disk or a lost volume would).
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    sqlx::raw_sql("CREATE TRIGGER audit_log_unwritable BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;")
        .execute(&pool)
        .await
        .expect("trigger");

    let (status, text) = t
        .get_text("ae.okafor", &format!("/fhir/Patient/{patient}/$everything"))
        .await;
    assert_eq!(status, 503, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"], "audit-unavailable",
        "{body}"
    );
    assert!(
        !text.contains("Bundle") && !text.contains(&family) && !text.contains(&patient),
        "{text}"
    );
    for c in &clinical {
        assert!(
            !text.contains(c.as_str()),
            "clinical text `{c}` in the refusal: {text}"
        );
    }
    // Nothing else is given out unaudited either.
    let (status, _) = t
        .get("ae.okafor", &format!("/fhir/Patient/{patient}"))
        .await;
    assert_eq!(status, 503);
    // The record page, sent in parts, sends not even its first part: the decision's audit
    // record comes before any byte.
    let resp = get_with_cookie(
        &page.http,
        t.url(&format!("/app/patient/{patient}")),
        &page.cookie,
    )
    .await;
    assert_eq!(resp.status(), 503);
    let html = resp.text().await.expect("html");
    assert!(
        !html.contains(&family) && !html.contains("Still asking"),
        "{html}"
    );
    for c in &clinical {
        assert!(!html.contains(c.as_str()), "clinical text `{c}`: {html}");
    }

    // Once the store can be written again, the view is served and the chain is intact.
    sqlx::raw_sql("DROP TRIGGER audit_log_unwritable")
        .execute(&pool)
        .await
        .expect("drop");
    let (status, _) = t.everything("ae.okafor", &patient).await;
    assert_eq!(status, 200);
    assert!(matches!(
        mcr_audit::verify(t.demo.gateway.gateway.store().as_ref())
            .await
            .expect("verify"),
        mcr_audit::Verification::Intact { .. }
    ));
}

/// Refusals before the gateway leave an audit record, aggregated: 50 bad NHS numbers in a
/// burst are one record saying 50, written within the flush interval, not 50 records.
#[tokio::test]
async fn refusals_before_the_gateway_are_audited_once_per_source_and_kind() {
    let t = start_opts(mcr::demo::DemoOptions {
        refusal_flush_seconds: 1,
        ..test_options()
    })
    .await;
    for _ in 0..50 {
        let (status, body) = t.get("ae.okafor", "/fhir/Patient/1234567890").await;
        assert_eq!(status, 400, "{body}");
    }
    // And a forged form from nobody in particular: counted by address.
    let resp = t
        .http
        .post(t.url("/opt-out"))
        .header("origin", "https://evil.example")
        .form(&[("given", "Ann")])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 403);
    let query = |action: &str| AuditQuery {
        actions: vec![action.into()],
        limit: 100,
        ..AuditQuery::default()
    };
    let store = t.demo.gateway.gateway.store().clone();
    let mut rows = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        rows = store
            .query_audit(&query("refused:invalid-nhs-number"))
            .await
            .expect("query");
        if !rows.is_empty() {
            break;
        }
    }
    assert_eq!(rows.len(), 1, "one aggregated record: {rows:?}");
    let payload: Value = serde_json::from_str(&rows[0].record.payload).expect("payload");
    assert_eq!(rows[0].record.user_id, "ae.okafor");
    assert_eq!(rows[0].record.outcome, "deny");
    assert!(
        payload.to_string().contains("50 request(s) refused"),
        "{payload}"
    );
    assert!(
        payload.get("patient").is_none_or(Value::is_null),
        "no patient named: {payload}"
    );
    // The form refusal may fall in the next flush: wait for it as for the first.
    let mut csrf = Vec::new();
    for _ in 0..50 {
        csrf = store
            .query_audit(&query("refused:csrf"))
            .await
            .expect("query");
        if !csrf.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(csrf.len(), 1, "{csrf:?}");
    assert!(
        csrf[0].record.payload.contains("address 127.0.0.1"),
        "{}",
        csrf[0].record.payload
    );
}
