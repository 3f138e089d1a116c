//! Opt-out requests from the public site: a member of the public asks for their record not to
//! be shared; staff (privacy officers) verify the request against the patient index and it
//! becomes an objection in the register, or they reject it. Every step is audited: the request
//! as received (by `public`), every read of the queue, the objection and the decision.
//!
//! A request is matched to a patient only on strong evidence: the NHS number given, with the
//! same date of birth; or the same family name, date of birth and postcode. Staff choose among
//! those candidates and nothing else, so a mistyped request can never opt out a stranger.

use crate::{Gateway, GatewayError, ObjectionRequest, RequestContext};
use chrono::NaiveDate;
use mcr_audit::AuditEvent;
use mcr_audit::{Action, Outcome};
use mcr_domain::demographics::{normalise_name, normalise_postcode};
use mcr_domain::{NhsNumber, Role};
use mcr_store::{
    DemographicQuery, IndexedPatient, OptOutDecision, OptOutKind, OptOutRequestRow, OptOutState,
};

/// What a person typed into the opt-out form, once each field has been checked for its shape
/// (the web layer says which field is wrong; this checks again what must never be stored).
#[derive(Debug, Clone)]
pub struct OptOutSubmission {
    /// To opt out, or to opt back in.
    pub kind: OptOutKind,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub nhs_number: Option<NhsNumber>,
    pub postcode: String,
    pub contact: String,
}

/// Why staff may verify a request against this patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBasis {
    /// The NHS number given, and the same date of birth.
    NhsNumberAndBirthDate,
    /// The same family name, date of birth and postcode.
    NameBirthDateAndPostcode,
}

impl MatchBasis {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NhsNumberAndBirthDate => "NHS number and date of birth match",
            Self::NameBirthDateAndPostcode => "Family name, date of birth and postcode match",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OptOutCandidate {
    /// For a restricted patient, without postcode or practice.
    pub patient: IndexedPatient,
    pub basis: MatchBasis,
    /// The patient is restricted (S-flagged): their location is never shown.
    pub restricted: bool,
}

/// One request with the patients it could be verified against.
#[derive(Debug, Clone)]
pub struct OptOutCase {
    pub request: OptOutRequestRow,
    pub candidates: Vec<OptOutCandidate>,
    /// Things staff should know, e.g. "the NHS number given belongs to someone with a different
    /// date of birth".
    pub warnings: Vec<String>,
    /// A candidate is restricted: the postcode the request gives (which may be where they live)
    /// is not shown either.
    pub location_withheld: bool,
}

/// Longest name, postcode or contact kept.
pub const MAX_OPT_OUT_FIELD: usize = 200;

const PUBLIC_USER: &str = "public";

fn field(s: &str, what: &str) -> Result<String, GatewayError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(GatewayError::Invalid(format!("Enter your {what}.")));
    }
    if t.chars().count() > MAX_OPT_OUT_FIELD {
        return Err(GatewayError::Invalid(format!(
            "Your {what} must be {MAX_OPT_OUT_FIELD} characters or fewer."
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(GatewayError::Invalid(format!(
            "Your {what} contains characters that cannot be kept."
        )));
    }
    Ok(t.to_owned())
}

fn note_text(s: &str) -> Result<String, GatewayError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(GatewayError::Invalid(
            "Say why the request is rejected.".into(),
        ));
    }
    if t.chars().count() > crate::governance::MAX_REASON {
        return Err(GatewayError::Invalid(format!(
            "The note is too long: at most {} characters.",
            crate::governance::MAX_REASON
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(GatewayError::Invalid(
            "The note contains control characters.".into(),
        ));
    }
    Ok(t.to_owned())
}

/// A reference people can read out over the phone: `OPT-` and eight characters with no
/// look-alikes (no 0/O, 1/I).
fn new_reference() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let chars: Vec<char> = bytes
        .iter()
        .take(8)
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    let (a, b) = chars.split_at(4);
    format!(
        "OPT-{}-{}",
        a.iter().collect::<String>(),
        b.iter().collect::<String>()
    )
}

/// A reference as typed back to us: upper case, no spaces.
pub fn normalise_reference(s: &str) -> String {
    s.trim()
        .to_ascii_uppercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

impl Gateway {
    pub(crate) fn may_handle_opt_outs(&self, ctx: &RequestContext) -> Result<(), GatewayError> {
        let org = &ctx.principal.organisation;
        if ctx.principal.role == Role::PrivacyOfficer && org.member && !org.suspended {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(
                "Only privacy officers of member organisations can handle opt-out requests.".into(),
            ))
        }
    }

    pub(crate) async fn refuse_opt_out(
        &self,
        ctx: &RequestContext,
        action: Action,
        e: GatewayError,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, None);
        event.outcome = Outcome::Deny;
        event.detail = Some(e.to_string());
        match self.audit(&event).await {
            Ok(_) => e,
            Err(audit) => audit,
        }
    }

    /// Record a request from the public site; returns its reference. The request and its audit
    /// record are written together, or neither is.
    pub async fn submit_opt_out_request(
        &self,
        sub: &OptOutSubmission,
        correlation_id: &str,
    ) -> Result<String, GatewayError> {
        let request = OptOutRequestRow {
            reference: new_reference(),
            kind: sub.kind,
            received_at: self.clock.now(),
            given_name: field(&sub.given_name, "given name")?,
            family_name: field(&sub.family_name, "family name")?,
            birth_date: sub.birth_date,
            nhs_number: sub.nhs_number.clone(),
            postcode: field(&sub.postcode, "postcode")?,
            contact: field(&sub.contact, "contact details")?,
            state: OptOutState::Received,
            matched_nhs: None,
            decided_by: None,
            decided_at: None,
            decision_note: None,
        };
        let event = AuditEvent {
            at: request.received_at,
            correlation_id: correlation_id.to_owned(),
            system: None,
            user_id: PUBLIC_USER.into(),
            user_name: "a member of the public".into(),
            role: "public".into(),
            org_code: "PUBLIC".into(),
            org_name: "My Care Record public site".into(),
            patient: None,
            purpose: "patient-request".into(),
            action: match request.kind {
                OptOutKind::OptOut => Action::OptOutRequest,
                OptOutKind::OptIn => Action::OptInRequest,
            },
            outcome: Outcome::Received,
            basis: Some(request.reference.clone()),
            detail: Some(format!(
                "{} request {} received ({})",
                request.kind.as_str(),
                request.reference,
                if request.nhs_number.is_some() {
                    "with an NHS number"
                } else {
                    "without an NHS number"
                }
            )),
            sources: Vec::new(),
            role_profile_id: None,
        };
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let row = self
            .store
            .add_opt_out_request(&request, &append, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "opt-out request not recorded");
                GatewayError::AuditUnavailable
            })?;
        self.after_append(&row).await;
        tracing::info!(seq = row.seq, "opt-out request received");
        Ok(request.reference)
    }

    /// The requests in `state` (all when `None`), oldest first. Privacy officers only; audited.
    pub async fn opt_out_requests(
        &self,
        ctx: &RequestContext,
        state: Option<OptOutState>,
    ) -> Result<Vec<OptOutRequestRow>, GatewayError> {
        const ACTION: Action = Action::ReadOptOutRequests;
        if let Err(e) = self.may_handle_opt_outs(ctx) {
            return Err(self.refuse_opt_out(ctx, ACTION, e).await);
        }
        let list = self
            .store
            .opt_out_requests(state, mcr_store::OPT_OUT_LIST_MAX)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!(
            "{} request(s), {}",
            list.len(),
            state.map_or("any state", OptOutState::as_str)
        ));
        self.audit(&event).await?;
        Ok(list)
    }

    async fn opt_out_request_row(&self, reference: &str) -> Result<OptOutRequestRow, GatewayError> {
        let reference = normalise_reference(reference);
        match self.store.opt_out_request(&reference).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(GatewayError::Invalid(
                "There is no opt-out request with that reference.".into(),
            )),
            Err(_) => Err(GatewayError::StoreUnavailable),
        }
    }

    /// The patients in the index a request can be verified against, and what staff should
    /// know. Reads the index only.
    async fn candidates(
        &self,
        r: &OptOutRequestRow,
    ) -> Result<(Vec<OptOutCandidate>, Vec<String>), GatewayError> {
        let mut out: Vec<OptOutCandidate> = Vec::new();
        let mut warnings = Vec::new();
        if let Some(nhs) = &r.nhs_number {
            match self.store.patient(nhs).await.map_err(|_| GatewayError::StoreUnavailable)? {
                Some(p) if p.birth_date == r.birth_date => {
                    if normalise_name(&p.family) != normalise_name(&r.family_name) {
                        warnings.push("The NHS number and date of birth match, but the family name differs: check with the person.".into());
                    }
                    out.push(OptOutCandidate { patient: p, basis: MatchBasis::NhsNumberAndBirthDate, restricted: false });
                }
                Some(_) => warnings.push(
                    "The NHS number given belongs to someone with a different date of birth: it cannot be used to verify this request.".into(),
                ),
                None => warnings.push("The NHS number given is not in the index.".into()),
            }
        }
        let query = DemographicQuery {
            family: r.family_name.clone(),
            given: None,
            birth_date: Some(r.birth_date),
            postcode: Some(r.postcode.clone()),
        };
        if !normalise_name(&query.family).is_empty() {
            let found = self
                .store
                .search_patients(&query, 20)
                .await
                .map_err(|_| GatewayError::StoreUnavailable)?;
            let want_postcode = normalise_postcode(&r.postcode);
            for p in found {
                let same = normalise_name(&p.family) == normalise_name(&r.family_name)
                    && p.birth_date == r.birth_date
                    && p.postcode.as_deref().map(normalise_postcode).as_deref()
                        == Some(want_postcode.as_str());
                if same && !out.iter().any(|c| c.patient.nhs_number == p.nhs_number) {
                    out.push(OptOutCandidate {
                        patient: p,
                        basis: MatchBasis::NameBirthDateAndPostcode,
                        restricted: false,
                    });
                }
            }
        }
        // A restricted patient's location is never shown.
        let numbers: Vec<NhsNumber> = out.iter().map(|c| c.patient.nhs_number.clone()).collect();
        let restricted = self.restricted_among(&numbers).await;
        for c in &mut out {
            if restricted
                .as_ref()
                .is_none_or(|set| set.contains(&c.patient.nhs_number))
            {
                c.restricted = true;
                c.patient.postcode = None;
                c.patient.gp_practice = None;
            }
        }
        if out.is_empty() {
            warnings.push("Nobody in the index matches this request: contact the person to check their details.".into());
        } else if out.len() > 1 {
            warnings.push(
                "More than one person matches: check with the person which record is theirs."
                    .into(),
            );
        }
        Ok((out, warnings))
    }

    /// One request and the patients it can be verified against. Privacy officers only; audited.
    pub async fn opt_out_case(
        &self,
        ctx: &RequestContext,
        reference: &str,
    ) -> Result<OptOutCase, GatewayError> {
        const ACTION: Action = Action::ReadOptOutRequest;
        if let Err(e) = self.may_handle_opt_outs(ctx) {
            return Err(self.refuse_opt_out(ctx, ACTION, e).await);
        }
        let request = self.opt_out_request_row(reference).await?;
        let (candidates, warnings) = self.candidates(&request).await?;
        let withheld = candidates.iter().filter(|c| c.restricted).count();
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        event.basis = Some(request.reference.clone());
        event.detail = Some(format!("{} candidate(s)", candidates.len()));
        if withheld > 0 {
            event.detail = Some(format!(
                "{} candidate(s); location withheld for {withheld} restricted",
                candidates.len()
            ));
        }
        self.audit(&event).await?;
        Ok(OptOutCase {
            request,
            candidates,
            warnings,
            location_withheld: withheld > 0,
        })
    }

    /// Verify a received request against `nhs` (one of its candidates): the objection is
    /// recorded in the register on the request's word, then the request is marked verified.
    /// Returns the audit number of the decision.
    pub async fn verify_opt_out_request(
        &self,
        ctx: &RequestContext,
        reference: &str,
        nhs: &NhsNumber,
    ) -> Result<i64, GatewayError> {
        const ACTION: Action = Action::VerifyOptOutRequest;
        if let Err(e) = self.may_handle_opt_outs(ctx) {
            return Err(self.refuse_opt_out(ctx, ACTION, e).await);
        }
        let request = self.opt_out_request_row(reference).await?;
        if request.state != OptOutState::Received {
            return Err(GatewayError::Invalid(format!(
                "Request {} has already been {}.",
                request.reference,
                request.state.as_str()
            )));
        }
        // Identity, not only demographics: only once the code from the letter came back.
        self.letter_confirmed_for(&request, nhs).await?;
        let (candidates, _) = self.candidates(&request).await?;
        let Some(candidate) = candidates.iter().find(|c| &c.patient.nhs_number == nhs) else {
            return Err(GatewayError::Invalid(
                "That patient does not match the request. Verify it only against a patient listed as a match.".into(),
            ));
        };
        let basis = candidate.basis.describe();
        match request.kind {
            OptOutKind::OptOut => {
                self.record_objection(
                    ctx,
                    &ObjectionRequest::Record {
                        nhs_number: nhs.clone(),
                        on_whose_word: format!("opt-out-request:{}", request.reference),
                        note: Some(format!(
                            "Opt-out request {} verified against the index: {basis}.",
                            request.reference
                        )),
                    },
                )
                .await?;
            }
            // The patient's own request, verified: the one way an objection is lifted from
            // the public site.
            OptOutKind::OptIn => {
                self.lift_on_verified_request(ctx, nhs, &request.reference, basis)
                    .await?;
            }
        }
        let decision = OptOutDecision {
            reference: request.reference.clone(),
            state: OptOutState::Verified,
            matched_nhs: Some(nhs.clone()),
            decided_by: ctx.principal.user_id.clone(),
            decided_at: self.clock.now(),
            note: Some(basis.to_owned()),
        };
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = Outcome::Verified;
        event.basis = Some(request.reference.clone());
        event.detail = Some(format!(
            "{} request {} verified: {basis}; {}",
            request.kind.as_str(),
            request.reference,
            match request.kind {
                OptOutKind::OptOut => "objection recorded",
                OptOutKind::OptIn => "objection lifted",
            }
        ));
        self.decide(&decision, &event).await
    }

    /// Reject a received request that cannot be matched (or is not genuine), with a note.
    pub async fn reject_opt_out_request(
        &self,
        ctx: &RequestContext,
        reference: &str,
        note: &str,
    ) -> Result<i64, GatewayError> {
        const ACTION: Action = Action::RejectOptOutRequest;
        if let Err(e) = self.may_handle_opt_outs(ctx) {
            return Err(self.refuse_opt_out(ctx, ACTION, e).await);
        }
        let note = note_text(note)?;
        let request = self.opt_out_request_row(reference).await?;
        if request.state != OptOutState::Received {
            return Err(GatewayError::Invalid(format!(
                "Request {} has already been {}.",
                request.reference,
                request.state.as_str()
            )));
        }
        let decision = OptOutDecision {
            reference: request.reference.clone(),
            state: OptOutState::Rejected,
            matched_nhs: None,
            decided_by: ctx.principal.user_id.clone(),
            decided_at: self.clock.now(),
            note: Some(note.clone()),
        };
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Rejected;
        event.basis = Some(request.reference.clone());
        event.detail = Some(note);
        self.decide(&decision, &event).await
    }

    pub(crate) async fn decide(
        &self,
        decision: &OptOutDecision,
        event: &AuditEvent,
    ) -> Result<i64, GatewayError> {
        let append = mcr_audit::to_append(event).map_err(|_| GatewayError::AuditUnavailable)?;
        match self
            .store
            .decide_opt_out_request(decision, &append, &mcr_audit::chain_hash)
            .await
        {
            Ok(Some(row)) => {
                self.after_append(&row).await;
                Ok(row.seq)
            }
            Ok(None) => Err(GatewayError::Invalid(format!(
                "Request {} has already been decided.",
                decision.reference
            ))),
            Err(e) => {
                tracing::error!(error = %e, "opt-out decision not recorded");
                Err(GatewayError::AuditUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_readable_and_distinct() {
        let a = new_reference();
        assert_eq!(a.len(), 13, "{a}");
        assert!(a.starts_with("OPT-"));
        assert!(
            a[4..]
                .chars()
                .all(|c| c == '-' || (c.is_ascii_alphanumeric() && !"01IO".contains(c))),
            "{a}"
        );
        assert_ne!(a, new_reference());
        assert_eq!(normalise_reference(" opt-abcd- efgh "), "OPT-ABCD-EFGH");
    }
}
