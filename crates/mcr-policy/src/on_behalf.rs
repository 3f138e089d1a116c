//! Answers given on the patient's behalf, and lifting an objection: the coded grounds each
//! needs. An answer on someone's behalf opens their record as surely as break-glass does, so it
//! is never an unexplained default: it names its ground, and a privacy officer reviews it.

use crate::inputs::PermissionGiver;
use serde::{Deserialize, Serialize};

/// Why someone other than the patient answered when permission to view was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBehalfReason {
    /// A representative: a parent or guardian of a child.
    ParentalResponsibility,
    /// A representative: a registered lasting power of attorney for health and welfare.
    LastingPowerOfAttorney,
    /// A representative: a deputy appointed by the Court of Protection.
    CourtAppointedDeputy,
    /// Best interests: a mental capacity assessment found the patient cannot decide.
    LacksCapacity,
    /// Best interests: the patient is unconscious or sedated.
    Unconscious,
    /// Best interests: the patient cannot communicate a decision by any means.
    CannotCommunicate,
}

impl OnBehalfReason {
    pub const ALL: [OnBehalfReason; 6] = [
        OnBehalfReason::ParentalResponsibility,
        OnBehalfReason::LastingPowerOfAttorney,
        OnBehalfReason::CourtAppointedDeputy,
        OnBehalfReason::LacksCapacity,
        OnBehalfReason::Unconscious,
        OnBehalfReason::CannotCommunicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OnBehalfReason::ParentalResponsibility => "parental-responsibility",
            OnBehalfReason::LastingPowerOfAttorney => "lasting-power-of-attorney",
            OnBehalfReason::CourtAppointedDeputy => "court-appointed-deputy",
            OnBehalfReason::LacksCapacity => "lacks-capacity",
            OnBehalfReason::Unconscious => "unconscious",
            OnBehalfReason::CannotCommunicate => "cannot-communicate",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            OnBehalfReason::ParentalResponsibility => {
                "a parent or guardian with parental responsibility"
            }
            OnBehalfReason::LastingPowerOfAttorney => {
                "someone with lasting power of attorney for health and welfare"
            }
            OnBehalfReason::CourtAppointedDeputy => "a deputy appointed by the Court of Protection",
            OnBehalfReason::LacksCapacity => {
                "a capacity assessment found the patient cannot make this decision"
            }
            OnBehalfReason::Unconscious => "the patient is unconscious or sedated",
            OnBehalfReason::CannotCommunicate => "the patient cannot communicate a decision",
        }
    }

    /// Who may answer on this ground.
    pub fn giver(self) -> PermissionGiver {
        match self {
            OnBehalfReason::ParentalResponsibility
            | OnBehalfReason::LastingPowerOfAttorney
            | OnBehalfReason::CourtAppointedDeputy => PermissionGiver::Representative,
            OnBehalfReason::LacksCapacity
            | OnBehalfReason::Unconscious
            | OnBehalfReason::CannotCommunicate => PermissionGiver::BestInterests,
        }
    }

    /// The grounds on which `giver` may answer (none for the patient).
    pub fn for_giver(giver: PermissionGiver) -> impl Iterator<Item = OnBehalfReason> {
        Self::ALL.into_iter().filter(move |r| r.giver() == giver)
    }
}

impl std::str::FromStr for OnBehalfReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_and_belongs_to_one_giver() {
        for r in OnBehalfReason::ALL {
            assert_eq!(r.as_str().parse::<OnBehalfReason>(), Ok(r));
            assert_ne!(r.giver(), PermissionGiver::Patient);
        }
        assert_eq!(
            OnBehalfReason::for_giver(PermissionGiver::Representative).count(),
            3
        );
        assert_eq!(
            OnBehalfReason::for_giver(PermissionGiver::BestInterests).count(),
            3
        );
        assert_eq!(
            OnBehalfReason::for_giver(PermissionGiver::Patient).count(),
            0
        );
        assert!("neighbour".parse::<OnBehalfReason>().is_err());
    }
}
