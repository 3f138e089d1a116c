//! The ADT listener driven by an HL7 v2 sender this project did not write: the PyPI package
//! `hl7` (its `hl7.client.MLLPClient` sends, `hl7.parse` reads our ACKs), against the demo over
//! real HTTPS. An admission makes the acute trust's relationship count (`/access/explain`
//! names it), a discharge keeps it for the window, the cancels undo them; malformed messages
//! are answered AE/AR with reasons and kept in the held-message list.
//!
//! Needs `python3 -m pip install hl7==0.4.5`; fails (never skips) without it.

use crate::helpers::{relationship, start, unknown_patient};
use chrono::{DateTime, Duration, Utc};
use mcr_domain::Clock;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Sends each step with `hl7.client.MLLPClient` (one connection for the `send` steps) and
/// answers what came back, read with `hl7.parse`.
const SENDER: &str = r#"
import json, socket, sys
try:
    import hl7, hl7.client
except ImportError:
    sys.exit("the PyPI package hl7 is missing: python3 -m pip install hl7==0.4.5")
host, port = sys.argv[1], int(sys.argv[2])
steps = json.load(sys.stdin)
out = []
client = hl7.client.MLLPClient(host, port)
for step in steps:
    if step["op"] == "send":
        raw = client.send_message(step["message"]).decode("utf-8")
        text = raw.strip("\x0b\x1c\r")
        ack = hl7.parse(text)
        msa = ack.segment("MSA")
        def field(i):
            return str(msa[i]) if len(msa) > i else ""
        out.append({"msa1": field(1), "msa2": field(2), "msa3": field(3), "ack": text})
    elif step["op"] == "truncated":
        s = socket.create_connection((host, port))
        s.sendall(b"\x0b" + step["message"].encode("utf-8"))
        s.shutdown(socket.SHUT_WR)
        got = s.recv(4096)
        s.close()
        out.append({"answer": got.decode("utf-8", "replace")})
client.close()
json.dump(out, sys.stdout)
"#;

fn run_sender(addr: &str, steps: &Value) -> Vec<Value> {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut child = Command::new("python3")
        .args(["-c", SENDER, host, port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (with: python3 -m pip install hl7==0.4.5)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(steps.to_string().as_bytes())
        .expect("write steps");
    let out = child.wait_with_output().expect("sender ran");
    assert!(
        out.status.success(),
        "the HL7 sender failed (install it with `python3 -m pip install hl7==0.4.5`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the sender's JSON")
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%-d %b %Y").to_string()
}

/// An ADT message from the acute trust's PAS (`RWH`), PV1 fields as given.
fn adt(
    trigger: &str,
    control: &str,
    version: &str,
    facility: &str,
    nhs: &str,
    visit: &str,
    (admit, discharge): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> String {
    let mut pv1 = vec![String::new(); 46];
    pv1[1] = "1".into();
    pv1[2] = "I".into();
    pv1[3] = "WARD9^^^LISTER".into();
    pv1[10] = "MED".into();
    pv1[19] = visit.into();
    pv1[44] = admit.map(ts).unwrap_or_default();
    pv1[45] = discharge.map(ts).unwrap_or_default();
    format!(
        "MSH|^~\\&|PAS|{facility}|MCR|MCR01|{now}||ADT^{trigger}^ADT_A01|{control}|P|{version}\r\
         EVN|{trigger}|{now}\r\
         PID|1||{nhs}^^^NHS^NH~H123^^^RWH^MR||TEST^PATIENT\r\
         PV1|{pv1}",
        now = ts(mcr_domain::SystemClock.now()),
        pv1 = pv1[1..].join("|"),
    )
}

fn send(m: String) -> Value {
    json!({"op": "send", "message": m})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_sender_admits_discharges_cancels_and_sees_its_errors_held() {
    let t = start().await;
    let addr = t
        .demo
        .info
        .adt_address
        .clone()
        .expect("demo.json names the ADT listener");
    // Held in the acute trust's system, discharged long ago: no relationship any more.
    let nhs = t.patient("no_relationship_any_more", 0);
    let (decision, _) = relationship(&t, "ae.okafor", &nhs).await;
    assert_eq!(
        decision, "needs-relationship",
        "held in the system is not a relationship"
    );

    let now = mcr_domain::SystemClock.now();
    let admitted = now - Duration::days(1);
    let discharged = now - Duration::hours(2);
    let ack = run_sender(
        &addr,
        &json!([send(adt(
            "A01",
            "T-A01",
            "2.5.1",
            "RWH",
            &nhs,
            "TV1",
            (Some(admitted), None)
        ))]),
    );
    assert_eq!(ack[0]["msa1"], "AA", "{}", ack[0]["ack"]);
    assert_eq!(ack[0]["msa2"], "T-A01", "MSA-2 echoes MSH-10");
    let (decision, words) = relationship(&t, "ae.okafor", &nhs).await;
    assert_eq!(decision, "needs-permission");
    assert!(
        words.contains(&format!("admitted on {}", day(admitted))),
        "{words}"
    );

    let ack = run_sender(
        &addr,
        &json!([send(adt(
            "A03",
            "T-A03",
            "2.4",
            "RWH",
            &nhs,
            "TV1",
            (Some(admitted), Some(discharged))
        ))]),
    );
    assert_eq!(ack[0]["msa1"], "AA", "{}", ack[0]["ack"]);
    let (decision, words) = relationship(&t, "ae.okafor", &nhs).await;
    assert_eq!(decision, "needs-permission");
    assert!(
        words.contains(&format!("discharged {}, within 90 days", day(discharged))),
        "{words}"
    );

    // A13 cancels the discharge (admitted again), A11 the admission (nothing left).
    let acks = run_sender(
        &addr,
        &json!([send(adt(
            "A13",
            "T-A13",
            "2.5",
            "RWH",
            &nhs,
            "TV1",
            (None, None)
        )),]),
    );
    assert_eq!(acks[0]["msa1"], "AA", "{}", acks[0]["ack"]);
    let (_, words) = relationship(&t, "ae.okafor", &nhs).await;
    assert!(words.contains("admitted on"), "{words}");
    let acks = run_sender(
        &addr,
        &json!([
            send(adt("A11", "T-A11", "2.5", "RWH", &nhs, "TV1", (None, None))),
            send(adt(
                "A11",
                "T-A11-again",
                "2.5",
                "RWH",
                &nhs,
                "TV1",
                (None, None)
            )),
        ]),
    );
    assert_eq!(acks[0]["msa1"], "AA", "{}", acks[0]["ack"]);
    assert_eq!(acks[1]["msa1"], "AE", "nothing left to cancel");
    let (decision, _) = relationship(&t, "ae.okafor", &nhs).await;
    assert_eq!(decision, "needs-relationship");

    // Malformed and refused messages: each answered with a reason, each kept for review.
    let stranger = unknown_patient(&t).await;
    let big = adt(
        "A01",
        "T-BIG",
        "2.5",
        "RWH",
        &nhs,
        "TV2",
        (Some(admitted), None),
    ) + &format!("\rNTE|1||{}", "x".repeat(70_000));
    let acks = run_sender(
        &addr,
        &json!([
            send(format!("MSX|^~\\&|PAS|RWH|||{}||ADT^A01|T-BADMSH|P|2.5", ts(now))),
            send(adt("A01", "T-UNKNOWN", "2.5", "RWH", &stranger, "TV3", (Some(admitted), None))),
            send(adt("A01", "T-OLD", "2.3", "RWH", &nhs, "TV4", (Some(admitted), None))),
            send(adt("A01", "T-WHO", "2.5", "NOTUS", &nhs, "TV5", (Some(admitted), None))),
            send(big),
            send(adt("A01", "T-NOVISIT", "2.5", "RWH", &nhs, "", (Some(admitted), None))),
            {"op": "truncated", "message": adt("A01", "T-CUT", "2.5", "RWH", &nhs, "TV6", (Some(admitted), None))},
        ]),
    );
    let expect = [
        ("AR", "", "MSH"),
        ("AE", "T-UNKNOWN", "no patient"),
        ("AR", "T-OLD", "2.3"),
        ("AR", "T-WHO", "NOTUS"),
        ("AR", "T-BIG", "larger than"),
        ("AE", "T-NOVISIT", "PV1-19"),
    ];
    for (got, (code, control, reason)) in acks.iter().zip(expect) {
        assert_eq!(got["msa1"], code, "{}", got["ack"]);
        assert_eq!(got["msa2"], control, "{}", got["ack"]);
        assert!(
            got["msa3"].as_str().unwrap_or_default().contains(reason),
            "MSA-3 should say {reason}: {}",
            got["ack"]
        );
        assert!(
            got["ack"].as_str().unwrap_or_default().contains("\rERR|"),
            "{}",
            got["ack"]
        );
    }
    assert_eq!(
        acks[6]["answer"], "",
        "a cut-short frame has no one to answer"
    );

    // The held list: for privacy officers only.
    let (status, _) = t.get("ae.okafor", "/feeds/held").await;
    assert_eq!(status, 403);
    let (status, body) = t.get("po.wright", "/feeds/held?limit=50").await;
    assert_eq!(status, 200, "{body}");
    let held = body["held"].as_array().expect("held list");
    for (control, reason) in [
        ("T-A11-again", "no event"),
        ("T-UNKNOWN", "no patient"),
        ("T-OLD", "2.3"),
        ("T-WHO", "NOTUS"),
        ("T-BIG", "larger than"),
        ("T-NOVISIT", "PV1-19"),
        ("T-CUT", "truncated"),
    ] {
        assert!(
            held.iter().any(|h| h["controlId"] == control
                && h["reason"].as_str().unwrap_or_default().contains(reason)),
            "{control} held with `{reason}`: {body}"
        );
    }
    assert!(
        held.iter()
            .any(|h| h["controlId"].is_null() && h["ack"] == "AR"),
        "the unreadable message is held too: {body}"
    );
    assert!(
        !body.to_string().contains("TEST^PATIENT") && !body.to_string().contains("xxxx"),
        "no content kept"
    );
    t.demo.stop().await;
}
