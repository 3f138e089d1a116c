//! The Bundle's OperationOutcome: what is missing from the record and why, source by source.

use mcr_domain::{SourceOutcome, SourceStatus, PRACTICE_WITHHELD};
use mcr_fhir::{Issue, IssueType};

/// What the Bundle's OperationOutcome says: who disagrees on who this is, each source's
/// answer (failed, partial, not tied, types not shown, its warnings), and what was withheld.
pub(super) fn outcome_issues(record: &mcr_domain::MergedRecord) -> Vec<Issue> {
    let mut issues = Vec::new();
    for s in &record.sources {
        match &s.status {
            SourceStatus::Failed(reason) => issues.push(
                Issue::warning(
                    if reason.code() == "timeout" {
                        IssueType::Timeout
                    } else {
                        IssueType::Incomplete
                    },
                    &format!("source-{}", reason.code()),
                    format!(
                        "{} {}: its records are missing from this view.",
                        named(s),
                        reason.describe()
                    ),
                )
                .at(s.source.as_str()),
            ),
            SourceStatus::Partial(reason) => {
                issues.push(
                    Issue::warning(
                        IssueType::Incomplete,
                        &format!("source-partial-{}", reason.code()),
                        s.partial_sentence().unwrap_or_default(),
                    )
                    .at(s.source.as_str()),
                );
                if let Some(sentence) = s.not_tied_sentence() {
                    issues.push(
                        Issue::warning(IssueType::Incomplete, "items-not-tied", sentence)
                            .at(s.source.as_str()),
                    );
                }
            }
            SourceStatus::Ok => match s.not_tied_sentence() {
                // Answered, but not everything it sent could be shown as this patient's: a
                // warning, not "answered".
                Some(sentence) => issues.push(
                    Issue::warning(IssueType::Incomplete, "items-not-tied", sentence)
                        .at(s.source.as_str()),
                ),
                None => issues.push(Issue {
                    severity: mcr_fhir::IssueSeverity::Information,
                    code: IssueType::Informational,
                    detail_code: Some("source-ok".into()),
                    text: format!("{} answered.", named(s)),
                    expression: Some(s.source.to_string()),
                }),
            },
        }
        // Forms of patient reference the source's search cannot be asked for: items naming
        // the patient only so may exist, and are not here.
        if let Some(sentence) = s.unsearchable_sentence() {
            issues.push(
                Issue::warning(IssueType::Incomplete, "references-not-searchable", sentence)
                    .at(s.source.as_str()),
            );
        }
        // Types the record has no place for: named and counted, never ignored in silence.
        if let Some(sentence) = s.not_shown_sentence() {
            issues.push(
                Issue::warning(IssueType::Incomplete, "types-not-shown", sentence)
                    .at(s.source.as_str()),
            );
        }
        for w in &s.warnings {
            issues.push(Issue {
                severity: mcr_fhir::IssueSeverity::Warning,
                code: IssueType::Incomplete,
                detail_code: Some("source-warning".into()),
                text: format!("{}: {w}", named(s)),
                expression: Some(s.source.to_string()),
            });
        }
    }
    // A wrong-patient risk: said first among the warnings a reader checks.
    issues.splice(
        0..0,
        record.demographics_differ.iter().map(|sentence| {
            Issue::warning(
                IssueType::Incomplete,
                "demographics-differ",
                sentence.clone(),
            )
        }),
    );
    if record.withheld {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("items-withheld".into()),
            text: "Some information has been withheld from this view because it is legally restricted or marked confidential by its source.".into(),
            expression: None,
        });
    }
    if record.location_withheld {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("location-withheld".into()),
            text: "Restricted record: the patient's address, telephone numbers and registered practice are withheld from every view.".into(),
            expression: Some("Patient".into()),
        });
    }
    // Said, and counted: the items a restricted patient's practice holds are shown, under
    // its words only.
    let practice_items = record
        .sections
        .iter()
        .flat_map(|(_, items)| items)
        .filter(|i| i.sources.iter().any(|s| s.org_name == PRACTICE_WITHHELD))
        .count();
    if record.location_withheld && practice_items > 0 {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("practice-withheld".into()),
            text: format!(
                "Restricted record: the patient's GP practice is not named; {practice_items} item(s) it holds are shown as held by \"{PRACTICE_WITHHELD}\", without its ODS code or name."
            ),
            expression: Some("Provenance.agent".into()),
        });
    }
    for s in &record.unavailable_sections {
        issues.push(Issue {
            severity: mcr_fhir::IssueSeverity::Information,
            code: IssueType::Suppressed,
            detail_code: Some("section-not-available-to-role".into()),
            text: format!("{} is not available to your role.", s.title()),
            expression: Some(s.as_str().into()),
        });
    }
    issues
}

/// A source as the OperationOutcome names it: its name and ODS code, or for a restricted
/// patient's GP practice only the words that withhold it.
fn named(s: &SourceOutcome) -> String {
    if s.org_name == PRACTICE_WITHHELD {
        s.org_name.clone()
    } else {
        format!("{} ({})", s.org_name, s.org_code)
    }
}
