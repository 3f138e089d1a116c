//! Finding a patient in the index: by NHS number, or by name and date of birth (and postcode).

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::{Action, Outcome};
use mcr_domain::demographics::{normalise_name, normalise_postcode};
use mcr_domain::NhsNumber;
use mcr_store::{DemographicQuery, IndexedPatient, LinkMethod, SourceLink};

#[derive(Debug, Clone)]
pub enum PatientQuery {
    NhsNumber(NhsNumber),
    Demographics(DemographicQuery),
}

/// One search result: enough to tell two people apart, and where they are held.
#[derive(Debug, Clone)]
pub struct PatientMatch {
    pub patient: IndexedPatient,
    pub links: Vec<SourceLink>,
    /// Sources whose demographics differ from the index (name, date of birth or postcode).
    pub differing_sources: Vec<String>,
    /// A restricted patient: `patient.postcode` and `patient.gp_practice` were removed here
    /// and are never shown.
    pub location_withheld: bool,
}

impl PatientMatch {
    pub fn matched_by_demographics(&self) -> bool {
        self.links
            .iter()
            .any(|l| l.method == LinkMethod::Demographics)
    }
}

/// The query with what normalises to nothing (a given name of `.`, a postcode of `-`)
/// counted as absent, so "a family name plus a given name or a date of birth" means letters
/// or a date, not punctuation that matches everyone.
fn meaningful(q: &DemographicQuery) -> Result<DemographicQuery, GatewayError> {
    if normalise_name(&q.family).is_empty() {
        return Err(GatewayError::Invalid(
            "Enter the patient's family name (surname).".into(),
        ));
    }
    let given = q.given.clone().filter(|g| !normalise_name(g).is_empty());
    if q.birth_date.is_none() && given.is_none() {
        return Err(GatewayError::Invalid(
            "Enter a date of birth or a given name (with at least one letter) as well as the family name."
                .into(),
        ));
    }
    Ok(DemographicQuery {
        family: q.family.clone(),
        given,
        birth_date: q.birth_date,
        postcode: q
            .postcode
            .clone()
            .filter(|p| !normalise_postcode(p).is_empty()),
    })
}

/// Most results a demographic search returns.
pub const MAX_RESULTS: u32 = 50;

impl Gateway {
    /// Search the index. Only staff of member organisations of a kind that may view can search
    /// (results are demographics); every search is audited.
    pub async fn search(
        &self,
        ctx: &RequestContext,
        query: &PatientQuery,
    ) -> Result<Vec<PatientMatch>, GatewayError> {
        const ACTION: Action = Action::SearchPatient;
        let nhs = match query {
            PatientQuery::NhsNumber(n) => Some(n.as_str()),
            PatientQuery::Demographics(_) => None,
        };
        let org = &ctx.principal.organisation;
        let refusal = if mcr_policy::is_excluded_kind(org.kind) {
            Some(mcr_policy::DenyCode::OrgKindExcluded)
        } else if !org.member {
            Some(mcr_policy::DenyCode::OrgNotMember)
        } else if org.suspended {
            Some(mcr_policy::DenyCode::OrgSuspended)
        } else {
            None
        };
        if let Some(code) = refusal {
            let mut event = self.event(ctx, ACTION, nhs);
            event.outcome = Outcome::Deny;
            event.basis = Some(code.as_str().into());
            self.audit(&event).await?;
            return Err(GatewayError::Forbidden(code.sentence().to_owned()));
        }
        let cleaned;
        let query = match query {
            PatientQuery::Demographics(q) => {
                cleaned = PatientQuery::Demographics(meaningful(q)?);
                &cleaned
            }
            nhs => nhs,
        };
        let found = match query {
            PatientQuery::NhsNumber(n) => self
                .store
                .patient(n)
                .await
                .map(|p| p.into_iter().collect::<Vec<_>>()),
            PatientQuery::Demographics(q) => self.store.search_patients(q, MAX_RESULTS).await,
        };
        let patients = found.map_err(|_| GatewayError::StoreUnavailable)?;
        // A number merged into another finds nobody: it says where the person is now.
        if let (true, PatientQuery::NhsNumber(n)) = (patients.is_empty(), query) {
            if let Some(m) = self.merged_away(n).await? {
                let mut event = self.event(ctx, ACTION, nhs);
                event.outcome = Outcome::NotFound;
                event.basis = Some(format!("merged-into:{}", m.survivor));
                self.audit(&event).await?;
                return Err(GatewayError::Merged {
                    retired: m.retired,
                    survivor: m.survivor,
                });
            }
        }
        let by_postcode = matches!(query, PatientQuery::Demographics(q) if q.postcode.is_some());
        let mut out = Vec::with_capacity(patients.len());
        let mut withheld = 0;
        let mut left_out = 0;
        for mut p in patients {
            // A restricted patient's location is never shown; and, as PDS does, a search that
            // names a postcode never finds them (it would confirm where they live). Unreadable
            // status: treated as restricted (fail closed).
            let restricted = self
                .store
                .patient_status(&p.nhs_number)
                .await
                .map_or(true, |s| s.is_some_and(|s| s.restricted));
            if restricted && by_postcode {
                left_out += 1;
                continue;
            }
            if restricted {
                p.postcode = None;
                p.gp_practice = None;
                withheld += 1;
            }
            let links = self
                .store
                .links(&p.nhs_number)
                .await
                .map_err(|_| GatewayError::StoreUnavailable)?;
            let differing_sources = links
                .iter()
                .filter(|l| {
                    normalise_name(&l.family) != normalise_name(&p.family)
                        || normalise_name(&l.given) != normalise_name(&p.given)
                        || l.birth_date.is_some_and(|d| d != p.birth_date)
                        || match (&l.postcode, &p.postcode) {
                            (Some(a), Some(b)) => normalise_postcode(a) != normalise_postcode(b),
                            _ => false,
                        }
                })
                .map(|l| l.source.to_string())
                .collect();
            out.push(PatientMatch {
                patient: p,
                links,
                differing_sources,
                location_withheld: restricted,
            });
        }
        let mut event = self.event(ctx, ACTION, nhs);
        event.outcome = Outcome::Permit;
        let mut detail = format!("{} result(s)", out.len());
        if withheld > 0 {
            detail.push_str(&format!("; location withheld for {withheld} restricted"));
        }
        if left_out > 0 {
            detail.push_str(&format!(
                "; {left_out} restricted left out of a search by postcode"
            ));
        }
        event.detail = Some(detail);
        self.audit(&event).await?;
        Ok(out)
    }
}
