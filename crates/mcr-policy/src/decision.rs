//! The decision: deny by default, rules in a fixed order, every step explainable.

use crate::config::{ConsentModel, PolicyConfig};
use crate::grant::{Basis, Grant};
use crate::inputs::{
    DecisionRequest, EmergencyAccess, ObjectionState, PermissionDecision, PermissionRecord,
    Relationship,
};
use crate::sharing::is_excluded_kind;
use crate::time::{after, earliest, hours, minutes};
use chrono::{DateTime, Utc};
use mcr_domain::{DataClass, Principal, Purpose};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// Machine-readable reason for a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyCode {
    PurposeNotSupported,
    OrgKindExcluded,
    OrgNotMember,
    OrgSuspended,
    RoleNoClinicalAccess,
    OptedOut,
    /// The patient is restricted (S-flagged) and the role is not one the region lets view them.
    RestrictedRecord,
    EmergencyNotAllowedForRole,
    PermissionRefused,
    /// The decision could not be made (e.g. the store could not be read): fail closed.
    DecisionUnavailable,
}

impl DenyCode {
    pub const ALL: [DenyCode; 10] = [
        DenyCode::PurposeNotSupported,
        DenyCode::OrgKindExcluded,
        DenyCode::OrgNotMember,
        DenyCode::OrgSuspended,
        DenyCode::RoleNoClinicalAccess,
        DenyCode::OptedOut,
        DenyCode::RestrictedRecord,
        DenyCode::EmergencyNotAllowedForRole,
        DenyCode::PermissionRefused,
        DenyCode::DecisionUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::PurposeNotSupported => "purpose-not-supported",
            DenyCode::OrgKindExcluded => "org-kind-excluded",
            DenyCode::OrgNotMember => "org-not-member",
            DenyCode::OrgSuspended => "org-suspended",
            DenyCode::RoleNoClinicalAccess => "role-no-clinical-access",
            DenyCode::OptedOut => "opted-out",
            DenyCode::RestrictedRecord => "restricted-record",
            DenyCode::EmergencyNotAllowedForRole => "emergency-not-allowed-for-role",
            DenyCode::PermissionRefused => "permission-refused",
            DenyCode::DecisionUnavailable => "decision-unavailable",
        }
    }

    /// What a clinician is told, with what to do instead.
    pub fn sentence(self) -> &'static str {
        match self {
            DenyCode::PurposeNotSupported => "My Care Record can only be used for the direct care of this person. For any other purpose, please ask your information governance team.",
            DenyCode::OrgKindExcluded => "Your organisation is not a kind that may view My Care Record (private companies and third parties never can). Please ask the person's GP practice for the information you need.",
            DenyCode::OrgNotMember => "Your organisation has not signed the My Care Record data sharing agreement. Please contact the person's GP practice by phone, fax, secure email or post.",
            DenyCode::OrgSuspended => "Your organisation's access to My Care Record is suspended. Please contact the person's GP practice by phone, fax, secure email or post, and your information governance team for details.",
            DenyCode::RoleNoClinicalAccess => "Your role does not give access to clinical records. Privacy officers can review who looked at a record in the audit screens instead.",
            DenyCode::OptedOut => "This person has opted out of My Care Record. Please contact their GP practice by phone, fax, secure email or post.",
            DenyCode::RestrictedRecord => "This person's record is restricted, and your role is not one this region lets view restricted records. In an emergency, a doctor, nurse or paramedic can use emergency access, which the Caldicott guardian reviews; otherwise please ask your organisation's Caldicott guardian.",
            DenyCode::EmergencyNotAllowedForRole => "Emergency access can only be used by doctors, nurses and paramedics. Please ask a clinical colleague, or ask the person's permission.",
            DenyCode::PermissionRefused => "This person said no when asked for permission to view their record. If they have changed their mind, ask them again and record their answer.",
            DenyCode::DecisionUnavailable => "Access could not be checked just now, so the record cannot be shown. Please try again in a moment, or contact the person's GP practice by phone, fax, secure email or post.",
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code for machines and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub code: DenyCode,
    pub sentence: String,
}

impl From<DenyCode> for Denial {
    fn from(code: DenyCode) -> Self {
        Self {
            code,
            sentence: code.sentence().to_owned(),
        }
    }
}

/// The answer to "may this user view this patient's record now?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Decision {
    Permit(Grant),
    /// May view once the patient's permission is recorded.
    NeedsPermission {
        sentence: String,
    },
    /// May proceed by claiming a care relationship with a reason (audited and alerted).
    NeedsRelationship {
        sentence: String,
    },
    Deny(Denial),
}

impl Decision {
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Permit(_) => "permit",
            Decision::NeedsPermission { .. } => "needs-permission",
            Decision::NeedsRelationship { .. } => "needs-relationship",
            Decision::Deny(_) => "deny",
        }
    }

    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Decision::Permit(g) => Some(g),
            _ => None,
        }
    }

    pub fn into_grant(self) -> Option<Grant> {
        match self {
            Decision::Permit(g) => Some(g),
            _ => None,
        }
    }

    /// What to tell the user.
    pub fn sentence(&self) -> String {
        match self {
            Decision::Permit(g) => g.basis().describe(),
            Decision::NeedsPermission { sentence } | Decision::NeedsRelationship { sentence } => {
                sentence.clone()
            }
            Decision::Deny(d) => d.sentence.clone(),
        }
    }
}

/// The rules, in the order they are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Purpose,
    OrganisationKind,
    Membership,
    Suspension,
    RoleClasses,
    Objection,
    /// Only for a restricted (S-flagged) patient: is the role one the region names?
    Restriction,
    Emergency,
    Relationship,
    Permission,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Purpose => "purpose",
            Rule::OrganisationKind => "organisation-kind",
            Rule::Membership => "membership",
            Rule::Suspension => "suspension",
            Rule::RoleClasses => "role-classes",
            Rule::Objection => "objection",
            Rule::Restriction => "restriction",
            Rule::Emergency => "emergency",
            Rule::Relationship => "relationship",
            Rule::Permission => "permission",
        }
    }
}

/// One rule's result, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    pub rule: Rule,
    pub passed: bool,
    pub sentence: String,
}

/// The decision and every rule evaluated on the way to it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub steps: Vec<RuleOutcome>,
}

/// Decides one request. Exactly what [`explain`] decides, without the sentences.
pub fn decide(req: &DecisionRequest<'_>, cfg: &PolicyConfig) -> Decision {
    evaluate(req, cfg, &mut NoTrace)
}

/// Decides one request and says why, rule by rule.
pub fn explain(req: &DecisionRequest<'_>, cfg: &PolicyConfig) -> Explanation {
    let mut steps = Vec::with_capacity(9);
    let decision = evaluate(req, cfg, &mut steps);
    Explanation { decision, steps }
}

/// Where the steps go: nowhere for `decide`, a list for `explain`. Sentences are built only
/// when someone keeps them.
trait Trace {
    fn step(&mut self, rule: Rule, passed: bool, sentence: impl FnOnce() -> String);
}

struct NoTrace;

impl Trace for NoTrace {
    #[inline]
    fn step(&mut self, _: Rule, _: bool, _: impl FnOnce() -> String) {}
}

impl Trace for Vec<RuleOutcome> {
    fn step(&mut self, rule: Rule, passed: bool, sentence: impl FnOnce() -> String) {
        self.push(RuleOutcome {
            rule,
            passed,
            sentence: sentence(),
        });
    }
}

/// The refusal's step, traced; the code to refuse with.
fn refuse(t: &mut impl Trace, rule: Rule, code: DenyCode) -> DenyCode {
    t.step(rule, false, || code.sentence().to_owned());
    code
}

fn deny(t: &mut impl Trace, rule: Rule, code: DenyCode) -> Decision {
    t.step(rule, false, || code.sentence().to_owned());
    Decision::Deny(Denial::from(code))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y at %H:%M UTC").to_string()
}

/// Rules 1 to 5, which depend only on who is asking and why, never on the patient: when one
/// of them refuses, the caller is refused whether or not the patient is known, so the answer
/// says nothing about who the region holds. The gateway asks this before it reads the index.
/// `None`: these rules pass and the full decision needs the patient's records.
pub fn refuse_caller(
    principal: &Principal,
    purpose: Purpose,
    cfg: &PolicyConfig,
) -> Option<Explanation> {
    let mut steps = Vec::with_capacity(5);
    match caller_rules(principal, purpose, cfg, &mut steps) {
        Ok(_) => None,
        Err(code) => Some(Explanation {
            decision: Decision::Deny(Denial::from(code)),
            steps,
        }),
    }
}

/// Rules 1 to 5: purpose, organisation kind, membership, suspension, role. The role's data
/// classes when they pass.
fn caller_rules<'c>(
    p: &Principal,
    purpose: Purpose,
    cfg: &'c PolicyConfig,
    t: &mut impl Trace,
) -> Result<&'c BTreeSet<DataClass>, DenyCode> {
    let org = &p.organisation;

    // 1. Purpose.
    match purpose {
        Purpose::DirectCare => t.step(Rule::Purpose, true, || "The purpose is direct care.".into()),
    }

    // 2. Organisation kind: private companies and third parties never, whatever is recorded.
    if is_excluded_kind(org.kind) {
        return Err(refuse(t, Rule::OrganisationKind, DenyCode::OrgKindExcluded));
    }
    t.step(Rule::OrganisationKind, true, || {
        format!(
            "{} is a kind of organisation that may view.",
            org.kind.label()
        )
    });

    // 3. Membership.
    if !org.member {
        return Err(refuse(t, Rule::Membership, DenyCode::OrgNotMember));
    }
    t.step(Rule::Membership, true, || {
        format!("{} is a member of the programme.", org.name)
    });

    // 4. Suspension.
    if org.suspended {
        return Err(refuse(t, Rule::Suspension, DenyCode::OrgSuspended));
    }
    t.step(Rule::Suspension, true, || {
        "The organisation's membership is not suspended.".into()
    });

    // 5. The role must see at least one data class.
    let classes = match cfg.roles.get(&p.role) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(refuse(t, Rule::RoleClasses, DenyCode::RoleNoClinicalAccess)),
    };
    t.step(Rule::RoleClasses, true, || {
        let names: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
        format!("The role {} may see: {}.", p.role.label(), names.join(", "))
    });
    Ok(classes)
}

/// The rules, in order. See the crate documentation for the list in words.
fn evaluate(req: &DecisionRequest<'_>, cfg: &PolicyConfig, t: &mut impl Trace) -> Decision {
    let p = req.principal;
    let org = &p.organisation;
    let now = req.now;

    // 1 to 5: who is asking, and why.
    let classes = match caller_rules(p, req.purpose, cfg, t) {
        Ok(classes) => classes,
        Err(code) => return Decision::Deny(Denial::from(code)),
    };

    // Emergency access counts only for this user, once started and until it runs out.
    let emergency: Option<(&EmergencyAccess, DateTime<Utc>)> = req.emergency.and_then(|e| {
        let ends = after(e.started_at, minutes(cfg.emergency_minutes));
        (e.user_id == p.user_id && e.started_at <= now && now < ends).then_some((e, ends))
    });
    let clinical = cfg.may_use_emergency(p.role);

    // 6. Objection (opt-out).
    let mut passed_opt_out = false;
    let mut override_basis = None;
    match req.objection {
        None => t.step(Rule::Objection, true, || "No objection is recorded.".into()),
        Some(ObjectionState::Withdrawn { .. }) => {
            t.step(Rule::Objection, true, || {
                "An objection was recorded and later withdrawn.".into()
            });
        }
        Some(ObjectionState::Overridden {
            reason,
            by_role,
            at,
            until,
        }) if cfg.may_record_override(*by_role) && *at <= now && now < *until => {
            t.step(Rule::Objection, true, || {
                format!(
                    "The objection was overridden {} by a {} on {}, until {}.",
                    reason.describe(),
                    by_role.label(),
                    fmt_time(*at),
                    fmt_time(*until)
                )
            });
            override_basis = Some((*reason, *by_role, *at, *until));
        }
        Some(ObjectionState::Overridden { until, .. }) if now >= *until => {
            let until = *until;
            t.step(Rule::Objection, false, || {
                format!(
                    "An override of this person's objection ended on {}; the objection applies again. {}",
                    fmt_time(until),
                    DenyCode::OptedOut.sentence()
                )
            });
            return Decision::Deny(Denial::from(DenyCode::OptedOut));
        }
        Some(ObjectionState::Overridden { by_role, at, .. }) => {
            let (by_role, at) = (*by_role, *at);
            t.step(Rule::Objection, false, || {
                if cfg.may_record_override(by_role) {
                    format!(
                        "An override is recorded from {}, which is not yet in force; the objection stands. {}",
                        fmt_time(at),
                        DenyCode::OptedOut.sentence()
                    )
                } else {
                    format!(
                        "An override was recorded by a {}, a role that may not override objections; the objection stands. {}",
                        by_role.label(),
                        DenyCode::OptedOut.sentence()
                    )
                }
            });
            return Decision::Deny(Denial::from(DenyCode::OptedOut));
        }
        Some(ObjectionState::Active { .. }) => {
            if emergency.is_some() && clinical && cfg.emergency_passes_opt_out {
                t.step(Rule::Objection, true, || {
                    "This person has opted out; this region lets emergency access pass an opt-out."
                        .into()
                });
                passed_opt_out = true;
            } else {
                return deny(t, Rule::Objection, DenyCode::OptedOut);
            }
        }
    }

    // 7. Restriction: a restricted patient is viewed only by the roles the region names, or
    //    by a clinical role's emergency access (flagged for review by the gateway).
    if req.restricted {
        if cfg.may_view_restricted(p.role) {
            t.step(Rule::Restriction, true, || {
                format!(
                    "This person's record is restricted; {} may view it in this region (their address and registered practice are never shown).",
                    p.role.label()
                )
            });
        } else if emergency.is_some() && clinical {
            t.step(Rule::Restriction, true, || {
                format!(
                    "This person's record is restricted and {} is not a role this region lets view it; emergency access passes the restriction, and the privacy officer reviews it.",
                    p.role.label()
                )
            });
        } else {
            let sentence = restricted_sentence(cfg);
            t.step(Rule::Restriction, false, || sentence.clone());
            return Decision::Deny(Denial {
                code: DenyCode::RestrictedRecord,
                sentence,
            });
        }
    }

    // 8. Emergency access: clinical roles only; no relationship or permission needed.
    match (emergency, req.emergency) {
        (Some((e, ends)), _) => {
            if !clinical {
                return deny(t, Rule::Emergency, DenyCode::EmergencyNotAllowedForRole);
            }
            t.step(Rule::Emergency, true, || {
                format!("Emergency access is in use ({}) until {}.", e.reason.describe(), fmt_time(ends))
            });
            t.step(Rule::Relationship, true, || "Not needed: emergency access.".into());
            t.step(Rule::Permission, true, || "Not needed: emergency access.".into());
            let basis = Basis::Emergency { reason: e.reason, started_at: e.started_at, passed_opt_out };
            return permit(req, classes, basis, Some(ends));
        }
        (None, Some(_)) => t.step(Rule::Emergency, true, || {
            "Emergency access was recorded but is not in force for this user now (ended, not yet started, or another user's); it is ignored.".into()
        }),
        (None, None) => {}
    }

    // 9. A care relationship at the user's organisation (a self-claim counts for its claimant).
    let Some(rel) = best_relationship(req.relationships, req, cfg) else {
        t.step(Rule::Relationship, false, || {
            needs_relationship_sentence(&org.name)
        });
        return Decision::NeedsRelationship {
            sentence: needs_relationship_sentence(&org.name),
        };
    };
    let windows = cfg.windows_for(org.kind);
    let rel_ends = rel.valid_until(windows.recent_days);
    t.step(Rule::Relationship, true, || match rel_ends {
        Some(end) => format!(
            "Care relationship: {} ({}), until {}.",
            rel.kind.describe(),
            rel.event_words(windows.recent_days),
            fmt_time(end)
        ),
        None => format!(
            "Care relationship: {} ({}).",
            rel.kind.describe(),
            rel.event_words(windows.recent_days)
        ),
    });

    // 10. An overridden objection is itself the basis: the patient is not asked.
    if let Some((reason, by_role, at, until)) = override_basis {
        t.step(Rule::Permission, true, || {
            "Not asked: the objection override is the basis for viewing.".into()
        });
        let basis = Basis::ObjectionOverridden {
            reason,
            by_role,
            at,
            relationship: rel.kind,
        };
        return permit(req, classes, basis, earliest(Some(until), rel_ends));
    }

    // 11. Permission to view, per the consent model.
    let model = cfg.consent_model;
    let (latest, window) = match model {
        ConsentModel::LegalBasis => {
            t.step(Rule::Permission, true, || {
                "Not asked: this region relies on legal basis for direct care.".into()
            });
            return permit(
                req,
                classes,
                Basis::LegalBasis {
                    relationship: rel.kind,
                },
                rel_ends,
            );
        }
        ConsentModel::AskOnceRecord => {
            let w = hours(cfg.permission_episode_hours);
            // Any answer recorded at this organisation; a refusal stands until a newer "yes".
            (
                latest_permission(
                    req.permissions
                        .iter()
                        .filter(|r| r.org_code == org.code && r.at <= now),
                ),
                w,
            )
        }
        ConsentModel::AskEveryView => {
            let w = minutes(cfg.ask_every_view_minutes);
            // Only this user's own answer, asked moments ago.
            (
                latest_permission(req.permissions.iter().filter(|r| {
                    r.org_code == org.code
                        && r.user_id == p.user_id
                        && r.at <= now
                        && now < after(r.at, w)
                })),
                w,
            )
        }
    };
    match latest {
        // A refusal blocks views for the episode, then lapses: the patient is asked again.
        Some(r) if r.decision == PermissionDecision::Refused && now < after(r.at, window) => {
            let sentence = format!(
                "{} said no when asked for permission to view their record on {}, so it will not be shown during this episode of care (until {}). If they change their mind, ask them again and record their answer.",
                sentence_start(r.given_by.describe()),
                fmt_time(r.at),
                fmt_time(after(r.at, window))
            );
            t.step(Rule::Permission, false, || sentence.clone());
            Decision::Deny(Denial {
                code: DenyCode::PermissionRefused,
                sentence,
            })
        }
        Some(r) if r.decision == PermissionDecision::Refused => {
            let s = format!(
                "This person said no on {}, and that answer has lapsed with the episode of care. Please ask their permission again and record their answer.",
                fmt_time(r.at)
            );
            t.step(Rule::Permission, false, || s.clone());
            Decision::NeedsPermission { sentence: s }
        }
        Some(r) if now < after(r.at, window) => {
            let ends = after(r.at, window);
            t.step(Rule::Permission, true, || {
                format!(
                    "Permission was given by {} on {}, valid until {}.",
                    r.given_by.describe(),
                    fmt_time(r.at),
                    fmt_time(ends)
                )
            });
            let basis = Basis::RelationshipAndPermission {
                relationship: rel.kind,
                model,
                given_by: r.given_by,
                given_at: r.at,
            };
            permit(req, classes, basis, earliest(Some(ends), rel_ends))
        }
        Some(r) => {
            let s = format!(
                "Permission was given on {} but has expired. Please ask this person's permission again and record their answer.",
                fmt_time(r.at)
            );
            t.step(Rule::Permission, false, || s.clone());
            Decision::NeedsPermission { sentence: s }
        }
        None => {
            let s = match model {
                ConsentModel::AskEveryView => "Please ask this person's permission to view their record now, and record their answer.",
                _ => "Please ask this person's permission to view their record, and record their answer.",
            };
            t.step(Rule::Permission, false, || s.to_owned());
            Decision::NeedsPermission {
                sentence: s.to_owned(),
            }
        }
    }
}

/// Who may view a restricted record, in this region's words.
fn restricted_sentence(cfg: &PolicyConfig) -> String {
    let who = cfg.restricted_roles_words();
    let emergency = if cfg.clinical_roles.is_empty() {
        String::new()
    } else {
        format!(
            " In an emergency, a {} can use emergency access, which the Caldicott guardian reviews.",
            crate::config::role_words(&cfg.clinical_roles)
        )
    };
    let only = if cfg.restricted_roles.is_empty() {
        "In this region no role may view it without emergency access.".to_owned()
    } else {
        format!("In this region only a {who} may view it.")
    };
    format!(
        "This person's record is restricted. {only}{emergency} Otherwise please ask your organisation's Caldicott guardian."
    )
}

/// "the patient" -> "The patient".
fn sentence_start(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn needs_relationship_sentence(org_name: &str) -> String {
    format!(
        "No care relationship is recorded between this person and {org_name}. If you are caring for them, record why and continue; this will be reviewed by a privacy officer."
    )
}

/// The strongest relationship that counts now for this user at their organisation.
fn best_relationship<'a>(
    rels: &'a [Relationship],
    req: &DecisionRequest<'_>,
    cfg: &PolicyConfig,
) -> Option<&'a Relationship> {
    let p = req.principal;
    let windows = cfg.windows_for(p.organisation.kind);
    rels.iter()
        .filter(|r| r.counts_for(&p.organisation.code, &p.user_id, req.now, windows))
        .min_by_key(|r| {
            (
                r.kind,
                std::cmp::Reverse(
                    r.valid_until(windows.recent_days)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                ),
            )
        })
}

/// The latest answer; on a tie, a refusal wins.
fn latest_permission<'a>(
    records: impl Iterator<Item = &'a PermissionRecord>,
) -> Option<&'a PermissionRecord> {
    records.max_by_key(|r| (r.at, r.decision == PermissionDecision::Refused))
}

fn permit(
    req: &DecisionRequest<'_>,
    classes: &std::collections::BTreeSet<mcr_domain::DataClass>,
    basis: Basis,
    expires_at: Option<DateTime<Utc>>,
) -> Decision {
    let p = req.principal;
    Decision::Permit(Grant::new(
        req.patient.clone(),
        p.user_id.clone(),
        p.role,
        p.organisation.code.clone(),
        p.organisation.kind,
        req.purpose,
        classes.clone(),
        basis,
        req.now,
        expires_at,
    ))
}
