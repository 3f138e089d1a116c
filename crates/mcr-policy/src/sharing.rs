//! Data sharing agreements: what a source organisation shares with which kinds of viewer.

use mcr_domain::{DataClass, OdsCode, OrgKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Organisation kinds that may never view, whatever else is recorded or configured.
pub const EXCLUDED_KINDS: [OrgKind; 2] = [OrgKind::PrivateCompany, OrgKind::ThirdParty];

/// True for kinds that may never view (private companies, third parties).
pub fn is_excluded_kind(kind: OrgKind) -> bool {
    EXCLUDED_KINDS.contains(&kind)
}

/// A source organisation's choice of which data classes it shares with each kind of viewing
/// organisation. A kind not listed gets nothing from this source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingAgreement {
    pub source_org: OdsCode,
    pub shares: BTreeMap<OrgKind, BTreeSet<DataClass>>,
}

impl SharingAgreement {
    /// True when this source shares `class` with organisations of `viewer_kind`. Excluded kinds
    /// get nothing even if an agreement lists them.
    pub fn allows(&self, viewer_kind: OrgKind, class: DataClass) -> bool {
        !is_excluded_kind(viewer_kind)
            && self
                .shares
                .get(&viewer_kind)
                .is_some_and(|set| set.contains(&class))
    }

    /// As [`SharingAgreement::allows`], where no agreement means "shares everything with every
    /// kind that may view".
    pub fn allows_opt(
        agreement: Option<&SharingAgreement>,
        viewer_kind: OrgKind,
        class: DataClass,
    ) -> bool {
        match agreement {
            Some(a) => a.allows(viewer_kind, class),
            None => !is_excluded_kind(viewer_kind),
        }
    }
}
