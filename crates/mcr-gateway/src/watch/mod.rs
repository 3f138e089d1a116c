//! The watch on every permitted view, as it happens: a handful of rules checked in memory
//! between the decision and the fetch, each finding written to the audit trail as an
//! `anomaly-flag` (outcome `alert`, basis the rule, detail the evidence in words) that the
//! privacy officer's review queue lists like an emergency access, and handed to a
//! [`FlagSink`] that tells privacy officers.
//!
//! The rules: many distinct patients per user in a window (flag; above a hard limit the view
//! is refused with a sentence saying why and who to contact); a patient with the user's own
//! family name; a view outside the working hours set for the user's kind of organisation (UK
//! local time; emergency settings exempt); a patient on the protected person list.
//!
//! Cost: one short store call per view (two or more when a rule fires). The patient's family
//! name and postcode come with the index row the view already read, the user's family name from
//! their name, the counts from [`WatchCounters`] (in the store, shared by every gateway of a
//! region: [`crate::StoreCounters`]) and the protected person list from a cache refreshed in
//! the background. A flag is committed beside the view's own audit record. Counters that cannot
//! be read fail the view closed, like the store's other reads.
//!
//! Never logs patient data; evidence carries counts, times and thresholds, never clinical data.

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use counter::{CounterResult, FlagClaim, FlagKey, MemoryCounters, ViewCount, WatchCounters};
use mcr_audit::{Action, Outcome};
use mcr_domain::demographics::{normalise_name, normalise_postcode};
use mcr_domain::{NhsNumber, OrgKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A rule of the watch. Its code is the `basis` of the flag's audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchRule {
    /// More distinct patients in the window than the flag limit.
    ManyPatients,
    /// A view refused: it would have made more distinct patients than the hard limit.
    TooManyPatients,
    /// The patient's family name is the user's own.
    SameFamilyName,
    /// Outside the working hours of the user's kind of organisation.
    OutOfHours,
    /// The patient is on the protected person list.
    ProtectedPerson,
    /// Emergency access declared: not a rule of the watch, but every one is told to the
    /// privacy officers the same way, at once.
    EmergencyAccess,
    /// A restricted (S-flagged) patient: a view refused because the role is not one the
    /// region names, or a view by emergency access. Every one is flagged (not once per window).
    RestrictedRecord,
}

impl WatchRule {
    pub const ALL: [WatchRule; 7] = [
        WatchRule::ManyPatients,
        WatchRule::TooManyPatients,
        WatchRule::SameFamilyName,
        WatchRule::OutOfHours,
        WatchRule::ProtectedPerson,
        WatchRule::EmergencyAccess,
        WatchRule::RestrictedRecord,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::ManyPatients => "many-patients",
            Self::TooManyPatients => "too-many-patients",
            Self::SameFamilyName => "same-family-name",
            Self::OutOfHours => "out-of-hours",
            Self::ProtectedPerson => "protected-person",
            Self::EmergencyAccess => "emergency-access",
            Self::RestrictedRecord => "restricted-record",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == s)
    }

    /// The rule in a few words, for pages and messages.
    pub fn title(self) -> &'static str {
        match self {
            Self::ManyPatients => "Many patients in a short time",
            Self::TooManyPatients => "View refused: too many patients in a short time",
            Self::SameFamilyName => "Patient with the user's own family name",
            Self::OutOfHours => "View outside working hours",
            Self::ProtectedPerson => "Patient on the protected person list",
            Self::EmergencyAccess => "Emergency access declared",
            Self::RestrictedRecord => "Restricted record: refused, or viewed by emergency access",
        }
    }

    /// Rules about one patient are flagged once per patient; the others once per user.
    fn per_patient(self) -> bool {
        matches!(
            self,
            Self::SameFamilyName | Self::ProtectedPerson | Self::RestrictedRecord
        )
    }
}

pub(crate) mod counter;
mod gateway;
mod hours;
#[cfg(test)]
mod tests;
pub use hours::{uk_local, WorkingHours};

// ---------------------------------------------------------------------------------------------
// Configuration.

/// Kinds of organisation that work around the clock: never flagged for the hour of a view.
pub const EMERGENCY_KINDS: [OrgKind; 2] = [OrgKind::AcuteTrust, OrgKind::AmbulanceService];

/// The watch's rules and limits (`[watch]` in the gateway's settings).
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The period over which distinct patients are counted, and within which one user and rule
    /// (and patient, for rules about one patient) is flagged once.
    pub window: Duration,
    /// Flag a user who views more distinct patients than this within the window.
    pub flag_patients: usize,
    /// Refuse (HTTP 429) a view that would make more distinct patients than this.
    pub refuse_patients: usize,
    /// Flag a view of a patient with the user's own family name.
    pub same_family_name: bool,
    /// Working hours per kind of organisation; kinds not listed are not checked, and
    /// [`EMERGENCY_KINDS`] never are.
    pub hours: BTreeMap<OrgKind, WorkingHours>,
    /// Who a refused user should contact, ending the refusal's sentence.
    pub contact: String,
    /// How old the cached protected person list may grow before it is read again (in the
    /// background: views never wait for it, except the very first).
    pub protected_refresh: std::time::Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        let mut hours = BTreeMap::new();
        if let Ok(h) = WorkingHours::parse("Mon-Fri 07:00-19:00") {
            hours.insert(OrgKind::GpPractice, h);
        }
        Self {
            window: Duration::minutes(60),
            flag_patients: 30,
            refuse_patients: 60,
            same_family_name: true,
            hours,
            contact: "your organisation's privacy officer or Caldicott guardian".into(),
            protected_refresh: std::time::Duration::from_secs(30),
        }
    }
}

impl WatchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window < Duration::minutes(1) || self.window > Duration::days(1) {
            return Err("watch.window_minutes must be between 1 and 1440".into());
        }
        if self.flag_patients == 0 {
            return Err("watch.flag_patients must be at least 1".into());
        }
        if self.refuse_patients < self.flag_patients {
            return Err("watch.refuse_patients must be at least watch.flag_patients".into());
        }
        if let Some(k) = self.hours.keys().find(|k| EMERGENCY_KINDS.contains(k)) {
            return Err(format!(
                "watch.hours: `{k}` is an emergency setting, never flagged for the hour of a view; remove it"
            ));
        }
        if self.contact.trim().is_empty() {
            return Err("watch.contact must say who a refused user should contact".into());
        }
        Ok(())
    }

    fn window_words(&self) -> String {
        let m = self.window.num_minutes();
        if m % 60 == 0 {
            let h = m / 60;
            if h == 1 {
                "an hour".into()
            } else {
                format!("{h} hours")
            }
        } else {
            format!("{m} minutes")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rules, as a pure function.

/// What the watch knows about one permitted view; everything is already in memory.
#[derive(Debug, Clone)]
pub struct ViewFacts<'a> {
    pub at: DateTime<Utc>,
    pub org_kind: OrgKind,
    /// The user's name as the identity provider gave it (the family name is its last word).
    pub user_name: &'a str,
    /// The user's postcode, where known.
    pub user_postcode: Option<&'a str>,
    pub patient_family: &'a str,
    pub patient_postcode: Option<&'a str>,
    /// The patient's category on the protected person list, if they are on it.
    pub protected: Option<&'a str>,
    /// The user's distinct patients in the window, counting this one.
    pub count: ViewCount,
}

/// One rule that fired, with its evidence in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: WatchRule,
    /// The count behind it, for the many-patients rules.
    pub count: Option<usize>,
    pub evidence: String,
}

/// The family name in a person's name (its last word), normalised as the index normalises
/// family names.
pub fn family_of(name: &str) -> String {
    name.split_whitespace()
        .last()
        .map(normalise_name)
        .unwrap_or_default()
}

/// Every rule that fires for one view, in rule order.
pub fn assess(config: &WatchConfig, facts: &ViewFacts<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let window = config.window_words();
    if facts.count.refused {
        out.push(Finding {
            rule: WatchRule::TooManyPatients,
            count: Some(facts.count.distinct),
            evidence: format!(
                "Asked to view a new patient after {} different patients within {window}: refused (the limit is {}; flagged above {}).",
                facts.count.distinct - 1,
                config.refuse_patients,
                config.flag_patients
            ),
        });
    } else if facts.count.distinct > config.flag_patients {
        out.push(Finding {
            rule: WatchRule::ManyPatients,
            count: Some(facts.count.distinct),
            evidence: format!(
                "Viewed {} different patients within {window} (flagged above {}; views of more are refused above {}).",
                facts.count.distinct, config.flag_patients, config.refuse_patients
            ),
        });
    }
    if config.same_family_name {
        let own = family_of(facts.user_name);
        if !own.is_empty() && normalise_name(facts.patient_family) == own {
            let postcode = match (facts.user_postcode, facts.patient_postcode) {
                (Some(u), Some(p)) if normalise_postcode(u) == normalise_postcode(p) => {
                    " and the same postcode"
                }
                (Some(_), Some(_)) => " (their postcodes differ)",
                _ => "",
            };
            out.push(Finding {
                rule: WatchRule::SameFamilyName,
                count: None,
                evidence: format!("The patient has the same family name as the user{postcode}."),
            });
        }
    }
    if let Some(hours) = config.hours.get(&facts.org_kind) {
        let local = uk_local(facts.at);
        if !EMERGENCY_KINDS.contains(&facts.org_kind) && !hours.contains(local) {
            out.push(Finding {
                rule: WatchRule::OutOfHours,
                count: None,
                evidence: format!(
                    "Viewed at {} (UK time), outside the working hours set for the kind {} ({}).",
                    local.format("%H:%M on %A %-d %B %Y"),
                    facts.org_kind.label(),
                    hours.as_str()
                ),
            });
        }
    }
    if let Some(category) = facts.protected {
        out.push(Finding {
            rule: WatchRule::ProtectedPerson,
            count: None,
            evidence: format!("The patient is on the protected person list ({category})."),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Telling privacy officers.

/// A flag as written to the audit trail, for a [`FlagSink`]: no NHS number, no patient name.
#[derive(Debug, Clone, Serialize)]
pub struct FlagNotice {
    /// The flag's audit record.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub rule: WatchRule,
    pub user_id: String,
    pub user_name: String,
    pub org_code: String,
    pub org_name: String,
    /// The count behind it, for the many-patients rules.
    pub count: Option<usize>,
    /// The evidence in words (counts, times, thresholds; never patient data).
    pub evidence: String,
}

/// Where flags go once committed (the notifier). Must not block: it is called in the view.
pub trait FlagSink: Send + Sync + std::fmt::Debug {
    fn flagged(&self, notice: FlagNotice);
}

// ---------------------------------------------------------------------------------------------
// The watch as the gateway holds it.

/// The rules, the counters, the protected person list's cache and where flags go.
#[derive(Debug)]
pub struct Watch {
    pub(crate) config: WatchConfig,
    counters: Arc<dyn WatchCounters>,
    pub(crate) protected: crate::protected::ProtectedCache,
    sink: Option<Arc<dyn FlagSink>>,
}

/// What the watch made of one view: the findings to flag (with how many like each were not
/// flagged since the last), and whether the view is refused.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub refused: Option<ViewCount>,
    pub flags: Vec<(Finding, u64)>,
}

/// Who viewed whom, as [`Watch::check`] needs it.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    pub user_id: &'a str,
    pub patient: &'a str,
    pub facts: ViewFacts<'a>,
}

impl Watch {
    pub fn new(config: WatchConfig) -> Self {
        Self {
            config,
            counters: Arc::new(MemoryCounters::default()),
            protected: crate::protected::ProtectedCache::default(),
            sink: None,
        }
    }

    /// Keep the counters elsewhere (e.g. shared by every gateway instance).
    pub fn with_counters(mut self, counters: Arc<dyn WatchCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// The counters, to hand to a watch built again (with a sink, say).
    pub fn counters(&self) -> Arc<dyn WatchCounters> {
        self.counters.clone()
    }

    /// Tell privacy officers of each flag through `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn FlagSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Fill the protected person list's cache (the gateway reads it from the store; the
    /// benchmark sets it).
    pub fn set_protected(&self, list: impl IntoIterator<Item = (String, String)>) {
        self.protected.set(list.into_iter().collect());
    }

    /// The patient's category on the cached protected person list (`None`: not on it, or the
    /// list not read yet).
    pub fn cached_category(&self, nhs: &str) -> Option<String> {
        self.protected.lookup(nhs)
    }

    /// Count the view, run the rules, and decide which findings to flag (one per user, rule
    /// and window; per patient too for rules about one patient). Fails when the view cannot
    /// be counted; a flag whose claim cannot be read is written (a duplicate flag rather than
    /// a lost one).
    pub async fn check(&self, seen: Seen<'_>) -> CounterResult<Checked> {
        let Seen {
            user_id,
            patient,
            mut facts,
        } = seen;
        facts.count = self
            .counters
            .count_view(
                user_id,
                patient,
                facts.at,
                self.config.window,
                self.config.refuse_patients,
            )
            .await?;
        let findings = assess(&self.config, &facts);
        let mut checked = Checked {
            refused: facts.count.refused.then_some(facts.count),
            flags: Vec::new(),
        };
        for f in findings {
            let key = FlagKey {
                user_id: user_id.to_owned(),
                rule: f.rule,
                patient: f.rule.per_patient().then(|| patient.to_owned()),
            };
            match self
                .counters
                .claim_flag(&key, facts.at, self.config.window)
                .await
            {
                Ok(FlagClaim::Write { suppressed_before }) => {
                    checked.flags.push((f, suppressed_before));
                }
                Ok(FlagClaim::Suppress) => {}
                Err(e) => {
                    tracing::warn!(error = %e, rule = f.rule.code(), "the watch could not tell whether this flag was written already: written");
                    checked.flags.push((f, 0));
                }
            }
        }
        Ok(checked)
    }
}

/// A view the watch let through, with the flags to commit beside its audit record.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    pub refusal: Option<String>,
    pub retry_after_secs: u64,
    pub flags: Vec<mcr_audit::AuditEvent>,
    notices: Vec<(WatchRule, Option<usize>, String)>,
}

impl Watched {
    /// Add a flag of `rule` (with its evidence, never patient data) to commit beside the
    /// view's audit record.
    pub(crate) fn add_flag(&mut self, event: mcr_audit::AuditEvent, rule: WatchRule) {
        let evidence = event.detail.clone().unwrap_or_default();
        self.notices.push((rule, None, evidence));
        self.flags.push(event);
    }
}
