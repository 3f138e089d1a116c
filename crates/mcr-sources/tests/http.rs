//! Real HTTP against sources started on 127.0.0.1 port 0.
#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions; a panic is how a test reports failure"
)]

use mcr_domain::NhsNumber;
use mcr_sources::{serve, Behaviour, Failure, SourceHandle};
use mcr_synth::{generate, Region, SynthConfig};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn region() -> &'static Region {
    static REGION: OnceLock<Region> = OnceLock::new();
    REGION.get_or_init(|| {
        generate(&SynthConfig {
            patients: 600,
            ..SynthConfig::default()
        })
    })
}

async fn start(source: &str, behaviour: Behaviour) -> SourceHandle {
    let slice = Arc::clone(region().source(source).expect("source exists"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(slice, listener, behaviour).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn metadata_is_truthful() {
    let h = start("community", Behaviour::healthy()).await;
    let (status, cs) = get_json(&format!("{}/metadata", h.base_url())).await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let types: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, h.slice().resource_types);
    assert!(types.contains(&"CarePlan") && !types.contains(&"MedicationStatement"));
}

#[tokio::test]
async fn patient_search_by_identifier_name_and_birthdate() {
    let h = start("gp", Behaviour::healthy()).await;
    let sp = h
        .slice()
        .patients()
        .iter()
        .find(|p| p.nhs_number.is_some())
        .unwrap();
    let nhs = sp.nhs_number.as_ref().unwrap();
    let url = format!(
        "{}/Patient?identifier={}%7C{}",
        h.base_url(),
        NhsNumber::SYSTEM,
        nhs
    );
    let (status, b) = get_json(&url).await;
    assert_eq!(status, 200);
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], sp.local_id.as_str());

    let name = &sp.resource["name"][0];
    let family = name["family"].as_str().unwrap();
    let given = name["given"][0].as_str().unwrap();
    let birth = sp.resource["birthDate"].as_str().unwrap();
    let url = format!(
        "{}/Patient?family={}&given={}&birthdate={}",
        h.base_url(),
        family.to_lowercase(),
        given,
        birth
    );
    let (_, b) = get_json(&url).await;
    let ids: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&sp.local_id.as_str()));
    for e in b["entry"].as_array().unwrap() {
        assert_eq!(e["resource"]["birthDate"], birth);
    }

    let (status, b) = get_json(&format!("{}/Patient?identifier=9999999999", h.base_url())).await;
    assert_eq!((status, b["total"].as_u64()), (200, Some(0)));
    let (status, b) = get_json(&format!("{}/Patient?birthdate=yesterday", h.base_url())).await;
    assert_eq!(status, 400);
    assert_eq!(b["resourceType"], "OperationOutcome");
    let (status, _) = get_json(&format!("{}/Patient?_count=lots", h.base_url())).await;
    assert_eq!(status, 400);
    let (status, _) = get_json(&format!("{}/Patient?colour=blue", h.base_url())).await;
    assert_eq!(status, 400);
}

async fn walk(first: String) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut next = Some(first);
    let mut total = 0;
    while let Some(url) = next.take() {
        let (status, b) = get_json(&url).await;
        assert_eq!(status, 200);
        total = usize::try_from(b["total"].as_u64().unwrap()).unwrap();
        for e in b["entry"].as_array().unwrap() {
            ids.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    (ids, total)
}

#[tokio::test]
async fn paging_walk_returns_everything_exactly_once() {
    let h = start("acute", Behaviour::healthy()).await;
    let (ids, total) = walk(format!("{}/Patient?_count=37", h.base_url())).await;
    let expected: HashSet<String> = h
        .slice()
        .patients()
        .iter()
        .map(|p| p.local_id.clone())
        .collect();
    assert_eq!(total, expected.len());
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), expected);

    let sp = &h.slice().patients()[3];
    let want: Vec<String> = h
        .slice()
        .resources(&sp.local_id, "Observation")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let url = format!(
        "{}/Observation?subject=Patient/{}&_count=7",
        h.base_url(),
        sp.local_id
    );
    let (got, total) = walk(url).await;
    assert_eq!(total, want.len());
    assert_eq!(got, want);
    // `patient=` works the same, default page size 50.
    let (status, b) = get_json(&format!(
        "{}/Observation?patient={}",
        h.base_url(),
        sp.local_id
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(b["entry"].as_array().unwrap().len(), want.len().min(50));
}

#[tokio::test]
async fn incremental_sync_by_last_updated() {
    let h = start("gp", Behaviour::healthy()).await;
    let since = "2026-01-01T00:00:00+00:00";
    let want = h
        .slice()
        .patients()
        .iter()
        .filter(|p| p.last_updated.as_str() > "2026-01-01T00:00:00Z")
        .count();
    let (ids, total) = walk(format!(
        "{}/Patient?_lastUpdated=gt{}&_count=1000",
        h.base_url(),
        since.replace('+', "%2B")
    ))
    .await;
    assert_eq!(total, want);
    assert_eq!(ids.len(), want);
    assert!(want > 0 && want < h.slice().patients().len());
}

#[tokio::test]
async fn unknown_things_are_404_operation_outcomes() {
    let h = start("socialcare", Behaviour::healthy()).await;
    for path in [
        "/Patient/nobody",
        "/Observation?patient=x",
        "/Banana?patient=x",
        "/nothing/here/at/all",
    ] {
        let (status, b) = get_json(&format!("{}{path}", h.base_url())).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    let sp = &h.slice().patients()[0];
    let (status, b) = get_json(&format!("{}/Patient/{}", h.base_url(), sp.local_id)).await;
    assert_eq!(status, 200);
    assert_eq!(b, sp.resource);
    let plan = &h.slice().resources(&sp.local_id, "CarePlan")[0];
    let (status, b) = get_json(&format!(
        "{}/CarePlan/{}",
        h.base_url(),
        plan["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!((status, &b), (200, plan));
    let (status, _) = get_json(&format!("{}/CarePlan", h.base_url())).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_repeated_search_gives_the_same_answer_and_failures_still_apply() {
    let h = start("gp", Behaviour::healthy()).await;
    let sp = &h.slice().patients()[5];
    let page = |offset: usize| {
        format!(
            "{}/Observation?patient={}&_count=3&_offset={offset}",
            h.base_url(),
            sp.local_id
        )
    };
    let body = |url: String| async move {
        let r = client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    };
    let (status, first) = body(page(0)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body(page(0)).await,
        (200, first.clone()),
        "same search, same answer"
    );
    let (_, second) = body(page(3)).await;
    assert_ne!(first, second, "another page is another answer");
    let (_, someone_else) = body(format!(
        "{}/Observation?patient={}&_count=3&_offset=0",
        h.base_url(),
        h.slice().patients()[6].local_id
    ))
    .await;
    assert_ne!(first, someone_else, "another patient is another answer");

    // A behaviour set later applies to searches already answered once.
    h.set_behaviour(Behaviour::failing(Failure::Status(503)));
    assert_eq!(body(page(0)).await.0, 503);
}

#[tokio::test]
async fn failure_status_malformed_and_huge() {
    let h = start("gp", Behaviour::failing(Failure::Status(503))).await;
    let (status, b) = get_json(&format!("{}/Patient", h.base_url())).await;
    assert_eq!(status, 503);
    assert_eq!(b["resourceType"], "OperationOutcome");

    h.set_behaviour(Behaviour::failing(Failure::Malformed));
    let r = client()
        .get(format!("{}/metadata", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    h.set_behaviour(Behaviour::failing(Failure::Huge(300_000)));
    let r = client()
        .get(format!("{}/Patient", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 300_000);
}

#[tokio::test]
async fn failure_hang_never_answers() {
    let h = start("gp", Behaviour::failing(Failure::Hang)).await;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = c
        .get(format!("{}/Patient", h.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(h.requests_served(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn failure_drop_closes_the_connection() {
    let h = start("gp", Behaviour::failing(Failure::Drop)).await;
    let err = client()
        .get(format!("{}/Patient", h.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    assert_eq!(h.requests_served(), 1);

    // On a connection already open, the answer is cut off.
    h.set_behaviour(Behaviour::healthy());
    let c = client();
    assert_eq!(
        c.get(format!("{}/metadata", h.base_url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    h.set_behaviour(Behaviour::failing(Failure::Drop));
    let result = match c.get(format!("{}/Patient", h.base_url())).send().await {
        Ok(r) => r.bytes().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(result.is_err());
}

#[tokio::test]
async fn latency_is_applied() {
    let h = start("acute", Behaviour::with_latency(150, 200)).await;
    let t = Instant::now();
    let (status, _) = get_json(&format!("{}/metadata", h.base_url())).await;
    assert_eq!(status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    h.set_behaviour(Behaviour::healthy());
    let t = Instant::now();
    get_json(&format!("{}/metadata", h.base_url())).await;
    assert!(t.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn counter_and_control_endpoints() {
    let h = start("community", Behaviour::healthy()).await;
    assert_eq!(h.requests_served(), 0);
    let c = client();
    let stats: Value = c
        .get(format!("{}/_control/stats", h.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests_served"], 0);
    assert_eq!(
        h.requests_served(),
        0,
        "control endpoints are not FHIR requests"
    );
    get_json(&format!("{}/metadata", h.base_url())).await;
    get_json(&format!("{}/Patient?_count=1", h.base_url())).await;
    assert_eq!(h.requests_served(), 2);

    let r = c
        .put(format!("{}/_control/behaviour", h.base_url()))
        .json(&serde_json::json!({ "latency_ms": [0, 0], "failure": { "status": 502 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.behaviour().failure, Failure::Status(502));
    let (status, _) = get_json(&format!("{}/metadata", h.base_url())).await;
    assert_eq!(status, 502);
    let stats: Value = c
        .get(format!("{}/_control/stats", h.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests_served"], 3);
    assert_eq!(stats["behaviour"]["failure"]["status"], 502);
    let r = c
        .put(format!("{}/_control/behaviour", h.base_url()))
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn behaviour_from_toml() {
    #[derive(serde::Deserialize)]
    struct Cfg {
        a: Behaviour,
        b: Behaviour,
        c: Behaviour,
        d: Behaviour,
    }
    let cfg: Cfg = toml::from_str(
        r#"
        [a]
        latency_ms = [20, 80]
        failure = "none"
        [b]
        failure = { status = 500 }
        [c]
        failure = { huge = 10485760 }
        [d]
        failure = "drop"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.a, Behaviour::with_latency(20, 80));
    assert_eq!(cfg.b.failure, Failure::Status(500));
    assert_eq!(cfg.c.failure, Failure::Huge(10_485_760));
    assert_eq!(cfg.d.failure, Failure::Drop);
    for s in ["\"hang\"", "\"malformed\""] {
        let b: Behaviour = toml::from_str(&format!("failure = {s}")).unwrap();
        assert_ne!(b.failure, Failure::None);
    }
}

async fn post_batch(h: &SourceHandle, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}/", h.base_url()))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_batch_is_answered_in_order_each_entry_as_its_own_request_would_be() {
    let h = start("gp", Behaviour::healthy()).await;
    let (_, cs) = get_json(&format!("{}/metadata", h.base_url())).await;
    assert_eq!(cs["rest"][0]["interaction"][0]["code"], "batch");
    let sp = h
        .slice()
        .patients()
        .iter()
        .find(|p| h.slice().resources(&p.local_id, "Observation").len() > 3)
        .unwrap();
    let id = &sp.local_id;
    let urls = [
        format!("Observation?patient={id}&_count=2"),
        format!("Patient/{id}"),
        format!("Condition?patient={id}"),
        "Observation".to_owned(),
        format!("Patient/{id}x"),
    ];
    let mut entries: Vec<Value> = urls
        .iter()
        .map(|u| serde_json::json!({ "request": { "method": "GET", "url": u } }))
        .collect();
    entries.push(
        serde_json::json!({ "request": { "method": "DELETE", "url": format!("Patient/{id}") } }),
    );
    entries.push(serde_json::json!({ "request": { "method": "GET", "url": "https://elsewhere.example/Patient" } }));
    let (status, answer) = post_batch(
        &h,
        &serde_json::json!({ "resourceType": "Bundle", "type": "batch", "entry": entries }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], "batch-response");
    let got = answer["entry"].as_array().unwrap();
    assert_eq!(got.len(), 7);
    // The successes are what the same GETs answer, byte for byte as JSON.
    for (i, url) in urls.iter().enumerate().take(3) {
        let (s, alone) = get_json(&format!("{}/{url}", h.base_url())).await;
        assert_eq!(s, 200, "{url}");
        assert_eq!(got[i]["resource"], alone, "{url}");
        assert_eq!(got[i]["response"]["status"], "200 OK");
    }
    // The first search pages on, as it would alone.
    assert!(got[0]["resource"]["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));
    // A search without its patient, an unknown id, a write and another server: each fails in
    // its own entry, with an OperationOutcome, and the rest are still answered.
    let statuses: Vec<&str> = got[3..]
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "400 Bad Request",
            "404 Not Found",
            "405 Method Not Allowed",
            "400 Bad Request"
        ]
    );
    for e in &got[3..] {
        assert!(e.get("resource").is_none());
        assert_eq!(e["response"]["outcome"]["resourceType"], "OperationOutcome");
    }
    // One request: counted once, so the simulated latency is paid once.
    assert_eq!(h.requests_served(), 5);
}

#[tokio::test]
async fn what_is_not_a_batch_is_refused_whole() {
    let h = start("acute", Behaviour::healthy()).await;
    let too_many: Vec<Value> = (0..101)
        .map(|_| serde_json::json!({ "request": { "method": "GET", "url": "Patient/x" } }))
        .collect();
    for body in [
        serde_json::json!({ "resourceType": "Patient" }),
        serde_json::json!({ "resourceType": "Bundle", "type": "transaction", "entry": [] }),
        serde_json::json!({ "resourceType": "Bundle", "type": "batch", "entry": {} }),
        serde_json::json!({ "resourceType": "Bundle", "type": "batch", "entry": too_many }),
    ] {
        let (status, oo) = post_batch(&h, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    let r = client()
        .post(format!("{}/", h.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Failures apply to a batch as to any request.
    h.set_behaviour(Behaviour::failing(Failure::Status(503)));
    let (status, _) = post_batch(
        &h,
        &serde_json::json!({ "resourceType": "Bundle", "type": "batch", "entry": [] }),
    )
    .await;
    assert_eq!(status, 503);
}
