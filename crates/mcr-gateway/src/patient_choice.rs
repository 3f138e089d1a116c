//! A patient's own choice, made online: to opt out of sharing, or to opt back in, signed in
//! with NHS login at identity proofing level P9.
//!
//! P9 is NHS login's highest level: the person's identity was checked against photo ID and
//! their NHS number confirmed. It is the written request the register otherwise waits for, so
//! the choice takes effect at once, with no privacy officer in between, and it is recorded as
//! the patient's own act (`recorded_by` and the audit record's user are `patient`, the basis
//! `nhs-login:P9`). Below P9 nobody can change anything here: the public opt-out form, which a
//! privacy officer verifies, remains for them.

use crate::{Gateway, GatewayError};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::{GovernanceChange, ObjectionRow, OptOutKind};

/// The only identity proofing level at which a patient may change their own choice online.
pub const CHOICE_PROOFING_LEVEL: &str = "P9";

/// `on_whose_word` of an objection recorded or lifted by the patient online.
pub const ONLINE_WORD: &str = "patient-online:nhs-login-p9";

/// A patient signed in with NHS login: their NHS number and the proofing level NHS login gave.
#[derive(Debug, Clone, Copy)]
pub struct SignedInPatient<'a> {
    pub nhs: &'a NhsNumber,
    /// `P0`, `P5` or `P9`, as NHS login said it.
    pub proofing_level: &'a str,
    pub correlation_id: &'a str,
}

/// Whether the patient's record is shared now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    /// An objection stands (whoever recorded it).
    OptedOut,
}

/// What a patient's choice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceMade {
    /// Recorded; the audit record's number.
    Recorded(i64),
    /// It was already so: nothing changed, nothing recorded.
    AlreadySo,
}

impl Gateway {
    /// Whether `nhs`'s record is shared now: opted out while the latest objection recorded or
    /// withdrawn is recorded (an override leaves it standing). The one reading of the register
    /// for the patient's own page and for every lift or override.
    pub async fn patient_sharing(&self, nhs: &NhsNumber) -> Result<Sharing, GatewayError> {
        let records = self
            .store
            .governance(nhs)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let standing = records
            .objections
            .iter()
            .rev()
            .find(|o| o.state == "active" || o.state == "withdrawn")
            .is_some_and(|o| o.state == "active");
        Ok(if standing {
            Sharing::OptedOut
        } else {
            Sharing::Shared
        })
    }

    /// The patient opts out (`OptOut`) or back in (`OptIn`), on their own word, online. Only
    /// at P9; anything else is refused and the refusal audited. The change and its audit
    /// record are written together, or neither is.
    pub async fn patient_chooses(
        &self,
        who: &SignedInPatient<'_>,
        kind: OptOutKind,
    ) -> Result<ChoiceMade, GatewayError> {
        let action = match kind {
            OptOutKind::OptOut => Action::RecordObjection,
            OptOutKind::OptIn => Action::WithdrawObjection,
        };
        if who.proofing_level != CHOICE_PROOFING_LEVEL {
            let why = format!(
                "Your identity was checked to level {}; changing your choice online needs level {CHOICE_PROOFING_LEVEL}.",
                who.proofing_level
            );
            let mut event = self.patient_event(who.correlation_id, Some(who.nhs), action);
            event.outcome = Outcome::Deny;
            event.basis = Some("proofing-level-too-low".into());
            event.detail = Some(format!("identity proofing level {}", who.proofing_level));
            self.audit(&event).await?;
            return Err(GatewayError::Forbidden(why));
        }
        self.must_exist(who.nhs).await?;
        let now = self.patient_sharing(who.nhs).await?;
        let (state, outcome, detail) = match (kind, now) {
            (OptOutKind::OptOut, Sharing::OptedOut) | (OptOutKind::OptIn, Sharing::Shared) => {
                return Ok(ChoiceMade::AlreadySo)
            }
            (OptOutKind::OptOut, Sharing::Shared) => (
                "active",
                Outcome::Active,
                "Opted out online by the patient, signed in with NHS login at P9.",
            ),
            (OptOutKind::OptIn, Sharing::OptedOut) => (
                "withdrawn",
                Outcome::Withdrawn,
                "Opted back in online by the patient, signed in with NHS login at P9.",
            ),
        };
        let row = ObjectionRow {
            nhs_number: who.nhs.clone(),
            state: state.into(),
            recorded_by: "patient".into(),
            on_whose_word: ONLINE_WORD.into(),
            override_reason: None,
            by_role: None,
            note: Some(detail.into()),
            at: self.clock.now(),
            ends_at: None,
        };
        let mut event = self.patient_event(who.correlation_id, Some(who.nhs), action);
        event.outcome = outcome;
        event.basis = Some(format!("nhs-login:{CHOICE_PROOFING_LEVEL}"));
        event.detail = Some(format!("on {ONLINE_WORD}: {detail}"));
        self.commit(GovernanceChange::Objection(row), event)
            .await
            .map(ChoiceMade::Recorded)
    }
}
