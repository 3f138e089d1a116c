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

use crate::watch_counter::{
    CounterResult, FlagClaim, FlagKey, MemoryCounters, ViewCount, WatchCounters,
};
use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
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

mod hours;
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

impl Gateway {
    /// A restricted-record flag on `nhs` for this request: an `anomaly-flag` (outcome
    /// `alert`, basis `restricted-record`) that the review queue lists.
    pub(crate) fn restricted_flag(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        evidence: String,
    ) -> mcr_audit::AuditEvent {
        self.metrics.watch_flag(WatchRule::RestrictedRecord.code());
        let mut event = self.event(ctx, Action::AnomalyFlag, Some(nhs.as_str()));
        event.outcome = Outcome::Alert;
        event.basis = Some(WatchRule::RestrictedRecord.code().to_owned());
        event.detail = Some(evidence);
        event
    }

    /// The watch's part of a permitted view: the view counted in the store (the protected
    /// person list is cached; only the very first view of a gateway reads it). `Err`: it could
    /// not be counted.
    pub(crate) async fn watch_view(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        patient: &mcr_store::IndexedPatient,
    ) -> CounterResult<Watched> {
        let p = &ctx.principal;
        let protected = self.protected_category(nhs).await;
        let at = self.clock.now();
        let checked = self
            .watch
            .check(Seen {
                user_id: &p.user_id,
                patient: nhs.as_str(),
                facts: ViewFacts {
                    at,
                    org_kind: p.organisation.kind,
                    user_name: &p.name,
                    user_postcode: None,
                    patient_family: &patient.family,
                    patient_postcode: patient.postcode.as_deref(),
                    protected: protected.as_deref(),
                    count: ViewCount::default(),
                },
            })
            .await?;
        let mut watched = Watched::default();
        if let Some(count) = checked.refused {
            let cfg = &self.watch.config;
            watched.refusal = Some(format!(
                "You have viewed {} different patients' records within {}, the most My Care Record allows, so this record cannot be shown now. This is recorded for the privacy officer. If you need it for a patient in your care, contact {}.",
                count.distinct - 1,
                cfg.window_words(),
                cfg.contact
            ));
            watched.retry_after_secs = count
                .oldest
                .map(|o| (o + cfg.window - at).num_seconds().max(1))
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(60);
        }
        for (f, suppressed) in checked.flags {
            self.metrics.watch_flag(f.rule.code());
            let mut event = self.event(ctx, Action::AnomalyFlag, Some(nhs.as_str()));
            event.outcome = Outcome::Alert;
            event.basis = Some(f.rule.code().to_owned());
            let mut evidence = f.evidence;
            if suppressed > 0 {
                evidence.push_str(&format!(
                    " {suppressed} more like this since the last flag for this user and rule."
                ));
            }
            event.detail = Some(evidence.clone());
            watched.notices.push((f.rule, f.count, evidence));
            watched.flags.push(event);
        }
        Ok(watched)
    }

    /// Tell the notifier (if there is one) of a committed flag or emergency access.
    pub(crate) fn tell_privacy_officers(&self, notice: FlagNotice) {
        if let Some(sink) = &self.watch.sink {
            sink.flagged(notice);
        }
    }

    /// Commit the watch's flags (beside the view's own audit record) and tell the sink. A flag
    /// that cannot be written is logged and counted, never silent; it does not stop the view.
    pub(crate) async fn write_flags(&self, watched: &Watched) {
        for (event, (rule, count, evidence)) in watched.flags.iter().zip(&watched.notices) {
            match self.audit(event).await {
                Ok(row) => {
                    if let Some(sink) = &self.watch.sink {
                        sink.flagged(FlagNotice {
                            seq: row.seq,
                            at: event.at,
                            rule: *rule,
                            user_id: event.user_id.clone(),
                            user_name: event.user_name.clone(),
                            org_code: event.org_code.clone(),
                            org_name: event.org_name.clone(),
                            count: *count,
                            evidence: evidence.clone(),
                        });
                    }
                }
                Err(_) => {
                    self.metrics.watch_flag_lost(rule.code());
                    tracing::error!(correlation = %event.correlation_id, rule = rule.code(), "anomaly flag not written to the audit trail");
                }
            }
        }
    }

    /// A view over the hard limit: audited as a refusal, its flag committed beside it, and
    /// refused with the sentence.
    pub(crate) async fn refuse_watched(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
        watched: Watched,
    ) -> GatewayError {
        let sentence = watched.refusal.clone().unwrap_or_default();
        let mut event = self.event(ctx, Action::ViewRecord, Some(nhs.as_str()));
        event.outcome = Outcome::Deny;
        event.basis = Some(WatchRule::TooManyPatients.code().into());
        event.detail = Some(sentence.clone());
        let (refusal, ()) = tokio::join!(self.audit(&event), self.write_flags(&watched));
        match refusal {
            Ok(_) => GatewayError::TooManyPatients {
                sentence,
                retry_after_secs: watched.retry_after_secs,
            },
            Err(e) => e,
        }
    }

    /// The gateway's metrics, to share with what runs beside it (the notifier).
    pub fn shared_metrics(&self) -> Arc<crate::Metrics> {
        self.metrics.clone()
    }

    /// The watch (its rules and counters).
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Watch views with these rules and limits.
    pub fn with_watch(mut self, watch: Watch) -> Self {
        self.watch = Arc::new(watch);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    fn facts<'a>(t: DateTime<Utc>, kind: OrgKind) -> ViewFacts<'a> {
        ViewFacts {
            at: t,
            org_kind: kind,
            user_name: "Dr Asha Patel",
            user_postcode: None,
            patient_family: "Jones",
            patient_postcode: Some("AL1 3ER"),
            protected: None,
            count: ViewCount {
                distinct: 1,
                refused: false,
                oldest: None,
            },
        }
    }

    fn rules(found: &[Finding]) -> Vec<&'static str> {
        found.iter().map(|f| f.rule.code()).collect()
    }

    #[test]
    fn the_rules_as_a_table_of_cases() {
        let cfg = WatchConfig::default();
        // Tuesday 3 March 2026, 10:00 UTC = 10:00 GMT: inside GP hours.
        let day = at(2026, 3, 3, 10, 0);
        // Tuesday 3 March 2026, 21:30 GMT: outside GP hours.
        let night = at(2026, 3, 3, 21, 30);
        type Case<'a> = (&'a str, ViewFacts<'a>, &'a [&'a str]);
        let count = |distinct, refused| ViewCount {
            distinct,
            refused,
            oldest: None,
        };
        let cases: Vec<Case<'_>> = vec![
            ("an ordinary view", facts(day, OrgKind::GpPractice), &[]),
            (
                "30 patients is at the flag limit, not above it",
                ViewFacts {
                    count: count(30, false),
                    ..facts(day, OrgKind::GpPractice)
                },
                &[],
            ),
            (
                "31 patients is above it",
                ViewFacts {
                    count: count(31, false),
                    ..facts(day, OrgKind::GpPractice)
                },
                &["many-patients"],
            ),
            (
                "a refusal is flagged as such, not also as many",
                ViewFacts {
                    count: count(61, true),
                    ..facts(day, OrgKind::GpPractice)
                },
                &["too-many-patients"],
            ),
            (
                "the user's own family name, normalised",
                ViewFacts {
                    patient_family: "PATEL",
                    ..facts(day, OrgKind::GpPractice)
                },
                &["same-family-name"],
            ),
            (
                "a family name that only contains the user's is not the same",
                ViewFacts {
                    patient_family: "Patel-Smith",
                    ..facts(day, OrgKind::GpPractice)
                },
                &[],
            ),
            (
                "a GP practice at night",
                facts(night, OrgKind::GpPractice),
                &["out-of-hours"],
            ),
            (
                "an acute trust at night is an emergency setting",
                facts(night, OrgKind::AcuteTrust),
                &[],
            ),
            (
                "a kind with no hours set is not checked",
                facts(night, OrgKind::CommunityTrust),
                &[],
            ),
            (
                "a GP practice on Saturday morning",
                facts(at(2026, 3, 7, 10, 0), OrgKind::GpPractice),
                &["out-of-hours"],
            ),
            (
                "a protected person",
                ViewFacts {
                    protected: Some("staff"),
                    ..facts(day, OrgKind::GpPractice)
                },
                &["protected-person"],
            ),
            (
                "everything at once, in rule order",
                ViewFacts {
                    protected: Some("public-figure"),
                    patient_family: "patel",
                    count: count(45, false),
                    ..facts(night, OrgKind::GpPractice)
                },
                &[
                    "many-patients",
                    "same-family-name",
                    "out-of-hours",
                    "protected-person",
                ],
            ),
        ];
        for (what, f, want) in cases {
            assert_eq!(rules(&assess(&cfg, &f)), want, "{what}");
        }
        let off = WatchConfig {
            same_family_name: false,
            ..WatchConfig::default()
        };
        let f = ViewFacts {
            patient_family: "Patel",
            ..facts(day, OrgKind::GpPractice)
        };
        assert!(assess(&off, &f).is_empty(), "the rule can be switched off");
    }

    #[test]
    fn evidence_says_counts_thresholds_and_postcodes_without_names() {
        let cfg = WatchConfig::default();
        let day = at(2026, 3, 3, 10, 0);
        let many = assess(
            &cfg,
            &ViewFacts {
                count: ViewCount {
                    distinct: 31,
                    refused: false,
                    oldest: None,
                },
                ..facts(day, OrgKind::GpPractice)
            },
        );
        assert_eq!(
            many[0].evidence,
            "Viewed 31 different patients within an hour (flagged above 30; views of more are refused above 60)."
        );
        let same = assess(
            &cfg,
            &ViewFacts {
                patient_family: "Patel",
                user_postcode: Some("al13er"),
                ..facts(day, OrgKind::GpPractice)
            },
        );
        assert_eq!(
            same[0].evidence,
            "The patient has the same family name as the user and the same postcode."
        );
        assert!(!same[0].evidence.to_uppercase().contains("PATEL"));
        let night = assess(&cfg, &facts(at(2026, 7, 1, 22, 15), OrgKind::GpPractice));
        assert_eq!(
            night[0].evidence,
            "Viewed at 23:15 on Wednesday 1 July 2026 (UK time), outside the working hours set for the kind GP practice (Mon-Fri 07:00-19:00)."
        );
    }

    #[test]
    fn uk_time_follows_the_summer_time_rule() {
        let cases = [
            // (UTC, UK local)
            (at(2026, 1, 15, 12, 0), "2026-01-15 12:00"),
            // BST starts 01:00 UTC on Sunday 29 March 2026.
            (at(2026, 3, 29, 0, 59), "2026-03-29 00:59"),
            (at(2026, 3, 29, 1, 0), "2026-03-29 02:00"),
            (at(2026, 7, 1, 6, 30), "2026-07-01 07:30"),
            // BST ends 01:00 UTC on Sunday 25 October 2026.
            (at(2026, 10, 25, 0, 59), "2026-10-25 01:59"),
            (at(2026, 10, 25, 1, 0), "2026-10-25 01:00"),
            // 2027: 28 March and 31 October.
            (at(2027, 3, 28, 1, 0), "2027-03-28 02:00"),
            (at(2027, 10, 31, 0, 30), "2027-10-31 01:30"),
            (at(2027, 10, 31, 1, 30), "2027-10-31 01:30"),
            (at(2026, 12, 31, 23, 30), "2026-12-31 23:30"),
        ];
        for (utc, local) in cases {
            assert_eq!(
                uk_local(utc).format("%Y-%m-%d %H:%M").to_string(),
                local,
                "{utc}"
            );
        }
        // 06:30 UTC in July is 07:30 BST: inside GP hours; in January it is 06:30: outside.
        let gp = WorkingHours::parse("Mon-Fri 07:00-19:00").expect("hours");
        assert!(gp.contains(uk_local(at(2026, 7, 1, 6, 30))));
        assert!(!gp.contains(uk_local(at(2026, 1, 14, 6, 30))));
    }

    #[test]
    fn working_hours_parse_and_say_what_is_wrong() {
        let h = WorkingHours::parse("Mon,Wed-Fri 08:30-24:00").expect("valid");
        let d = |day: u32, hh: u32, mm: u32| {
            NaiveDate::from_ymd_opt(2026, 3, day)
                .and_then(|d| d.and_hms_opt(hh, mm, 0))
                .expect("date")
        };
        assert!(h.contains(d(2, 8, 30)), "Monday 08:30");
        assert!(!h.contains(d(2, 8, 29)), "Monday 08:29");
        assert!(h.contains(d(4, 23, 59)), "Wednesday 23:59");
        assert!(!h.contains(d(3, 12, 0)), "Tuesday");
        for (bad, says) in [
            ("Mon-Fri", "separated by a space"),
            ("Mon-Fry 07:00-19:00", "days are"),
            ("Fri-Mon 07:00-19:00", "towards Sunday"),
            ("Mon-Fri 7-19", "HH:MM"),
            ("Mon-Fri 19:00-07:00", "open before"),
            ("Mon-Fri 07:00-24:01", "HH:MM"),
        ] {
            let e = WorkingHours::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(WatchConfig::default().validate().is_ok());
        let mut c = WatchConfig::default();
        c.hours.insert(
            OrgKind::AcuteTrust,
            WorkingHours::parse("Mon-Fri 07:00-19:00").expect("hours"),
        );
        assert!(c.validate().expect_err("exempt").contains("emergency"));
        let c = WatchConfig {
            refuse_patients: 10,
            flag_patients: 20,
            ..WatchConfig::default()
        };
        assert!(c.validate().is_err());
        assert_eq!(family_of("Dr Asha Patel"), "PATEL");
        assert_eq!(family_of("Siobhan O'Murphy"), "OMURPHY");
        assert_eq!(family_of(""), "");
    }

    #[tokio::test]
    async fn one_flag_per_user_rule_and_window_with_the_rest_counted() {
        let cfg = WatchConfig {
            flag_patients: 2,
            refuse_patients: 4,
            ..WatchConfig::default()
        };
        let w = Watch::new(cfg);
        let t0 = at(2026, 3, 3, 10, 0);
        let mut flagged = Vec::new();
        let mut refused = Vec::new();
        for i in 0..7 {
            let patient = format!("p{i}");
            let c = w
                .check(Seen {
                    user_id: "u1",
                    patient: &patient,
                    facts: facts(t0 + Duration::minutes(i), OrgKind::GpPractice),
                })
                .await
                .expect("memory");
            refused.push(c.refused.is_some());
            flagged.extend(c.flags.iter().map(|(f, n)| (i, f.rule.code(), *n)));
        }
        // p0..p3 allowed (4 is the hard limit), p4..p6 refused.
        assert_eq!(
            refused,
            [false, false, false, false, true, true, true],
            "refused above the hard limit"
        );
        // The third patient is the first above 2: one many-patients flag; the first refusal
        // is flagged, the next two are not.
        assert_eq!(
            flagged,
            [(2, "many-patients", 0), (4, "too-many-patients", 0)]
        );
        // A patient already counted can still be viewed.
        let again = w
            .check(Seen {
                user_id: "u1",
                patient: "p1",
                facts: facts(t0 + Duration::minutes(8), OrgKind::GpPractice),
            })
            .await
            .expect("memory");
        assert!(again.refused.is_none());
        // An hour after the first flag, the next flag says how many were held back.
        let later = w
            .check(Seen {
                user_id: "u1",
                patient: "p9",
                facts: facts(t0 + Duration::minutes(64), OrgKind::GpPractice),
            })
            .await
            .expect("memory");
        assert!(later.refused.is_none(), "the window has moved on");
        let late = w
            .check(Seen {
                user_id: "u1",
                patient: "p10",
                facts: facts(t0 + Duration::minutes(65), OrgKind::GpPractice),
            })
            .await
            .expect("memory");
        let late = w
            .check(Seen {
                user_id: "u1",
                patient: "p11",
                facts: facts(t0 + Duration::minutes(66), OrgKind::GpPractice),
            })
            .await
            .expect("memory")
            .flags
            .into_iter()
            .chain(late.flags)
            .map(|(f, n)| (f.rule.code(), n))
            .collect::<Vec<_>>();
        assert!(late.contains(&("many-patients", 2)), "{late:?}");
        // Another user is counted apart.
        let other = w
            .check(Seen {
                user_id: "u2",
                patient: "p0",
                facts: facts(t0, OrgKind::GpPractice),
            })
            .await
            .expect("memory");
        assert!(other.flags.is_empty() && other.refused.is_none());
    }
}
