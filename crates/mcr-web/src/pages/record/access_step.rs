//! What the user can do when the view is not permitted now: record the patient's
//! permission, claim a relationship, or (clinical roles) emergency access; after a refusal,
//! record a changed mind.

use super::super::{Layout, PageUser};
use askama::Template;
use mcr_domain::NhsNumber;
use mcr_policy::{Decision, DenyCode};

/// What the user can do when the view is not permitted now.
#[derive(Template)]
#[template(path = "app/access_step.html")]
pub(crate) struct AccessStepPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    /// `needs-permission`, `needs-relationship` or `deny`.
    pub outcome: &'static str,
    pub sentence: String,
    /// The deny code, when denied.
    pub deny_code: String,
    /// Offer emergency access (clinical roles, not after an opt-out or an organisation refusal;
    /// after a restricted record's refusal, yes).
    pub offer_emergency: bool,
    /// Offer to record the patient's changed mind after a refusal.
    pub offer_reask: bool,
}

pub(super) fn access_step(
    user: &PageUser,
    layout: Layout,
    nhs: &NhsNumber,
    decision: &Decision,
) -> AccessStepPage {
    let clinical = matches!(
        user.0.principal.role,
        mcr_domain::Role::Clinician | mcr_domain::Role::Nurse | mcr_domain::Role::Paramedic
    );
    let (deny_code, offer_emergency, offer_reask) = match decision {
        Decision::Deny(d) => (
            d.code.as_str().to_owned(),
            // Emergency access passes a refusal recorded and a restriction (reviewed).
            clinical
                && matches!(
                    d.code,
                    DenyCode::PermissionRefused | DenyCode::RestrictedRecord
                ),
            d.code == DenyCode::PermissionRefused,
        ),
        _ => (String::new(), clinical, false),
    };
    AccessStepPage {
        layout,
        nhs: nhs.to_string(),
        nhs_formatted: nhs.formatted(),
        outcome: decision.code(),
        sentence: decision.sentence(),
        deny_code,
        offer_emergency,
        offer_reask,
    }
}
