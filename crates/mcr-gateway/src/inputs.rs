//! Loading what the policy decides from: the governance records in the store, including the
//! care events (admissions, discharges, episodes, referrals, appointments, allocations, GP
//! registrations) that the organisations' systems announced, with their times. Being held in
//! an organisation's system is not a relationship: only a care event is.

use crate::{Gateway, RequestContext};
use mcr_domain::{NhsNumber, OdsCode, Role};
use mcr_policy::{
    EmergencyAccess, ObjectionState, OverrideReason, PermissionDecision, PermissionGiver,
    PermissionRecord, Relationship, RelationshipKind,
};
use mcr_store::{CareEventRow, GovernanceRecords, StoreError};

#[derive(Debug, Default)]
pub(crate) struct Inputs {
    pub relationships: Vec<Relationship>,
    pub permissions: Vec<PermissionRecord>,
    pub objection: Option<ObjectionState>,
    pub emergency: Option<EmergencyAccess>,
    /// What PDS (or a source's label, at the last sync) says: the patient is restricted.
    pub restricted: bool,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unreadable {what} record"))
}

fn ods(code: &str) -> Result<OdsCode, StoreError> {
    OdsCode::parse(code).map_err(|_| corrupt("organisation code"))
}

/// The relationship a care event means: open or ended, by its kind. The policy decides from
/// its times whether it counts now.
pub(crate) fn care_event_relationship(e: &CareEventRow) -> Result<Relationship, StoreError> {
    use RelationshipKind as K;
    let open = e.end.is_none();
    let kind = match e.kind.as_str() {
        "admission" if open => K::OpenEncounter,
        "admission" => K::RecentDischarge,
        "encounter" if open => K::OpenEncounter,
        "encounter" => K::RecentEncounter,
        "episode" if open => K::OpenEpisode,
        "episode" => K::RecentEncounter,
        "referral" => K::Referral,
        "appointment" => K::UpcomingAppointment,
        "case-allocation" => K::CaseAllocation,
        "gp-registration" => K::GpRegistration,
        _ => return Err(corrupt("care event")),
    };
    Ok(Relationship {
        org_code: ods(&e.org_code)?,
        kind,
        derived: true,
        start: e.start,
        end: e.end,
        user_id: None,
    })
}

impl Gateway {
    /// Which of these patients are restricted, in one read; `None` when the status cannot be
    /// read (then treat every one as restricted: fail closed).
    pub(crate) async fn restricted_among(
        &self,
        nhs: &[NhsNumber],
    ) -> Option<std::collections::HashSet<NhsNumber>> {
        match self.store.restricted_among(nhs).await {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::warn!(error = %e, "patient status unreadable: every location withheld");
                None
            }
        }
    }

    pub(crate) async fn load_inputs(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<Inputs, StoreError> {
        let (records, status) =
            tokio::join!(self.store.governance(nhs), self.store.patient_status(nhs));
        let mut inputs = self.inputs_from(ctx, &records?)?;
        inputs.restricted = status?.is_some_and(|s| s.restricted);
        Ok(inputs)
    }

    /// The decision's inputs from governance records already read.
    pub(crate) fn inputs_from(
        &self,
        ctx: &RequestContext,
        records: &GovernanceRecords,
    ) -> Result<Inputs, StoreError> {
        let mut inputs = self.recorded_inputs(ctx, records)?;
        for e in &records.care_events {
            inputs.relationships.push(care_event_relationship(e)?);
        }
        Ok(inputs)
    }

    fn recorded_inputs(
        &self,
        ctx: &RequestContext,
        r: &GovernanceRecords,
    ) -> Result<Inputs, StoreError> {
        let mut inputs = Inputs::default();
        for rel in &r.relationships {
            let kind = match rel.kind.as_str() {
                "self-claimed" => RelationshipKind::SelfClaimed,
                "recorded" => RelationshipKind::Recorded,
                _ => return Err(corrupt("relationship")),
            };
            inputs.relationships.push(Relationship {
                org_code: ods(&rel.org_code)?,
                kind,
                derived: false,
                start: rel.start,
                end: rel.end,
                user_id: rel.user_id.clone(),
            });
        }
        for p in &r.permissions {
            inputs.permissions.push(PermissionRecord {
                org_code: ods(&p.org_code)?,
                user_id: p.user_id.clone(),
                decision: match p.decision.as_str() {
                    "given" => PermissionDecision::Given,
                    "refused" => PermissionDecision::Refused,
                    _ => return Err(corrupt("permission")),
                },
                given_by: parse_giver(&p.given_by).ok_or_else(|| corrupt("permission"))?,
                at: p.at,
            });
        }
        inputs.objection = self.objection_state(&r.objections)?;
        inputs.emergency = r
            .emergencies
            .iter()
            .rev()
            .find(|e| e.user_id == ctx.principal.user_id)
            .map(|e| {
                Ok::<_, StoreError>(EmergencyAccess {
                    user_id: e.user_id.clone(),
                    reason: e
                        .reason_code
                        .parse()
                        .map_err(|_| corrupt("emergency access"))?,
                    started_at: e.started_at,
                })
            })
            .transpose()?;
        Ok(inputs)
    }
}

impl Gateway {
    /// Where the objection register stands: the latest opt-out or opt-back-in decides; an
    /// override recorded since the latest opt-out sets it aside until the override ends (an
    /// override recorded before a newer opt-out does not carry over).
    fn objection_state(
        &self,
        rows: &[mcr_store::ObjectionRow],
    ) -> Result<Option<ObjectionState>, StoreError> {
        let Some((i, base)) = rows
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| o.state == "active" || o.state == "withdrawn")
        else {
            // Overrides alone (no objection): nothing to set aside.
            return rows
                .iter()
                .all(|o| o.state == "overridden")
                .then_some(None)
                .ok_or_else(|| corrupt("objection"));
        };
        if base.state == "withdrawn" {
            return Ok(Some(ObjectionState::Withdrawn { at: base.at }));
        }
        let Some(o) = rows[i + 1..].iter().rev().find(|o| o.state == "overridden") else {
            return Ok(Some(ObjectionState::Active {
                recorded_at: base.at,
            }));
        };
        let default_end = o.at + chrono::Duration::hours(i64::from(self.policy.override_hours));
        Ok(Some(ObjectionState::Overridden {
            reason: match o.override_reason.as_deref() {
                Some("safeguarding") => OverrideReason::Safeguarding,
                Some("legal-obligation") => OverrideReason::LegalObligation,
                _ => return Err(corrupt("objection")),
            },
            by_role: o
                .by_role
                .as_deref()
                .and_then(|r| r.parse::<Role>().ok())
                .ok_or_else(|| corrupt("objection"))?,
            at: o.at,
            until: o.ends_at.unwrap_or(default_end),
        }))
    }
}

pub(crate) fn parse_giver(s: &str) -> Option<PermissionGiver> {
    match s {
        "patient" => Some(PermissionGiver::Patient),
        "representative" => Some(PermissionGiver::Representative),
        "best-interests" => Some(PermissionGiver::BestInterests),
        _ => None,
    }
}
