//! Checking identity, not only demographics, before an opt-out request from the public site
//! becomes an objection: a verification reference posted to the registered address.
//!
//! Once a privacy officer has matched a request to a patient, they send a letter
//! ([`Gateway::send_opt_out_letter`]): the gateway makes a one-time code, records that a
//! letter with it went to the address the index holds for that patient (only a hash of the
//! code is kept; in this project the letter is recorded, not printed), and the request waits
//! for its letter code. The objection is recorded only when the code comes back: typed by the
//! person on the public site ([`Gateway::confirm_opt_out_code_public`]), or read out to a
//! privacy officer who enters it ([`Gateway::confirm_opt_out_code`]). Someone who knows a
//! name, date of birth and postcode but does not receive that person's post cannot complete
//! it. Wrong codes are refused and audited; after [`MAX_WRONG_CODES`] the letter is spent and
//! the request must be rejected and made again. Every step is audited.

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::AuditEvent;
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::{LetterAttempt, OptOutDecision, OptOutLetterRow, OptOutRequestRow, OptOutState};
use sha2::{Digest, Sha256};

/// Wrong codes accepted before a letter is spent.
pub const MAX_WRONG_CODES: i64 = 5;

/// A letter as sent: the code is returned once, to be printed on the letter.
#[derive(Debug, Clone)]
pub struct OptOutLetter {
    pub code: String,
    pub sent_to: String,
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

/// Eight characters with no look-alikes, as `ABCD-EFGH`.
fn new_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let chars: String = bytes
        .iter()
        .take(8)
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// A code as typed back: upper case, letters and digits only.
fn normalise_code(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn code_hash(reference: &str, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"mcr-opt-out-letter/v1\n");
    h.update(reference.as_bytes());
    h.update(b"\n");
    h.update(normalise_code(code).as_bytes());
    hex::encode(h.finalize())
}

/// Who entered a code.
enum Entered<'a> {
    Staff(&'a RequestContext),
    Public { correlation_id: &'a str },
}

impl Gateway {
    /// The letter sent for a request, if any. Read by the case screen.
    pub async fn opt_out_letter(
        &self,
        reference: &str,
    ) -> Result<Option<OptOutLetterRow>, GatewayError> {
        self.store
            .opt_out_letter(&crate::normalise_reference(reference))
            .await
            .map_err(|_| GatewayError::StoreUnavailable)
    }

    /// Send the verification letter for a received request matched to `nhs` (one of its
    /// candidates), to the address the index holds for that patient. Privacy officers only;
    /// audited. One letter per request.
    pub async fn send_opt_out_letter(
        &self,
        ctx: &RequestContext,
        reference: &str,
        nhs: &NhsNumber,
    ) -> Result<OptOutLetter, GatewayError> {
        const ACTION: Action = Action::SendOptOutLetter;
        let case = self.opt_out_case(ctx, reference).await?;
        let request = &case.request;
        if request.state != OptOutState::Received {
            return Err(GatewayError::Invalid(format!(
                "Request {} has already been {}.",
                request.reference,
                request.state.as_str()
            )));
        }
        let Some(candidate) = case
            .candidates
            .iter()
            .find(|c| &c.patient.nhs_number == nhs)
        else {
            return Err(GatewayError::Invalid(
                "That patient does not match the request. Send a letter only to a patient listed as a match.".into(),
            ));
        };
        let Some(postcode) = candidate.patient.postcode.clone() else {
            return Err(GatewayError::Invalid(
                "The index holds no address for this patient, so no letter can be sent. Ask the person's GP practice to confirm their identity, or reject the request.".into(),
            ));
        };
        let code = new_code();
        let now = self.clock.now();
        let sent_to = format!("the address the index holds for this patient (postcode {postcode})");
        let letter = OptOutLetterRow {
            reference: request.reference.clone(),
            nhs_number: nhs.clone(),
            code_hash: code_hash(&request.reference, &code),
            sent_to: sent_to.clone(),
            sent_by: ctx.principal.user_id.clone(),
            sent_at: now,
            wrong_attempts: 0,
            confirmed_at: None,
        };
        let mut event = self.event(ctx, ACTION, Some(nhs.as_str()));
        event.outcome = Outcome::LetterSent;
        event.basis = Some(request.reference.clone());
        event.detail = Some(format!(
            "verification letter for opt-out request {} sent to {sent_to}; the request awaits its letter code",
            request.reference
        ));
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        match self
            .store
            .add_opt_out_letter(&letter, &append, &mcr_audit::chain_hash)
            .await
        {
            Ok(Some(row)) => {
                self.after_append(&row).await;
                Ok(OptOutLetter {
                    code,
                    sent_to,
                    sent_at: now,
                })
            }
            Ok(None) => Err(GatewayError::Invalid(format!(
                "A letter has already been sent for request {}.",
                request.reference
            ))),
            Err(e) => {
                tracing::error!(error = %e, "opt-out letter not recorded");
                Err(GatewayError::AuditUnavailable)
            }
        }
    }

    /// A privacy officer enters the code the person read out from the letter: right, the
    /// objection is recorded and the request verified; wrong, refused and audited.
    pub async fn confirm_opt_out_code(
        &self,
        ctx: &RequestContext,
        reference: &str,
        code: &str,
    ) -> Result<i64, GatewayError> {
        if let Err(e) = self.may_handle_opt_outs(ctx) {
            return Err(self.refuse_opt_out(ctx, Action::ConfirmOptOutCode, e).await);
        }
        let (request, letter) = self
            .check_code(Entered::Staff(ctx), reference, code)
            .await?;
        self.verify_opt_out_request(ctx, &request.reference, &letter.nhs_number)
            .await
    }

    /// The person types the code from the letter on the public site: right, the objection is
    /// recorded (or, for a request to opt back in, lifted) and the request verified; wrong,
    /// refused and audited. Returns what the person had asked for.
    pub async fn confirm_opt_out_code_public(
        &self,
        reference: &str,
        code: &str,
        correlation_id: &str,
    ) -> Result<mcr_store::OptOutKind, GatewayError> {
        let (request, letter) = self
            .check_code(Entered::Public { correlation_id }, reference, code)
            .await?;
        let nhs = letter.nhs_number;
        let now = self.clock.now();
        // An opt-out records the objection; a request to opt back in lifts it (the patient's
        // own request, verified: the public site's one way to lift an objection).
        let (state, action, asked) = match request.kind {
            mcr_store::OptOutKind::OptOut => ("active", Action::RecordObjection, "opt-out"),
            mcr_store::OptOutKind::OptIn => {
                self.must_have_objection(&nhs).await?;
                ("withdrawn", Action::WithdrawObjection, "opt-in")
            }
        };
        let row = mcr_store::ObjectionRow {
            nhs_number: nhs.clone(),
            state: state.into(),
            recorded_by: "public".into(),
            on_whose_word: format!("{asked}-request:{}", request.reference),
            override_reason: None,
            by_role: None,
            note: Some(format!(
                "{} request {} verified by the code from the letter sent to {}.",
                if asked == "opt-in" {
                    "Opt-in"
                } else {
                    "Opt-out"
                },
                request.reference,
                letter.sent_to
            )),
            at: now,
            ends_at: None,
        };
        let mut event = public_event(self, action, correlation_id);
        event.patient = Some(nhs.as_str().to_owned());
        event.outcome = match request.kind {
            mcr_store::OptOutKind::OptOut => Outcome::Active,
            mcr_store::OptOutKind::OptIn => Outcome::Withdrawn,
        };
        event.basis = Some(request.reference.clone());
        event.detail = row.note.clone();
        match mcr_audit::record_change(
            self.store.as_ref(),
            &mcr_store::GovernanceChange::Objection(row),
            &event,
        )
        .await
        {
            Ok(r) => self.after_append(&r).await,
            Err(e) => {
                tracing::error!(error = %e, "objection from a letter code not recorded");
                return Err(GatewayError::AuditUnavailable);
            }
        }
        let decision = OptOutDecision {
            reference: request.reference.clone(),
            state: OptOutState::Verified,
            matched_nhs: Some(nhs.clone()),
            decided_by: "public (letter code)".into(),
            decided_at: now,
            note: Some("identity confirmed by the code from the letter".into()),
        };
        let mut event = public_event(self, Action::VerifyOptOutRequest, correlation_id);
        event.patient = Some(nhs.as_str().to_owned());
        event.outcome = Outcome::Verified;
        event.basis = Some(request.reference.clone());
        event.detail = Some(format!(
            "{asked} request {} verified by the letter code; objection {}",
            request.reference,
            if asked == "opt-in" {
                "lifted"
            } else {
                "recorded"
            }
        ));
        self.decide(&decision, &event).await?;
        Ok(request.kind)
    }

    /// Whether a request may be verified against `nhs` now: only once the code from its
    /// letter, sent to that patient's address, has come back.
    pub(crate) async fn letter_confirmed_for(
        &self,
        request: &OptOutRequestRow,
        nhs: &NhsNumber,
    ) -> Result<(), GatewayError> {
        let letter = self.opt_out_letter(&request.reference).await?;
        match letter {
            Some(l) if l.confirmed_at.is_some() && &l.nhs_number == nhs => Ok(()),
            Some(l) if l.confirmed_at.is_some() => Err(GatewayError::Invalid(
                "The letter for this request went to a different patient's address.".into(),
            )),
            Some(_) => Err(GatewayError::Invalid(format!(
                "Request {} is awaiting its letter code: it is verified when the code from the letter is entered.",
                request.reference
            ))),
            None => Err(GatewayError::Invalid(format!(
                "Send a verification letter for request {} first: the opt-out takes effect when the code from the letter comes back.",
                request.reference
            ))),
        }
    }

    /// Check a code against the request's letter; audit the attempt either way.
    async fn check_code(
        &self,
        who: Entered<'_>,
        reference: &str,
        code: &str,
    ) -> Result<(OptOutRequestRow, OptOutLetterRow), GatewayError> {
        const ACTION: Action = Action::ConfirmOptOutCode;
        let reference = crate::normalise_reference(reference);
        let wrong = || {
            GatewayError::Invalid(
                "That reference and code do not match a letter we sent. Check both and try again."
                    .into(),
            )
        };
        let request = match self.store.opt_out_request(&reference).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(self
                    .audit_attempt(&who, &reference, None, Outcome::UnknownReference)
                    .await
                    .unwrap_or_else(wrong))
            }
            Err(_) => return Err(GatewayError::StoreUnavailable),
        };
        let Some(letter) = self.opt_out_letter(&reference).await? else {
            return Err(self
                .audit_attempt(&who, &reference, None, Outcome::NoLetter)
                .await
                .unwrap_or_else(wrong));
        };
        if letter.confirmed_at.is_some() || request.state != OptOutState::Received {
            return Err(GatewayError::Invalid(format!(
                "Request {reference} has already been {}.",
                request.state.as_str()
            )));
        }
        if letter.wrong_attempts >= MAX_WRONG_CODES {
            self.audit_attempt(
                &who,
                &reference,
                Some(&letter.nhs_number),
                Outcome::LetterSpent,
            )
            .await;
            return Err(GatewayError::Invalid(format!(
                "Too many wrong codes were entered for request {reference}, so its letter can no longer be used. A privacy officer will reject it; the person can then ask again."
            )));
        }
        let right = code_hash(&reference, code) == letter.code_hash;
        let attempt = if right {
            LetterAttempt::Confirmed(self.clock.now())
        } else {
            LetterAttempt::Wrong
        };
        let mut event = self.attempt_event(&who, ACTION);
        event.patient = Some(letter.nhs_number.as_str().to_owned());
        event.outcome = if right {
            Outcome::CodeConfirmed
        } else {
            Outcome::WrongCode
        };
        event.basis = Some(reference.clone());
        event.detail = Some(if right {
            format!("the code from the letter for opt-out request {reference} was entered")
        } else {
            format!(
                "a wrong code was entered for opt-out request {reference} ({} of {MAX_WRONG_CODES})",
                letter.wrong_attempts + 1
            )
        });
        let append = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        match self
            .store
            .record_letter_attempt(&reference, attempt, &append, &mcr_audit::chain_hash)
            .await
        {
            Ok(Some(row)) => self.after_append(&row).await,
            Ok(None) => {
                return Err(GatewayError::Invalid(format!(
                    "Request {reference} has already been verified."
                )))
            }
            Err(e) => {
                tracing::error!(error = %e, "letter code attempt not recorded");
                return Err(GatewayError::AuditUnavailable);
            }
        }
        if right {
            Ok((request, letter))
        } else {
            Err(wrong())
        }
    }

    /// Audit an attempt that matched no letter; `None` when it was audited.
    async fn audit_attempt(
        &self,
        who: &Entered<'_>,
        reference: &str,
        nhs: Option<&NhsNumber>,
        outcome: Outcome,
    ) -> Option<GatewayError> {
        let mut event = self.attempt_event(who, Action::ConfirmOptOutCode);
        event.patient = nhs.map(|n| n.as_str().to_owned());
        event.outcome = outcome;
        event.basis = Some(reference.chars().take(20).collect());
        self.audit(&event).await.err()
    }

    fn attempt_event(&self, who: &Entered<'_>, action: Action) -> AuditEvent {
        match who {
            Entered::Staff(ctx) => self.event(ctx, action, None),
            Entered::Public { correlation_id } => public_event(self, action, correlation_id),
        }
    }
}

fn public_event(g: &Gateway, action: Action, correlation_id: &str) -> AuditEvent {
    AuditEvent {
        at: g.clock.now(),
        correlation_id: correlation_id.to_owned(),
        system: None,
        user_id: "public".into(),
        user_name: "a member of the public".into(),
        role: "public".into(),
        org_code: "PUBLIC".into(),
        org_name: "My Care Record public site".into(),
        patient: None,
        purpose: "patient-request".into(),
        action,
        outcome: Outcome::Error,
        basis: None,
        detail: None,
        sources: Vec::new(),
        role_profile_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_readable_and_checked_as_typed() {
        let c = new_code();
        assert_eq!(c.len(), 9, "{c}");
        assert!(
            c.chars()
                .all(|ch| ch == '-' || (ch.is_ascii_alphanumeric() && !"01IO".contains(ch))),
            "{c}"
        );
        assert_ne!(c, new_code());
        let h = code_hash("OPT-AAAA-BBBB", "ABCD-EFGH");
        assert_eq!(h, code_hash("OPT-AAAA-BBBB", " abcd efgh "));
        assert_ne!(
            h,
            code_hash("OPT-AAAA-CCCC", "ABCD-EFGH"),
            "bound to the request"
        );
        assert_ne!(h, code_hash("OPT-AAAA-BBBB", "ABCD-EFGJ"));
    }
}
