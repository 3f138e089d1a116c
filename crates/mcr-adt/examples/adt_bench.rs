//! Messages per second through the ADT listener, with ACKs, over MLLP on loopback: the real
//! listener and gateway on a fresh SQLite store, each accepted message applied and audited.
//!
//! `cargo run --release -p mcr-adt --example adt_bench -- [CONNECTIONS] [MESSAGES_EACH]`
//! (default 8 connections x 2,000 messages). Each connection sends A08 updates for known
//! patients one after another, waiting for each ACK, as MLLP senders do.

use chrono::NaiveDate;
use mcr_adt::listener::send_framed;
use mcr_adt::{serve, ListenerConfig, SenderConfig, Transport};
use mcr_domain::{Clock, NhsNumber, OdsCode, OrgKind, Organisation, SystemClock};
use mcr_federation::{Federation, FederationConfig};
use mcr_gateway::{Gateway, OrgRegistry};
use mcr_store::IndexedPatient;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Valid NHS numbers: 9 digits and the modulus 11 check digit.
fn nhs_numbers(n: usize) -> Vec<NhsNumber> {
    (100_000_000u64..)
        .filter_map(|stem| (0..10).find_map(|d| NhsNumber::parse(&format!("{stem}{d}")).ok()))
        .take(n)
        .collect()
}

#[expect(clippy::print_stdout, reason = "the benchmark's figure is its output")]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let each: usize = args.next().map_or(Ok(2_000), |a| a.parse())?;

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = mcr_store::connect_and_migrate(&url).await?;
    let patients = nhs_numbers(1_000);
    let rows: Vec<IndexedPatient> = patients
        .iter()
        .map(|n| IndexedPatient {
            nhs_number: n.clone(),
            family: "BENCH".into(),
            given: "PATIENT".into(),
            birth_date: NaiveDate::from_ymd_opt(1960, 1, 1).unwrap_or_default(),
            gender: None,
            postcode: None,
            address: None,
            gp_practice: None,
            updated_at: SystemClock.now(),
        })
        .collect();
    store.upsert_patients(&rows).await?;
    let acute = Organisation {
        code: OdsCode::parse("RWH")?,
        name: "Bench acute trust".into(),
        kind: OrgKind::AcuteTrust,
        member: true,
        suspended: false,
    };
    let federation = Arc::new(Federation::new(Vec::new(), FederationConfig::default()));
    let gateway = Gateway::new(
        store,
        federation,
        Arc::new(SystemClock),
        mcr_policy::PolicyConfig::default(),
        OrgRegistry::new([acute.clone()]),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let adt = serve(
        listener,
        Transport::PlainLoopback,
        ListenerConfig {
            senders: vec![SenderConfig {
                facility: "RWH".into(),
                org: acute.code.clone(),
            }],
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            receiving_application: "MCR".into(),
            receiving_facility: "MCR01".into(),
        },
        gateway,
    )?;
    let addr = adt.addr;
    let patients = Arc::new(patients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let patients = Arc::clone(&patients);
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut refused = 0usize;
            for i in 0..each {
                let nhs = &patients[(c * each + i) % patients.len()];
                let m = format!(
                    "MSH|^~\\&|PAS|RWH|MCR|MCR01|20261130101500||ADT^A08^ADT_A01|B{c}-{i}|P|2.5.1\r\
                     EVN|A08|20261130101500\r\
                     PID|1||{nhs}^^^NHS^NH\r\
                     PV1|1|I|WARD{w}^^^LISTER|||||||MED|||||||||V{nhs}|||||||||||||||||||||||||20261130093000",
                    w = i % 20
                );
                let ack = send_framed(&mut stream, &m).await?;
                if !ack.contains("MSA|AA|") {
                    refused += 1;
                }
            }
            Ok::<usize, std::io::Error>(refused)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = connections * each;
    println!(
        "{total} ADT messages with ACKs over {connections} MLLP connections in {secs:.2} s: {:.0} messages/s ({refused} not AA)",
        total as f64 / secs
    );
    adt.stop();
    Ok(())
}
