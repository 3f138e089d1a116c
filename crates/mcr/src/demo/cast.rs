//! Who is in the demo: the organisations beyond the sources, the demo users (one for each
//! case the product must handle), and the sample patients each part of the demo offers.

use super::{DemoPatientLogin, DemoUser};
use anyhow::Context;
use mcr_domain::{NhsNumber, OdsCode, OrgKind, Organisation, Role};
use mcr_synth::Region;

/// The organisations the gateway knows besides the sources, and the demo users.
pub(super) struct Cast {
    pub organisations: Vec<Organisation>,
    pub users: Vec<DemoUser>,
    /// The acute trust: its staff record the demo's governance cases, its ADT feed the
    /// admissions.
    pub acute: Organisation,
    /// The sample patient held by all four sources.
    pub all_four: NhsNumber,
}

/// The organisations and users for `region`.
pub(super) fn cast(region: &Region) -> anyhow::Result<Cast> {
    // Organisations beyond the sources: the practices, a hospice with no patients in common,
    // and a private company that is never a member.
    let hospice = org("G9H01", "Garden House Hospice Care", OrgKind::Hospice, true);
    let private = org(
        "PRV01",
        "Acme Health Analytics Ltd",
        OrgKind::PrivateCompany,
        false,
    );
    // A community pharmacy whose membership the programme has suspended: its staff are
    // refused before anything about a patient is read.
    let suspended = Organisation {
        suspended: true,
        ..org(
            "FSP01",
            "Station Road Pharmacy",
            OrgKind::CommunityPharmacy,
            true,
        )
    };
    let mut organisations = region.gp_practices.clone();
    organisations.push(hospice.clone());
    organisations.push(private.clone());
    organisations.push(suspended.clone());

    let all_four = first(&region.samples.all_four)?.clone();
    let practice_code = region
        .person(&all_four)
        .context("sample patient")?
        .gp_practice
        .clone();
    let practice = organisations
        .iter()
        .find(|o| o.code == practice_code)
        .cloned()
        .context("the sample patient's practice")?;
    let src_org = |id: &str| -> anyhow::Result<Organisation> {
        Ok(region.source(id).context("source")?.organisation.clone())
    };
    let (acute, community, social) = (
        src_org("acute")?,
        src_org("community")?,
        src_org("socialcare")?,
    );
    let users = vec![
        user(
            "gp.patel",
            "Dr Asha Patel",
            Role::Clinician,
            &practice,
            "GP at the sample patients' practice: registration relationship",
        ),
        user(
            "ae.okafor",
            "Dr Chidi Okafor",
            Role::Clinician,
            &acute,
            "A&E doctor at the acute trust",
        ),
        user(
            "nurse.evans",
            "Megan Evans",
            Role::Nurse,
            &community,
            "Community nurse at the community and mental health trust",
        ),
        user(
            "sw.khan",
            "Imran Khan",
            Role::SocialCarePractitioner,
            &social,
            "Social worker: the care-relevant subset only",
        ),
        user(
            "rec.murphy",
            "Siobhan Murphy",
            Role::Admin,
            &practice,
            "Receptionist: demographics and care team only",
        ),
        user(
            "rec.obi",
            "Grace Obi",
            Role::Admin,
            &acute,
            "Records officer at the acute trust: reviews the trust's patient matching",
        ),
        user(
            "po.wright",
            "Helen Wright",
            Role::PrivacyOfficer,
            &acute,
            "Privacy officer: audit, no clinical data; can override objections",
        ),
        user(
            "cg.shah",
            "Dr Priya Shah",
            Role::CaldicottGuardian,
            &acute,
            "Caldicott guardian: lifts objections on the patient's written request; no clinical data",
        ),
        user(
            "acme.jones",
            "Tom Jones",
            Role::Clinician,
            &private,
            "Works for a private company: always denied",
        ),
        user(
            "hospice.ali",
            "Dr Sara Ali",
            Role::Clinician,
            &hospice,
            "Clinician at a member organisation with no relationship: must claim one",
        ),
        DemoUser {
            second_profile: Some((Role::Clinician, acute.code.to_string())),
            ..user(
                "locum.reid",
                "Dr Alex Reid",
                Role::Clinician,
                &practice,
                "Two NHS CIS2 role profiles (GP at the sample patients' practice, A&E doctor at the acute trust): chooses one after signing in",
            )
        },
        user(
            "pharm.lee",
            "Daniel Lee",
            Role::Pharmacist,
            &suspended,
            "Pharmacist at a member organisation whose access is suspended: always denied",
        ),
    ];
    Ok(Cast {
        organisations,
        users,
        acute,
        all_four,
    })
}

pub(super) fn org(code: &str, name: &str, kind: OrgKind, member: bool) -> Organisation {
    Organisation {
        code: OdsCode::parse(code).expect("demo ODS codes are well-formed constants"),
        name: name.into(),
        kind,
        member,
        suspended: false,
    }
}

pub(super) fn user(id: &str, name: &str, role: Role, o: &Organisation, shows: &str) -> DemoUser {
    DemoUser {
        id: id.into(),
        name: name.into(),
        role,
        org_code: o.code.to_string(),
        org_name: o.name.clone(),
        shows: shows.into(),
        second_profile: None,
    }
}

pub(super) fn first(list: &[NhsNumber]) -> anyhow::Result<&NhsNumber> {
    list.first()
        .context("the synthetic region lacks a sample patient; use more patients")
}

/// The sample patients the public site's demo patient sign-in offers ("who viewed my record").
/// The demo host system's patient list: sample patients the record has, by case.
pub(super) fn ehr_patients(region: &Region) -> anyhow::Result<Vec<mcr_idp::ehr::EhrPatient>> {
    let s = &region.samples;
    let picks = [
        (s.all_four.first(), "records in every source"),
        (s.hostile.first(), "hostile text from a source"),
        (s.gp_only.first(), "GP record only"),
    ];
    picks
        .into_iter()
        .filter_map(|(nhs, note)| nhs.map(|n| (n, note)))
        .enumerate()
        .map(|(i, (nhs, note))| {
            let p = region.person(nhs).context("sample patient")?;
            Ok(mcr_idp::ehr::EhrPatient {
                id: format!("bss-{}", i + 1),
                nhs_number: nhs.to_string(),
                name: format!("{} {}", p.given.join(" "), p.family),
                note: note.into(),
            })
        })
        .collect()
}

/// The demo patients' NHS login accounts: the sample patients at P9, and one more at P5.
pub(super) fn patient_logins(region: &Region) -> anyhow::Result<Vec<DemoPatientLogin>> {
    let mut out: Vec<DemoPatientLogin> = demo_patients(region)?
        .into_iter()
        .enumerate()
        .map(|(i, p)| DemoPatientLogin {
            login_id: format!("nhs-login-p9-{}", i + 1),
            label: p.label,
            nhs_number: p.nhs_number.to_string(),
            level: "P9".into(),
        })
        .collect();
    if let Some(nhs) = region.samples.all_four.get(1) {
        let p = region.person(nhs).context("sample patient")?;
        out.push(DemoPatientLogin {
            login_id: "nhs-login-p5-1".into(),
            label: format!(
                "{} {}, born {}",
                p.given.join(" "),
                p.family,
                p.birth_date.format("%-d %B %Y")
            ),
            nhs_number: nhs.to_string(),
            level: "P5".into(),
        });
    }
    Ok(out)
}

pub(super) fn demo_patients(region: &Region) -> anyhow::Result<Vec<mcr_web::DemoPatient>> {
    let s = &region.samples;
    let picks = [
        s.all_four.first(),
        s.all_four.get(3),
        s.hostile.first(),
        s.gp_only.first(),
    ];
    picks
        .into_iter()
        .flatten()
        .map(|nhs| {
            let p = region.person(nhs).context("sample patient")?;
            Ok(mcr_web::DemoPatient {
                nhs_number: nhs.clone(),
                label: format!(
                    "{} {}, born {}",
                    p.given.join(" "),
                    p.family,
                    p.birth_date.format("%-d %B %Y")
                ),
            })
        })
        .collect()
}

/// The GP system's configured GP Connect errors: GP-only sample patients past those the demo
/// lists as `gp_only` (which stay ordinary).
pub(super) fn gp_connect_cases(region: &Region) -> Vec<(NhsNumber, mcr_sources::GpcError)> {
    let s = &region.samples.gp_only;
    [
        (s.get(3), mcr_sources::GpcError::Dissent),
        (s.get(4), mcr_sources::GpcError::NotRegistered),
    ]
    .into_iter()
    .filter_map(|(nhs, e)| Some((nhs?.clone(), e)))
    .collect()
}

/// A sample patient whose GP record holds items labelled confidential: the GP Connect provider
/// leaves them out and says so.
pub(super) fn confidential_at_gp(region: &Region) -> Option<NhsNumber> {
    let gp = region.source("gp")?;
    region.samples.sensitive.iter().find_map(|nhs| {
        let sp = gp
            .patients()
            .iter()
            .find(|p| p.nhs_number.as_ref() == Some(nhs))?;
        let labelled = gp.resource_types.iter().any(|t| {
            *t != "Patient"
                && gp.resources(&sp.local_id, t).iter().any(|r| {
                    r.pointer("/meta/security")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|s| s.iter().any(|x| x["code"] == "R"))
                })
        });
        labelled.then(|| nhs.clone())
    })
}

/// Patients the acute trust holds a PDF document for (a `DocumentReference` whose content is
/// a `Binary` on the source), among those every source holds, at most `n`; never the
/// governance cases' opted-out and overridden patients (the second and third of them), whose
/// records a document case could not open.
pub(super) fn with_pdf_documents(region: &Region, n: usize) -> Vec<String> {
    let Some(acute) = region.source("acute") else {
        return Vec::new();
    };
    let all_four = &region.samples.all_four;
    let cases: Vec<&mcr_domain::NhsNumber> = all_four.iter().skip(1).take(2).collect();
    acute
        .patients()
        .iter()
        .filter(|sp| {
            sp.nhs_number
                .as_ref()
                .is_some_and(|nhs| all_four.contains(nhs) && !cases.contains(&nhs))
        })
        .filter(|sp| {
            acute
                .resources(&sp.local_id, "DocumentReference")
                .iter()
                .any(|r| r.pointer("/content/0/attachment/url").is_some())
        })
        .filter_map(|sp| sp.nhs_number.as_ref().map(ToString::to_string))
        .take(n)
        .collect()
}

/// Sample patients whose record carries legal and end-of-life decisions: a DNACPR flag at the
/// community trust, or a lasting power of attorney or an advance decision at social care.
pub(super) fn with_legal_decisions(region: &Region, n: usize) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (source, rt) in [("community", "Flag"), ("socialcare", "Consent")] {
        let Some(slice) = region.source(source) else {
            continue;
        };
        for sp in slice.patients() {
            if found.len() >= n {
                return found;
            }
            let Some(nhs) = sp.nhs_number.as_ref().map(ToString::to_string) else {
                continue;
            };
            let legal = slice
                .resources(&sp.local_id, rt)
                .iter()
                .any(|r| mcr_fhir::classify(r) == Some(mcr_domain::DataClass::LegalEndOfLife));
            if legal && !found.contains(&nhs) {
                found.push(nhs);
            }
        }
    }
    found
}
