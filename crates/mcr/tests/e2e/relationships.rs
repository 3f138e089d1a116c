//! Care relationships come from care events, over real HTTPS against the demo: each sample
//! patient `demo.json` names for a relationship kind has that relationship, `explain` names
//! the event with its date, and the patient discharged long ago has none any more (before
//! issue 16, being held in the acute trust's system was a relationship for ever). The ADT
//! listener over mutual TLS takes a sender only with its own organisation's certificate.

use crate::helpers::{nhs, relationship, start, TestDemo};
use mcr_adt::listener::send_framed;
use mcr_adt::{ListenerConfig, SenderConfig, Transport};
use mcr_domain::{Clock, OdsCode, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// The decision and the relationship rule's sentence for `user` and the sample patient.
async fn explain(t: &TestDemo, user: &str, case: &str) -> (String, String) {
    relationship(t, user, &t.patient(case, 0)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sample_patient_has_the_relationship_its_care_events_give() {
    let t = start().await;
    let today = SystemClock.now();
    let day = |d: i64| {
        (today + chrono::Duration::days(d))
            .format("%-d %b %Y")
            .to_string()
    };
    // The demo's attendances end three hours after they start.
    let attended = (today - chrono::Duration::days(10) + chrono::Duration::hours(3))
        .format("%-d %b %Y")
        .to_string();
    let cases = [
        // (user, demo.json case, words the relationship step must contain)
        (
            "ae.okafor",
            "relationship_admitted",
            format!("admitted on {}", day(-2)),
        ),
        (
            "ae.okafor",
            "relationship_recent_attendance",
            format!("seen on {attended}, within 90 days"),
        ),
        (
            "ae.okafor",
            "relationship_recent_discharge",
            format!("discharged {}, within 90 days", day(-20)),
        ),
        (
            "ae.okafor",
            "relationship_upcoming_appointment",
            format!("appointment on {}", day(10)),
        ),
        (
            "ae.okafor",
            "relationship_referral",
            "referred on".to_owned(),
        ),
        (
            "nurse.evans",
            "relationship_open_community_episode",
            "on this organisation's caseload since".to_owned(),
        ),
        (
            "sw.khan",
            "relationship_social_care_allocation",
            "social care case allocated on".to_owned(),
        ),
        (
            "gp.patel",
            "relationship_gp_registration",
            "registered with this practice since".to_owned(),
        ),
    ];
    for (user, case, words) in cases {
        let (decision, step) = explain(&t, user, case).await;
        assert_eq!(decision, "needs-permission", "{user} {case}: {step}");
        assert!(
            step.contains(&words),
            "{user} {case}: `{step}` should say `{words}`"
        );
    }
    // Held in the acute trust's system, discharged 190 days ago: no relationship any more.
    let (decision, step) = explain(&t, "ae.okafor", "no_relationship_any_more").await;
    assert_eq!(decision, "needs-relationship", "{step}");
    // And the gateway does not keep that discharge: events too old to count anywhere are
    // removed (on a timer; here at once), and the removal is audited with its count.
    let g = &t.demo.gateway.gateway;
    let gone = nhs(&t.patient("no_relationship_any_more", 0));
    let held = |events: Vec<mcr_store::CareEventRow>| {
        events.into_iter().filter(|e| e.origin == "adt").count()
    };
    let before = held(g.store().governance(&gone).await.expect("read").care_events);
    assert!(before > 0, "the old discharge was recorded");
    let removed = g.prune_care_events().await.expect("prune");
    assert!(removed >= 1, "{removed}");
    assert_eq!(
        held(g.store().governance(&gone).await.expect("read").care_events),
        0
    );
    let rows = g
        .store()
        .query_audit(&mcr_store::AuditQuery {
            actions: vec!["prune-care-events".into()],
            limit: 1,
            ..mcr_store::AuditQuery::default()
        })
        .await
        .expect("query");
    let row = rows.first().expect("the removal is audited");
    assert!(
        row.record
            .payload
            .contains(&format!("{removed} care event(s)")),
        "{}",
        row.record.payload
    );
    assert!(
        !row.record.payload.contains(gone.as_str()),
        "no patient named"
    );
    let (decision, _) = explain(&t, "ae.okafor", "no_relationship_any_more").await;
    assert_eq!(decision, "needs-relationship");
    let (decision, step) = explain(&t, "ae.okafor", "relationship_recent_discharge").await;
    assert_eq!(
        decision, "needs-permission",
        "recent events are kept: {step}"
    );
    // An organisation with no care event for the patient has none either.
    let (decision, _) = explain(&t, "hospice.ali", "relationship_admitted").await;
    assert_eq!(decision, "needs-relationship");
    t.demo.stop().await;
}

/// An A01 from sending facility `RWH` for `nhs`.
fn a01(nhs: &str, control: &str) -> String {
    let now = SystemClock.now().format("%Y%m%d%H%M%S+0000");
    format!(
        "MSH|^~\\&|PAS|RWH|MCR|MCR01|{now}||ADT^A01^ADT_A01|{control}|P|2.5.1\r\
         EVN|A01|{now}\r\
         PID|1||{nhs}^^^NHS^NH\r\
         PV1|1|I|WARD1|||||||MED|||||||||TLS{control}|||||||||||||||||||||||||{now}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn over_mutual_tls_the_certificate_must_be_the_sending_facilitys() {
    let t = start().await;
    let ca = t.demo.info.ca_cert.clone().expect("demo CA");
    let data_dir = ca
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the data directory");
    let pki = mcr::demo::DemoPki::open(data_dir, SystemClock.now().date_naive()).expect("pki");
    let (_, server) = pki
        .issue("MCR01", "My Care Record gateway", &[])
        .expect("server certificate");
    let tls = mcr_tls::mtls_server_config(server, pki.roots.clone(), Default::default())
        .expect("TLS configuration");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let adt = mcr_adt::serve(
        listener,
        Transport::Tls(tls),
        ListenerConfig {
            senders: vec![SenderConfig {
                facility: "RWH".into(),
                org: OdsCode::parse("RWH").expect("ods"),
            }],
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
            max_connections: 8,
            receiving_application: "MCR".into(),
            receiving_facility: "MCR01".into(),
        },
        t.demo.gateway.gateway.clone(),
    )
    .expect("listener");
    let nhs = t.patient("relationship_admitted", 0);
    for (org, want) in [("RWH", "AA"), ("RY4", "AR")] {
        let (_, identity) = pki.issue(org, org, &[]).expect("client certificate");
        let client = mcr_tls::client_config(pki.roots.clone(), Some(identity)).expect("client");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(adt.addr)
            .await
            .expect("connect");
        let name = mcr_tls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut stream = connector.connect(name, tcp).await.expect("handshake");
        let ack = send_framed(&mut stream, &a01(&nhs, &format!("TLS-{org}")))
            .await
            .expect("an ACK");
        let msa = mcr_adt::parse::parse(&ack).expect("ACK parses");
        assert_eq!(msa.get("MSA", 1, 1).as_deref(), Some(want), "{org}: {ack}");
        assert_eq!(
            msa.get("MSA", 2, 1).as_deref(),
            Some(format!("TLS-{org}").as_str())
        );
    }
    // No certificate at all: no handshake.
    let anonymous = mcr_tls::client_config(pki.roots.clone(), None).expect("client");
    let tcp = tokio::net::TcpStream::connect(adt.addr)
        .await
        .expect("connect");
    let name = mcr_tls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let refused = match tokio_rustls::TlsConnector::from(Arc::new(anonymous))
        .connect(name, tcp)
        .await
    {
        Err(_) => true,
        // TLS 1.3: the server's refusal arrives with the first read.
        Ok(mut s) => send_framed(&mut s, &a01(&nhs, "TLS-NONE")).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    adt.stop();
    t.demo.stop().await;
}
