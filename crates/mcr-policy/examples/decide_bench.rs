//! How long one decision takes. Run with:
//! `cargo run --release -p mcr-policy --example decide_bench`
//!
//! Times each decision on its own (so the figures include one `Instant::now()` pair, whose
//! cost is printed too) over 1,000,000 decisions per scenario.

use chrono::{Duration, TimeZone, Utc};
use mcr_domain::{NhsNumber, OdsCode, OrgKind, Organisation, Principal, Purpose, Role};
use mcr_policy::{
    decide, explain, DecisionRequest, ObjectionState, PermissionDecision, PermissionGiver,
    PermissionRecord, PolicyConfig, Relationship, RelationshipKind,
};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 1_000_000;

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99))
}

fn measure(mut f: impl FnMut()) -> (u64, u64) {
    for _ in 0..10_000 {
        f();
    }
    let mut ns = Vec::with_capacity(N);
    for _ in 0..N {
        let start = Instant::now();
        f();
        ns.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    percentiles(ns)
}

#[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc
        .with_ymd_and_hms(2025, 3, 1, 9, 0, 0)
        .single()
        .ok_or("bad time")?;
    let org = OdsCode::parse("RWH")?;
    let principal = Principal {
        role_profile: None,
        user_id: "dr-a".into(),
        name: "Dr A".into(),
        role: Role::Clinician,
        organisation: Organisation {
            code: org.clone(),
            name: "Lister Hospital".into(),
            kind: OrgKind::AcuteTrust,
            member: true,
            suspended: false,
        },
    };
    let patient = NhsNumber::parse("9434765919")?;
    // A realistic history: relationships and permissions at several organisations.
    let mut relationships = Vec::new();
    let mut permissions = Vec::new();
    for (i, code) in ["E82001", "RWH", "RY4", "RWR", "E82002", "RYV"]
        .iter()
        .enumerate()
    {
        let code = OdsCode::parse(code)?;
        relationships.push(Relationship {
            org_code: code.clone(),
            kind: if i == 0 {
                RelationshipKind::GpRegistration
            } else {
                RelationshipKind::RecentEncounter
            },
            derived: true,
            start: now - Duration::days(30),
            end: Some(now - Duration::days(2)),
            user_id: None,
        });
        for h in [72, 30, 2] {
            permissions.push(PermissionRecord {
                org_code: code.clone(),
                user_id: format!("user-{i}"),
                decision: PermissionDecision::Given,
                given_by: PermissionGiver::Patient,
                at: now - Duration::hours(h),
            });
        }
    }
    let cfg = PolicyConfig::default();
    let req = DecisionRequest {
        principal: &principal,
        patient: &patient,
        purpose: Purpose::DirectCare,
        now,
        relationships: &relationships,
        permissions: &permissions,
        objection: None,
        emergency: None,
        restricted: false,
    };
    let opted_out = ObjectionState::Active {
        recorded_at: now - Duration::days(5),
    };
    let req_opted_out = DecisionRequest {
        objection: Some(&opted_out),
        ..req
    };
    let req_needs_permission = DecisionRequest {
        permissions: &[],
        ..req
    };

    let (m, p) = measure(|| {
        black_box(Instant::now());
    });
    println!("timer overhead (Instant::now pair): median {m} ns, p99 {p} ns");
    println!("{N} decisions per scenario, default config (ask-once-record), 6 relationships, 18 permission records");
    for (name, r) in [
        ("permit", &req),
        ("needs-permission", &req_needs_permission),
        ("deny opted-out", &req_opted_out),
    ] {
        let (m, p) = measure(|| {
            black_box(decide(black_box(r), &cfg));
        });
        println!("decide  {name:<18} median {m:>6} ns   p99 {p:>6} ns");
    }
    let (m, p) = measure(|| {
        black_box(explain(black_box(&req), &cfg));
    });
    println!("explain {:<18} median {m:>6} ns   p99 {p:>6} ns", "permit");
    Ok(())
}
