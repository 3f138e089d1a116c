//! Changing governance state: permission to view, self-claimed relationships, emergency
//! access, objections. Each change is validated whole, then written together with its audit
//! record in one transaction: nothing half-written.

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_policy::{EmergencyReason, OnBehalfReason, OverrideReason, PermissionGiver};
use mcr_store::{EmergencyRow, GovernanceChange, ObjectionRow, PermissionRow, RelationshipRow};

/// "The patient gave (or refused) permission", recorded by the user for their organisation.
#[derive(Debug, Clone)]
pub struct PermissionRequest {
    pub nhs_number: NhsNumber,
    /// `given` or `refused`.
    pub decision: String,
    /// `patient`, `representative` or `best-interests`.
    pub given_by: String,
    /// For an answer on the patient's behalf: a code from [`OnBehalfReason`] that fits
    /// `given_by`, and the recorder's words (who the representative is, or why the patient
    /// cannot decide). Required then; refused for the patient's own answer.
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
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
    /// The patient opts out. Any member of staff may record it on the patient's word: it only
    /// ever stops sharing.
    Record {
        nhs_number: NhsNumber,
        on_whose_word: String,
        note: Option<String>,
    },
    /// The patient opts back in: recorded by a privacy officer or Caldicott guardian
    /// (`objection_lift_roles`) from the patient's own written request, quoted by its
    /// reference. (The public site's route is a verified opt-in request.) Everyone else is
    /// refused, and the attempt is audited for review.
    Withdraw {
        nhs_number: NhsNumber,
        /// The reference of the patient's written request (a letter, a signed form).
        written_request: String,
        note: Option<String>,
    },
    /// A designated role sets the objection aside (safeguarding, legal obligation), for a
    /// limited time; reviewed.
    Override {
        nhs_number: NhsNumber,
        reason: String,
        note: String,
        /// When the override ends (default `override_hours` from now).
        until: Option<DateTime<Utc>>,
    },
}

/// The words a member of staff sees when they may not lift an objection.
pub const LIFT_REFUSED: &str = "Only a privacy officer or the Caldicott guardian can lift an objection, and only on the patient's own written request. Ask the patient to use the My Care Record website to opt back in, or to write to the privacy office; this attempt has been recorded for review.";

/// Longest free text kept in a governance record.
pub const MAX_REASON: usize = 1_000;

/// What is wrong with a request to record permission, by the part of the request it is
/// about, so a form can put the sentence beside the right field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionProblem {
    /// The answer itself (`given`/`refused`, who gave it).
    Answer(String),
    /// Why someone other than the patient is answering (the reason code).
    ReasonCode(String),
    /// The account of it in words.
    ReasonText(String),
}

impl PermissionProblem {
    pub fn sentence(&self) -> &str {
        match self {
            Self::Answer(s) | Self::ReasonCode(s) | Self::ReasonText(s) => s,
        }
    }
}

impl From<PermissionProblem> for GatewayError {
    fn from(p: PermissionProblem) -> Self {
        match p {
            PermissionProblem::Answer(s)
            | PermissionProblem::ReasonCode(s)
            | PermissionProblem::ReasonText(s) => GatewayError::Invalid(s),
        }
    }
}

/// Check a request to record permission as [`Gateway::record_permission`] will, before
/// anything is read or written: the answer, who gave it and, on the patient's behalf, the
/// ground and words. Returns who answered and the ground and words (`None` for the patient's
/// own answer).
pub fn check_permission_request(
    req: &PermissionRequest,
) -> Result<(PermissionGiver, Option<(OnBehalfReason, String)>), PermissionProblem> {
    if !matches!(req.decision.as_str(), "given" | "refused") {
        return Err(PermissionProblem::Answer(
            "Permission is either `given` or `refused`.".into(),
        ));
    }
    let Some(giver) = crate::inputs::parse_giver(&req.given_by) else {
        return Err(PermissionProblem::Answer(
            "Say who gave the answer: `patient`, `representative` or `best-interests`.".into(),
        ));
    };
    if giver == PermissionGiver::BestInterests && req.decision != "given" {
        return Err(PermissionProblem::Answer(
            "A best-interests decision can only be to view; if viewing is not in the patient's best interests, do not record anything.".into(),
        ));
    }
    Ok((giver, on_behalf_reason(giver, req)?))
}

/// The ground and words of an answer on the patient's behalf; `None` for the patient's own.
fn on_behalf_reason(
    giver: PermissionGiver,
    req: &PermissionRequest,
) -> Result<Option<(OnBehalfReason, String)>, PermissionProblem> {
    if giver == PermissionGiver::Patient {
        if req
            .reason_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
        {
            return Err(PermissionProblem::ReasonCode(
                "A reason code is only for an answer given on the patient's behalf.".into(),
            ));
        }
        return Ok(None);
    }
    let codes = || {
        OnBehalfReason::for_giver(giver)
            .map(OnBehalfReason::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = req
        .reason_code
        .as_deref()
        .map(str::trim)
        .and_then(|c| c.parse::<OnBehalfReason>().ok())
        .filter(|r| r.giver() == giver)
        .ok_or_else(|| {
            PermissionProblem::ReasonCode(format!(
                "Choose why {} is answering: one of {}.",
                giver.describe(),
                codes()
            ))
        })?;
    let what = match giver {
        PermissionGiver::Representative => "answer from a representative (who they are)",
        _ => "best-interests decision",
    };
    let text = reason_text(req.reason_text.as_deref().unwrap_or(""), what).map_err(|e| {
        PermissionProblem::ReasonText(match e {
            GatewayError::Invalid(s) => s,
            other => other.to_string(),
        })
    })?;
    Ok(Some((reason, text)))
}

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

    pub(crate) async fn must_exist(&self, nhs: &NhsNumber) -> Result<(), GatewayError> {
        match self.store.patient(nhs).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(GatewayError::PatientNotFound),
            Err(_) => Err(GatewayError::StoreUnavailable),
        }
    }

    pub(crate) async fn commit(
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
        let (giver, on_behalf) = check_permission_request(req)?;
        if giver == PermissionGiver::BestInterests
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
            reason_code: on_behalf.as_ref().map(|(r, _)| r.as_str().to_owned()),
            reason_text: on_behalf.as_ref().map(|(_, t)| t.clone()),
        };
        // An answer on the patient's behalf that opens the record is reviewed, like
        // break-glass: its own action, so the review queue lists it.
        let action = match (&on_behalf, req.decision.as_str()) {
            (Some(_), "given") => Action::RecordPermissionOnBehalf,
            _ => Action::RecordPermission,
        };
        let mut event = self.event(ctx, action, Some(req.nhs_number.as_str()));
        event.outcome = match req.decision.as_str() {
            "given" => Outcome::PermissionGiven,
            "refused" => Outcome::PermissionRefused,
            other => {
                return Err(GatewayError::Invalid(format!(
                    "A permission decision is `given` or `refused`, not `{other}`."
                )))
            }
        };
        match &on_behalf {
            Some((reason, text)) => {
                event.basis = Some(reason.as_str().into());
                event.detail = Some(format!(
                    "{} by {} ({}): {text}",
                    req.decision,
                    giver.describe(),
                    reason.describe()
                ));
            }
            None => event.detail = Some(format!("{} by {}", req.decision, giver.describe())),
        }
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
        let mut event = self.event(
            ctx,
            Action::ClaimRelationship,
            Some(req.nhs_number.as_str()),
        );
        event.outcome = Outcome::Alert;
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
        let mut event = self.event(ctx, Action::EmergencyAccess, Some(req.nhs_number.as_str()));
        event.outcome = Outcome::Alert;
        event.basis = Some(reason.as_str().into());
        event.detail = Some(text);
        let notice = crate::watch::FlagNotice {
            seq: 0,
            at: event.at,
            rule: crate::WatchRule::EmergencyAccess,
            user_id: event.user_id.clone(),
            user_name: event.user_name.clone(),
            org_code: event.org_code.clone(),
            org_name: event.org_name.clone(),
            count: None,
            // The reason's code only: the words typed may say something about the patient.
            evidence: format!(
                "Emergency access declared, reason: {}. Review it in the review queue.",
                reason.as_str()
            ),
        };
        let seq = self.commit(GovernanceChange::Emergency(row), event).await?;
        // Privacy officers are told of every emergency access at once, not only in the queue.
        self.tell_privacy_officers(crate::watch::FlagNotice { seq, ..notice });
        Ok(seq)
    }

    pub async fn record_objection(
        &self,
        ctx: &RequestContext,
        req: &ObjectionRequest,
    ) -> Result<i64, GatewayError> {
        self.may_act(ctx)?;
        let (row, action, outcome) = match req {
            ObjectionRequest::Record {
                nhs_number,
                on_whose_word,
                note,
            } => {
                let word = reason_text(on_whose_word, "objection (on whose word)")?;
                let note = note
                    .as_deref()
                    .map(|n| reason_text(n, "note"))
                    .transpose()?;
                (
                    self.objection_row(ctx, nhs_number, "active", word, note),
                    Action::RecordObjection,
                    Outcome::Active,
                )
            }
            ObjectionRequest::Withdraw {
                nhs_number,
                written_request,
                note,
            } => {
                if !self.policy.may_lift_objection(ctx.principal.role) {
                    return Err(self
                        .refuse(
                            ctx,
                            Action::WithdrawObjection,
                            Some(nhs_number.as_str()),
                            LIFT_REFUSED,
                        )
                        .await);
                }
                let reference = reason_text(written_request, "patient's written request (its reference)")
                    .map_err(|_| {
                        GatewayError::Invalid(
                            "Give the reference of the patient's written request to opt back in (a letter or signed form): an objection is lifted only on the patient's own request.".into(),
                        )
                    })?;
                let note = note
                    .as_deref()
                    .map(|n| reason_text(n, "note"))
                    .transpose()?;
                self.must_have_objection(nhs_number).await?;
                (
                    self.objection_row(
                        ctx,
                        nhs_number,
                        "withdrawn",
                        format!("written-request:{reference}"),
                        note,
                    ),
                    Action::WithdrawObjection,
                    Outcome::Withdrawn,
                )
            }
            ObjectionRequest::Override {
                nhs_number,
                reason,
                note,
                until,
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
                    return Err(self
                        .refuse(
                            ctx,
                            Action::OverrideObjection,
                            Some(nhs_number.as_str()),
                            "Your role cannot override an objection. Ask your safeguarding lead or Caldicott guardian.",
                        )
                        .await);
                }
                let now = self.clock.now();
                let ends =
                    until.unwrap_or(now + Duration::hours(i64::from(self.policy.override_hours)));
                let longest = Duration::days(i64::from(self.policy.override_max_days));
                if ends <= now {
                    return Err(GatewayError::Invalid(
                        "An override must end in the future.".into(),
                    ));
                }
                if ends > now + longest {
                    return Err(GatewayError::Invalid(format!(
                        "An override can last at most {} days; record a new one when it ends if it is still needed.",
                        self.policy.override_max_days
                    )));
                }
                self.must_have_objection(nhs_number).await?;
                let mut row = self.objection_row(
                    ctx,
                    nhs_number,
                    "overridden",
                    ctx.principal.user_id.clone(),
                    Some(note),
                );
                row.override_reason = Some(reason.as_str().into());
                row.by_role = Some(ctx.principal.role.as_str().into());
                row.ends_at = Some(ends);
                (row, Action::OverrideObjection, Outcome::Overridden)
            }
        };
        self.must_exist(&row.nhs_number).await?;
        let mut event = self.event(ctx, action, Some(row.nhs_number.as_str()));
        event.outcome = outcome;
        event.basis = row.override_reason.clone();
        event.detail = match (&row.ends_at, &row.note) {
            (Some(ends), note) => Some(format!(
                "until {}{}",
                ends.format("%Y-%m-%dT%H:%M:%SZ"),
                note.as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            )),
            (None, note) if action == Action::WithdrawObjection => Some(format!(
                "on {}{}",
                row.on_whose_word,
                note.as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            )),
            (None, note) => note.clone(),
        };
        self.commit(GovernanceChange::Objection(row), event).await
    }

    /// Lift an objection on a verified request from the public site (the privacy officer's
    /// verification is the check): see [`crate::Gateway::verify_opt_out_request`].
    pub(crate) async fn lift_on_verified_request(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        reference: &str,
        basis: &str,
    ) -> Result<i64, GatewayError> {
        self.must_have_objection(nhs).await?;
        let row = self.objection_row(
            ctx,
            nhs,
            "withdrawn",
            format!("opt-in-request:{reference}"),
            Some(format!(
                "Opt-in request {reference} verified against the index: {basis}."
            )),
        );
        let mut event = self.event(ctx, Action::WithdrawObjection, Some(nhs.as_str()));
        event.outcome = Outcome::Withdrawn;
        event.detail = Some(format!("on {}: {basis}", row.on_whose_word));
        self.commit(GovernanceChange::Objection(row), event).await
    }

    fn objection_row(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        state: &str,
        on_whose_word: String,
        note: Option<String>,
    ) -> ObjectionRow {
        ObjectionRow {
            nhs_number: nhs.clone(),
            state: state.into(),
            recorded_by: ctx.principal.user_id.clone(),
            on_whose_word,
            override_reason: None,
            by_role: None,
            note,
            at: self.clock.now(),
            ends_at: None,
        }
    }

    /// Lifting or overriding needs an objection that stands.
    pub(crate) async fn must_have_objection(&self, nhs: &NhsNumber) -> Result<(), GatewayError> {
        let standing = self.patient_sharing(nhs).await? == crate::Sharing::OptedOut;
        if standing {
            Ok(())
        } else {
            Err(GatewayError::Invalid(
                "This person has no objection recorded, so there is nothing to lift or override."
                    .into(),
            ))
        }
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
        let mut event = self.event(ctx, Action::ReadConsents, Some(nhs.as_str()));
        event.outcome = Outcome::Permit;
        self.audit(&event).await?;
        Ok(records)
    }
}
