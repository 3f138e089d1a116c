//! Changing governance state: permission to view, self-claimed relationships, emergency
//! access, objections. Each change is validated whole, then written together with its audit
//! record in one transaction: nothing half-written.

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use mcr_domain::NhsNumber;
use mcr_policy::{EmergencyReason, OverrideReason};
use mcr_store::{EmergencyRow, GovernanceChange, ObjectionRow, PermissionRow, RelationshipRow};

/// "The patient gave (or refused) permission", recorded by the user for their organisation.
#[derive(Debug, Clone)]
pub struct PermissionRequest {
    pub nhs_number: NhsNumber,
    /// `given` or `refused`.
    pub decision: String,
    /// `patient`, `representative` or `best-interests`.
    pub given_by: String,
}

/// "I am caring for this patient": a self-claimed relationship with a reason.
#[derive(Debug, Clone)]
pub struct RelationshipClaim {
    pub nhs_number: NhsNumber,
    pub reason: String,
    /// When the claim starts (default now) and ends (default 7 days after the start).
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Break-glass: the patient cannot be asked and care is urgent.
#[derive(Debug, Clone)]
pub struct EmergencyRequest {
    pub nhs_number: NhsNumber,
    /// A code from [`EmergencyReason`].
    pub reason_code: String,
    pub reason_text: String,
}

#[derive(Debug, Clone)]
pub enum ObjectionRequest {
    /// The patient opts out.
    Record {
        nhs_number: NhsNumber,
        on_whose_word: String,
        note: Option<String>,
    },
    /// The patient opts back in.
    Withdraw {
        nhs_number: NhsNumber,
        on_whose_word: String,
        note: Option<String>,
    },
    /// A designated role sets the objection aside (safeguarding, legal obligation).
    Override {
        nhs_number: NhsNumber,
        reason: String,
        note: String,
    },
}

/// Longest free text kept in a governance record.
pub const MAX_REASON: usize = 1_000;

fn reason_text(s: &str, what: &str) -> Result<String, GatewayError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(GatewayError::Invalid(format!(
            "Give a reason for the {what}."
        )));
    }
    if t.chars().count() > MAX_REASON {
        return Err(GatewayError::Invalid(format!(
            "The reason for the {what} is too long: at most {MAX_REASON} characters."
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(GatewayError::Invalid(format!(
            "The reason for the {what} contains control characters."
        )));
    }
    Ok(t.to_owned())
}

impl Gateway {
    /// Staff of organisations that may not view cannot change governance state either.
    fn may_act(&self, ctx: &RequestContext) -> Result<(), GatewayError> {
        let org = &ctx.principal.organisation;
        if mcr_policy::is_excluded_kind(org.kind) {
            return Err(GatewayError::Forbidden(
                mcr_policy::DenyCode::OrgKindExcluded.sentence().into(),
            ));
        }
        if !org.member {
            return Err(GatewayError::Forbidden(
                mcr_policy::DenyCode::OrgNotMember.sentence().into(),
            ));
        }
        if org.suspended {
            return Err(GatewayError::Forbidden(
                mcr_policy::DenyCode::OrgSuspended.sentence().into(),
            ));
        }
        Ok(())
    }

    async fn must_exist(&self, nhs: &NhsNumber) -> Result<(), GatewayError> {
        match self.store.patient(nhs).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(GatewayError::PatientNotFound),
            Err(_) => Err(GatewayError::StoreUnavailable),
        }
    }

    async fn commit(
        &self,
        change: GovernanceChange,
        event: mcr_audit::AuditEvent,
    ) -> Result<i64, GatewayError> {
        match mcr_audit::record_change(self.store.as_ref(), &change, &event).await {
            Ok(row) => {
                self.after_append(&row).await;
                Ok(row.seq)
            }
            Err(e) => {
                tracing::error!(error = %e, "governance change not recorded");
                Err(GatewayError::AuditUnavailable)
            }
        }
    }

    pub async fn record_permission(
        &self,
        ctx: &RequestContext,
        req: &PermissionRequest,
    ) -> Result<i64, GatewayError> {
        self.may_act(ctx)?;
        if !matches!(req.decision.as_str(), "given" | "refused") {
            return Err(GatewayError::Invalid(
                "Permission is either `given` or `refused`.".into(),
            ));
        }
        let Some(giver) = crate::inputs::parse_giver(&req.given_by) else {
            return Err(GatewayError::Invalid(
                "Say who gave the answer: `patient`, `representative` or `best-interests`.".into(),
            ));
        };
        if giver == mcr_policy::PermissionGiver::BestInterests
            && !self.policy.may_use_emergency(ctx.principal.role)
        {
            return Err(GatewayError::Forbidden(
                "Only clinical staff can make a best-interests decision.".into(),
            ));
        }
        self.must_exist(&req.nhs_number).await?;
        let now = self.clock.now();
        let row = PermissionRow {
            nhs_number: req.nhs_number.clone(),
            org_code: ctx.principal.organisation.code.to_string(),
            user_id: ctx.principal.user_id.clone(),
            decision: req.decision.clone(),
            given_by: req.given_by.clone(),
            at: now,
        };
        let mut event = self.event(ctx, "record-permission", Some(req.nhs_number.as_str()));
        event.outcome = format!("permission-{}", req.decision);
        event.detail = Some(format!("{} by {}", req.decision, giver.describe()));
        self.commit(GovernanceChange::Permission(row), event).await
    }

    pub async fn claim_relationship(
        &self,
        ctx: &RequestContext,
        req: &RelationshipClaim,
    ) -> Result<i64, GatewayError> {
        self.may_act(ctx)?;
        let reason = reason_text(&req.reason, "care relationship")?;
        let now = self.clock.now();
        let start = req.start.unwrap_or(now);
        let end = req.end.unwrap_or(start + Duration::days(7));
        if end <= start {
            return Err(GatewayError::Invalid(
                "The relationship must end after it starts.".into(),
            ));
        }
        if end > start + Duration::days(365) {
            return Err(GatewayError::Invalid(
                "A claimed relationship can last at most a year.".into(),
            ));
        }
        self.must_exist(&req.nhs_number).await?;
        let row = RelationshipRow {
            nhs_number: req.nhs_number.clone(),
            org_code: ctx.principal.organisation.code.to_string(),
            kind: "self-claimed".into(),
            user_id: Some(ctx.principal.user_id.clone()),
            reason: Some(reason.clone()),
            start,
            end: Some(end),
            recorded_by: ctx.principal.user_id.clone(),
        };
        let mut event = self.event(ctx, "claim-relationship", Some(req.nhs_number.as_str()));
        event.outcome = "alert".into();
        event.detail = Some(reason);
        self.commit(GovernanceChange::Relationship(row), event)
            .await
    }

    pub async fn emergency_access(
        &self,
        ctx: &RequestContext,
        req: &EmergencyRequest,
    ) -> Result<i64, GatewayError> {
        self.may_act(ctx)?;
        let reason: EmergencyReason = req.reason_code.parse().map_err(|_| {
            GatewayError::Invalid(format!(
                "Choose a reason for emergency access: one of {}.",
                EmergencyReason::ALL.map(EmergencyReason::as_str).join(", ")
            ))
        })?;
        let text = reason_text(&req.reason_text, "emergency access")?;
        if !self.policy.may_use_emergency(ctx.principal.role) {
            return Err(GatewayError::Forbidden(
                mcr_policy::DenyCode::EmergencyNotAllowedForRole
                    .sentence()
                    .into(),
            ));
        }
        self.must_exist(&req.nhs_number).await?;
        let row = EmergencyRow {
            nhs_number: req.nhs_number.clone(),
            user_id: ctx.principal.user_id.clone(),
            org_code: ctx.principal.organisation.code.to_string(),
            reason_code: reason.as_str().into(),
            reason_text: text.clone(),
            started_at: self.clock.now(),
        };
        let mut event = self.event(ctx, "emergency-access", Some(req.nhs_number.as_str()));
        event.outcome = "alert".into();
        event.basis = Some(reason.as_str().into());
        event.detail = Some(text);
        self.commit(GovernanceChange::Emergency(row), event).await
    }

    pub async fn record_objection(
        &self,
        ctx: &RequestContext,
        req: &ObjectionRequest,
    ) -> Result<i64, GatewayError> {
        self.may_act(ctx)?;
        let now = self.clock.now();
        let (row, action) = match req {
            ObjectionRequest::Record {
                nhs_number,
                on_whose_word,
                note,
            }
            | ObjectionRequest::Withdraw {
                nhs_number,
                on_whose_word,
                note,
            } => {
                let word = reason_text(on_whose_word, "objection (on whose word)")?;
                let note = note
                    .as_deref()
                    .map(|n| reason_text(n, "note"))
                    .transpose()?;
                let (state, action) = match req {
                    ObjectionRequest::Record { .. } => ("active", "record-objection"),
                    _ => ("withdrawn", "withdraw-objection"),
                };
                let row = ObjectionRow {
                    nhs_number: nhs_number.clone(),
                    state: state.into(),
                    recorded_by: ctx.principal.user_id.clone(),
                    on_whose_word: word,
                    override_reason: None,
                    by_role: None,
                    note,
                    at: now,
                };
                (row, action)
            }
            ObjectionRequest::Override {
                nhs_number,
                reason,
                note,
            } => {
                let reason = match reason.as_str() {
                    "safeguarding" => OverrideReason::Safeguarding,
                    "legal-obligation" => OverrideReason::LegalObligation,
                    _ => {
                        return Err(GatewayError::Invalid(
                            "An override needs a reason: `safeguarding` or `legal-obligation`."
                                .into(),
                        ))
                    }
                };
                let note = reason_text(note, "override")?;
                if !self.policy.may_record_override(ctx.principal.role) {
                    return Err(GatewayError::Forbidden(
                        "Your role cannot override an objection. Ask your safeguarding lead or Caldicott guardian.".into(),
                    ));
                }
                let row = ObjectionRow {
                    nhs_number: nhs_number.clone(),
                    state: "overridden".into(),
                    recorded_by: ctx.principal.user_id.clone(),
                    on_whose_word: ctx.principal.user_id.clone(),
                    override_reason: Some(reason.as_str().into()),
                    by_role: Some(ctx.principal.role.as_str().into()),
                    note: Some(note),
                    at: now,
                };
                (row, "override-objection")
            }
        };
        self.must_exist(&row.nhs_number).await?;
        let mut event = self.event(ctx, action, Some(row.nhs_number.as_str()));
        event.outcome = row.state.clone();
        event.detail = row.note.clone();
        self.commit(GovernanceChange::Objection(row), event).await
    }
}

impl Gateway {
    /// A patient's governance records (permissions, relationships, objections, emergency
    /// accesses), for staff of member organisations. Audited.
    pub async fn governance_records(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<mcr_store::GovernanceRecords, GatewayError> {
        self.may_act(ctx)?;
        self.must_exist(nhs).await?;
        let records = self
            .store
            .governance(nhs)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let mut event = self.event(ctx, "read-consents", Some(nhs.as_str()));
        event.outcome = "permit".into();
        self.audit(&event).await?;
        Ok(records)
    }
}
