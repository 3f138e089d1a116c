//! The demo's cases, set up through the gateway like any change: an opt-out and an override
//! recorded by the privacy officer (once per data directory), the acute trust's ADT feed
//! announcing admissions, attendances and discharges, and the sample patients of each case
//! written into `demo.json`.

use super::cast::{confidential_at_gp, first, with_legal_decisions, with_pdf_documents, Cast};
use super::{DemoInfo, DemoOptions};
use crate::app::Running;
use anyhow::Context;
use mcr_domain::{NhsNumber, Principal, Role};
use mcr_gateway::{ObjectionRequest, RequestContext};
use mcr_synth::Region;
use std::net::SocketAddr;

/// Record the governance cases, announce the care events and name each case's patients in
/// `info`.
pub(super) async fn set_up(
    opts: &DemoOptions,
    region: &Region,
    gateway: &Running,
    info: &mut DemoInfo,
    cast: &Cast,
    gp_errors: &[(NhsNumber, mcr_sources::GpcError)],
    adt_addr: SocketAddr,
) -> anyhow::Result<()> {
    let (acute, all_four) = (&cast.acute, &cast.all_four);
    // Patients for each case. Governance cases are recorded through the gateway, like any
    // change, and only once per data directory.
    let s = &region.samples;
    let pick = |list: &[NhsNumber], n: usize| {
        list.iter()
            .take(n)
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
    };
    let opted_out = s
        .all_four
        .get(1)
        .cloned()
        .context("need a second all-four patient")?;
    let overridden = s
        .all_four
        .get(2)
        .cloned()
        .context("need a third all-four patient")?;
    let officer = info
        .users
        .iter()
        .find(|u| u.role == Role::PrivacyOfficer)
        .cloned()
        .context("privacy officer")?;
    let ctx = RequestContext {
        principal: Principal {
            role_profile: None,
            user_id: officer.id.clone(),
            name: officer.name.clone(),
            role: officer.role,
            organisation: acute.clone(),
        },
        correlation_id: "demo-setup".into(),
        system: None,
    };
    let records = gateway.gateway.store().governance(&opted_out).await?;
    if records.objections.is_empty() {
        gateway
            .gateway
            .record_objection(
                &ctx,
                &ObjectionRequest::Record {
                    nhs_number: opted_out.clone(),
                    on_whose_word: "patient (letter to GP)".into(),
                    note: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("recording the demo opt-out: {e}"))?;
    }
    // The override runs out (at most `override_max_days`): a demo data directory older than
    // that gets a fresh one, so the sample stays "overridden".
    let records = gateway.gateway.store().governance(&overridden).await?;
    let now = gateway.gateway.clock().now();
    let mut steps = Vec::new();
    if records.objections.is_empty() {
        steps.push(ObjectionRequest::Record {
            nhs_number: overridden.clone(),
            on_whose_word: "patient (opt-out form)".into(),
            note: None,
        });
    }
    let in_force = records
        .objections
        .last()
        .is_some_and(|o| o.state == "overridden" && o.ends_at.is_some_and(|e| e > now));
    if !in_force {
        steps.push(ObjectionRequest::Override {
            nhs_number: overridden.clone(),
            reason: "safeguarding".into(),
            note: "Child protection case conference: records needed by the care team.".into(),
            until: Some(now + chrono::Duration::days(28)),
        });
    }
    for req in steps {
        gateway
            .gateway
            .record_objection(&ctx, &req)
            .await
            .map_err(|e| anyhow::anyhow!("recording the demo override: {e}"))?;
    }
    info.patients
        .insert("all_four_sources".into(), vec![all_four.to_string()]);
    info.patients
        .insert("needs_permission".into(), pick(&s.all_four[3..], 3));
    info.patients.insert("gp_only".into(), pick(&s.gp_only, 3));
    // Patient matching: a twin's hospital record in review against this patient, and a
    // parent's hospital record carrying this patient's NHS number (the record view warns).
    info.patients
        .insert("matching_twin".into(), pick(&s.acute_twin, 2));
    info.patients.insert(
        "matching_wrong_nhs_number".into(),
        pick(&s.acute_wrong_nhs_number, 2),
    );
    info.patients.insert(
        "matched_by_demographics_only".into(),
        pick(&s.demographics_only, 3),
    );
    info.patients.insert(
        "name_differs_between_sources".into(),
        pick(&s.name_differs, 3),
    );
    info.patients
        .insert("duplicated_items".into(), pick(&s.duplicated_items, 3));
    info.patients
        .insert("dose_discrepancy".into(), pick(&s.dose_discrepancy, 3));
    info.patients
        .insert("sensitive_items".into(), pick(&s.sensitive, 3));
    info.patients
        .insert("large_record".into(), pick(&s.large, 3));
    info.patients
        .insert("hostile_text".into(), pick(&s.hostile, 3));
    info.patients
        .insert("pdf_documents".into(), with_pdf_documents(region, 3));
    info.patients
        .insert("legal_end_of_life".into(), with_legal_decisions(region, 3));
    if opts.gp_connect {
        for (nhs, e) in gp_errors {
            let case = match e {
                mcr_sources::GpcError::Dissent => "gp_connect_dissent",
                mcr_sources::GpcError::NotRegistered => "gp_connect_not_registered",
                mcr_sources::GpcError::NotFound | mcr_sources::GpcError::InternalError => continue,
            };
            info.patients.insert(case.into(), vec![nhs.to_string()]);
        }
        if let Some(nhs) = confidential_at_gp(region) {
            info.patients.insert(
                "gp_connect_confidential_excluded".into(),
                vec![nhs.to_string()],
            );
        }
    }
    // The acute trust's patient administration system announces admissions, attendances,
    // discharges and a pre-admission over the ADT feed, as a real one would: the acute
    // relationships of the sample patients come from these, the community, social care and
    // GP ones from the sources' own care-event data read by the index sync.
    let now = gateway.gateway.clock().now();
    let mut feed = crate::demo_adt::Feed::connect(adt_addr, acute.code.as_str(), now).await?;
    let day = chrono::Duration::days(1);
    feed.admit(all_four, now - day * 2).await?;
    for list in [&s.all_four[3..], &s.name_differs, &s.dose_discrepancy] {
        for nhs in list.iter().take(3) {
            feed.attendance(nhs, now - day * 10).await?;
        }
    }
    for list in [
        &s.sensitive,
        &s.duplicated_items,
        &s.hostile,
        &s.large,
        &s.demographics_only,
    ] {
        for nhs in list.iter().take(3) {
            feed.admit(nhs, now - day * 25).await?;
            feed.discharge(nhs, now - day * 25, now - day * 20).await?;
        }
    }
    // The GP Connect cases attend A&E, so the A&E doctor may look (and see what GP Connect says).
    let gp_cases = gp_errors
        .iter()
        .map(|(nhs, _)| nhs.clone())
        .chain(confidential_at_gp(region).filter(|_| opts.gp_connect));
    for nhs in gp_cases {
        // A small region may not hold every sample in the index.
        if gateway.gateway.store().patient(&nhs).await?.is_some() {
            feed.attendance(&nhs, now - day * 10).await?;
        }
    }
    feed.admit(&opted_out, now - day * 3).await?;
    feed.admit(&overridden, now - day * 3).await?;
    let appointment = first(&s.gp_only)?.clone();
    feed.pre_admit(&appointment, now + day * 10).await?;
    // Discharged long ago, and nothing since at the acute trust: no relationship any more.
    // Held by the acute trust if the region is large enough, and not one sent for above.
    let mut gone = None;
    let candidates = s
        .all_four
        .iter()
        .skip(6)
        .chain(region.people.iter().map(|p| &p.nhs_number))
        .take(400);
    for nhs in candidates {
        let events = gateway.gateway.store().governance(nhs).await?.care_events;
        let acute_now = events.iter().any(|e| {
            e.origin == "adt"
                || (e.org_code == acute.code.as_str()
                    && e.end.is_none_or(|end| end > now - day * 90))
        });
        if !acute_now && gateway.gateway.store().patient(nhs).await?.is_some() {
            feed.admit(nhs, now - day * 200).await?;
            feed.discharge(nhs, now - day * 200, now - day * 190)
                .await?;
            gone = Some(nhs.clone());
            break;
        }
    }
    let gone = gone.context("no patient without a recent acute event; use more patients")?;
    // Referred to the acute trust's clinics (the trust's own records, read by the index sync),
    // and not admitted there now: the referral is their relationship with the trust.
    let mut referred = None;
    for nhs in region.people.iter().map(|p| &p.nhs_number).take(2_000) {
        let events = gateway.gateway.store().governance(nhs).await?.care_events;
        let at_acute = |e: &&mcr_store::CareEventRow| e.org_code == acute.code.as_str();
        let referral = events
            .iter()
            .filter(at_acute)
            .any(|e| e.kind == "referral" && e.end.is_none());
        let outranked = events
            .iter()
            .filter(at_acute)
            .any(|e| e.origin == "adt" || (e.kind != "referral" && e.end.is_none()));
        if referral && !outranked && *nhs != gone {
            referred = Some(nhs.clone());
            break;
        }
    }
    let referred = referred.context("no patient with an open referral to the acute trust")?;
    info.patients
        .insert("relationship_referral".into(), vec![referred.to_string()]);
    info.patients
        .insert("relationship_admitted".into(), vec![all_four.to_string()]);
    info.patients.insert(
        "relationship_recent_attendance".into(),
        pick(&s.all_four[3..], 3),
    );
    info.patients.insert(
        "relationship_recent_discharge".into(),
        pick(&s.sensitive, 3),
    );
    info.patients.insert(
        "relationship_upcoming_appointment".into(),
        vec![appointment.to_string()],
    );
    info.patients.insert(
        "relationship_open_community_episode".into(),
        vec![all_four.to_string()],
    );
    info.patients.insert(
        "relationship_social_care_allocation".into(),
        vec![all_four.to_string()],
    );
    // Registered at the practice of the demo's GP and receptionist.
    info.patients.insert(
        "relationship_gp_registration".into(),
        vec![all_four.to_string()],
    );
    info.patients
        .insert("no_relationship_any_more".into(), vec![gone.to_string()]);
    info.patients
        .insert("opted_out".into(), vec![opted_out.to_string()]);
    info.patients
        .insert("objection_overridden".into(), vec![overridden.to_string()]);

    Ok(())
}
