//! The PDS trace of a record the index could not link (or of a local identity whose record
//! was read again): what PDS found, counted and kept for the audit trail, and what the pass
//! does with it (link, a pair for review, or nothing).

use crate::SourcePatient;
use mcr_store::{LinkMethod, MatchCandidateRow};

/// What the traces of one pass add to the index: patients PDS named that the index may not
/// hold yet, and what PDS said of each (restricted, deceased).
#[derive(Debug, Default)]
pub(super) struct Traced {
    pub(super) patients: Vec<mcr_store::IndexedPatient>,
    pub(super) statuses: Vec<mcr_store::PatientStatusRow>,
    /// Every trace, for the audit trail.
    pub(super) records: Vec<crate::pds::TraceRecord>,
}

pub(super) enum TraceStep {
    /// Link the record (PDS's unique match at or above the link score).
    Linked(mcr_store::SourceLink),
    /// A pair for review (PDS's unique match below the link score), besides whatever the
    /// index found.
    Review(MatchCandidateRow),
    /// Nothing to add: the record stays as the index left it.
    Nothing,
}

/// Trace one record the index could not link. Counted in `counts` and kept for the audit
/// trail in `traced.records`; never logged with patient data.
pub(super) async fn trace_one(
    pds: &crate::pds::PdsClient,
    p: &SourcePatient,
    counts: &mut crate::pds::TraceCounts,
    now: chrono::DateTime<chrono::Utc>,
    traced: &mut Traced,
) -> TraceStep {
    use crate::pds::{TraceOutcome as O, TraceRecord};
    let mut record = TraceRecord {
        source: p.source.clone(),
        local_id: p.local_id.clone(),
        outcome: O::Failed,
        nhs_number: None,
        score: None,
        superseded: false,
        deceased: false,
        restricted: false,
    };
    let step = trace_step(pds, p, counts, now, traced, &mut record).await;
    traced.records.push(record);
    step
}

async fn trace_step(
    pds: &crate::pds::PdsClient,
    p: &SourcePatient,
    counts: &mut crate::pds::TraceCounts,
    now: chrono::DateTime<chrono::Utc>,
    traced: &mut Traced,
    record: &mut crate::pds::TraceRecord,
) -> TraceStep {
    use crate::pds::{Trace, TraceOutcome as O};
    counts.asked += 1;
    let query = p.birth_date.map(|birth_date| crate::pds::TraceQuery {
        family: &p.family,
        given: &p.given,
        birth_date,
        gender: p.gender.as_deref(),
        postcode: p.postcode.as_deref(),
    });
    let trace = match pds.trace(query).await {
        Ok(t) => t,
        Err(e) => {
            counts.failed += 1;
            tracing::warn!(error = %e, "PDS trace failed");
            counts.failure.get_or_insert_with(|| e.to_string());
            return TraceStep::Nothing;
        }
    };
    let (found, score) = match &trace {
        Trace::Traced(found, score) | Trace::Review(found, score) => (found, *score),
        Trace::NotFound => {
            counts.not_found += 1;
            record.outcome = O::NotFound;
            return TraceStep::Nothing;
        }
        Trace::TooMany => {
            counts.too_many += 1;
            record.outcome = O::TooMany;
            return TraceStep::Nothing;
        }
        Trace::Untraceable => {
            counts.untraceable += 1;
            record.outcome = O::Untraceable;
            return TraceStep::Nothing;
        }
    };
    counts.restricted += usize::from(found.restricted);
    counts.deceased += usize::from(found.deceased.is_some());
    counts.superseded += usize::from(found.superseded.is_some());
    record.nhs_number = Some(found.nhs_number.clone());
    record.score = Some(score);
    record.superseded = found.superseded.is_some();
    record.deceased = found.deceased.is_some();
    record.restricted = found.restricted;
    let Some(birth_date) = found.birth_date else {
        // The index needs a birth date; a PDS record without one is not linked to.
        counts.untraceable += 1;
        record.outcome = O::Untraceable;
        return TraceStep::Nothing;
    };
    let nhs = found.nhs_number.clone();
    traced.patients.push(mcr_store::IndexedPatient {
        nhs_number: nhs.clone(),
        family: found.family.clone(),
        given: found.given.clone(),
        birth_date,
        gender: found.gender.clone(),
        postcode: found.postcode.clone(),
        address: found.address.clone(),
        gp_practice: found.gp_practice.clone(),
        updated_at: now,
    });
    traced.statuses.push(mcr_store::PatientStatusRow {
        nhs_number: nhs.clone(),
        restricted: found.restricted,
        deceased: found.deceased.clone(),
        said_by: "pds".into(),
        updated_at: now,
    });
    match trace {
        Trace::Traced(..) => {
            counts.linked += 1;
            record.outcome = O::Linked;
            TraceStep::Linked(p.link(nhs, LinkMethod::PdsTrace, now))
        }
        Trace::Review(_, score) => {
            counts.review += 1;
            record.outcome = O::Review;
            TraceStep::Review(MatchCandidateRow {
                source: p.source.clone(),
                local_id: p.local_id.clone(),
                nhs_number: nhs,
                kind: "pds-review".into(),
                score,
                agreement: format!("pds-score={score:.2}"),
                guard: None,
                family: p.family.clone(),
                given: p.given.clone(),
                birth_date: p.birth_date,
                gender: p.gender.clone(),
                postcode: p.postcode.clone(),
                found_at: now,
            })
        }
        _ => TraceStep::Nothing,
    }
}
