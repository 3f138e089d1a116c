//! Where the patient lives and who answered: the postcode from the merged `Patient`, and
//! one row per source saying how it answered (in full, in part, not at all, and why), so
//! missing data never looks like no data.

use super::super::text::clip;
use mcr_domain::{MergedRecord, SourceStatus};
use serde_json::Value;

pub(crate) struct SourceRow {
    pub name: String,
    pub status: String,
    /// `green`, `red` or `orange`: the tag colour.
    pub tag: &'static str,
    pub tag_text: &'static str,
}

/// What the close says of where the patient lives (the opening names them from the index).
pub(crate) struct PatientBanner {
    pub postcode: String,
}

/// The postcode from the merged `Patient`, read defensively.
pub(super) fn patient_banner(p: &Value) -> PatientBanner {
    PatientBanner {
        postcode: p
            .get("address")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("postalCode"))
            .and_then(Value::as_str)
            .map_or_else(|| "Not recorded".into(), |s| clip(s, 12)),
    }
}

pub(super) fn source_rows(record: &MergedRecord) -> Vec<SourceRow> {
    record
        .sources
        .iter()
        .map(|s| match &s.status {
            SourceStatus::Ok if s.not_tied() > 0 => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {} shown. {}",
                    s.items,
                    if s.items == 1 { "item" } else { "items" },
                    s.not_tied_sentence().unwrap_or_default()
                ),
                tag: if s.items == 0 { "red" } else { "orange" },
                tag_text: if s.items == 0 {
                    "Nothing could be shown"
                } else {
                    "Some items not shown"
                },
            },
            // Not a fault to retry: the patient's own choice, said as such.
            SourceStatus::Failed(mcr_domain::FailureReason::PatientDissent) => SourceRow {
                name: s.org_name.clone(),
                status: "The patient has declined to share their GP record. Nothing from it is shown; ask the patient.".into(),
                tag: "grey",
                tag_text: "Declined to share",
            },
            SourceStatus::Failed(r) => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Unavailable: {}. Anything it holds is missing from this view.",
                    r.describe()
                ),
                tag: "red",
                tag_text: "Unavailable",
            },
            // What arrived is shown; the rest is said to be missing, never silently absent.
            SourceStatus::Partial(_) => SourceRow {
                name: s.org_name.clone(),
                status: format!("{}.", s.partial_sentence().unwrap_or_default()),
                tag: "orange",
                tag_text: "Partly shown",
            },
            SourceStatus::Ok if !s.warnings.is_empty() => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {}. {}",
                    s.items,
                    if s.items == 1 { "item" } else { "items" },
                    s.warnings.join(" ")
                ),
                tag: "orange",
                tag_text: "May be incomplete",
            },
            SourceStatus::Ok if s.withheld > 0 => SourceRow {
                name: s.org_name.clone(),
                status: "Answered just now. Some items were withheld from this view.".into(),
                tag: "orange",
                tag_text: "Some items withheld",
            },
            SourceStatus::Ok => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {}.",
                    s.items,
                    if s.items == 1 { "item" } else { "items" }
                ),
                tag: "green",
                tag_text: "Up to date",
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::record_with;
    use super::super::record_page;
    use super::super::sections::{section, Filter};
    use super::*;
    use askama::Template;
    use mcr_domain::{NhsNumber, OdsCode, Section, SourceId};
    use serde_json::json;

    #[test]
    fn banner_names_every_source_and_why_one_failed() {
        let outcome = |id: &str, status: SourceStatus, withheld: usize| mcr_domain::SourceOutcome {
            untied: 0,
            another_patient: 0,
            source: SourceId::parse(id).unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
            org_name: format!("Org {id}"),
            status,
            items: 3,
            withheld,
            elapsed_ms: 10,
            warnings: Vec::new(),
            not_shown: Vec::new(),
            unsearchable: Vec::new(),
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: vec![
                outcome("gp", SourceStatus::Ok, 0),
                outcome(
                    "acute",
                    SourceStatus::Failed(mcr_domain::FailureReason::Timeout { after_ms: 3000 }),
                    0,
                ),
                outcome("community", SourceStatus::Ok, 2),
                mcr_domain::SourceOutcome {
                    items: 0,
                    untied: 40,
                    another_patient: 2,
                    ..outcome("socialcare", SourceStatus::Ok, 0)
                },
            ],
            unavailable_sections: vec![Section::Documents],
            withheld: true,
            demographics_differ: Vec::new(),
            location_withheld: false,
        };
        let rows = source_rows(&record);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].tag_text, "Nothing could be shown");
        assert_eq!(
            rows[3].status,
            "Answered just now with 0 items shown. 42 items from Org socialcare could not be tied to this patient and are not shown (2 named another patient): nothing it sent could be shown."
        );
        assert_eq!(
            (rows[0].tag_text, rows[0].status.as_str()),
            ("Up to date", "Answered just now with 3 items.")
        );
        assert_eq!(rows[1].tag_text, "Unavailable");
        assert!(
            rows[1].status.contains("did not answer within 3.0 seconds"),
            "{}",
            rows[1].status
        );
        assert_eq!(rows[2].tag_text, "Some items withheld");
        let docs = section(
            &record,
            &Filter::default(),
            Section::Documents,
            "documents",
            "Documents",
            |_| true,
        );
        assert!(!docs.available);
    }

    #[test]
    fn a_source_cut_short_is_shown_as_partly_shown_and_named_as_missing() {
        let partial = mcr_domain::SourceOutcome {
            source: SourceId::parse("acute").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("RWH").unwrap_or_else(|_| unreachable!()),
            org_name: "East and North Hertfordshire NHS Trust".into(),
            status: SourceStatus::Partial(mcr_domain::FailureReason::Timeout { after_ms: 3000 }),
            items: 412,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 3000,
            warnings: Vec::new(),
            not_shown: Vec::new(),
            unsearchable: Vec::new(),
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            sections: Vec::new(),
            sources: vec![partial],
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: vec![
                "The sources disagree on this patient's date of birth.".into()
            ],
            location_withheld: false,
            patient_url: None,
        };
        let rows = source_rows(&record);
        assert_eq!(rows[0].tag_text, "Partly shown");
        assert_eq!(
            rows[0].status,
            "Only part of the record at East and North Hertfordshire NHS Trust is shown: 412 items arrived before the 3.0-second deadline; the rest of its record is missing here."
        );
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: vec!["A possible wrong NHS number is in review.".into()],
        };
        let page = record_page(&view, &Filter::default());
        assert_eq!(
            page.failed,
            ["East and North Hertfordshire NHS Trust"],
            "the banner names it among those to contact for what is missing"
        );
        assert_eq!(
            page.identity_warnings,
            [
                "The sources disagree on this patient's date of birth.",
                "A possible wrong NHS number is in review."
            ],
            "the sources' disagreement on who this is, first, under 'Check this is the right person'"
        );
    }

    #[test]
    fn banner_says_a_dissent_in_words_and_shows_a_practices_warnings() {
        let base = mcr_domain::SourceOutcome {
            source: SourceId::parse("gp").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
            org_name: "Riverside Surgery".into(),
            status: SourceStatus::Failed(mcr_domain::FailureReason::PatientDissent),
            items: 0,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 10,
            warnings: Vec::new(),
            not_shown: Vec::new(),
            unsearchable: Vec::new(),
        };
        let warned = mcr_domain::SourceOutcome {
            status: SourceStatus::Ok,
            items: 2,
            warnings: vec!["Some GP record items were excluded by the practice.".into()],
            ..base.clone()
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: vec![base, warned],
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: Vec::new(),
            location_withheld: false,
        };
        let rows = source_rows(&record);
        assert_eq!(rows[0].tag_text, "Declined to share");
        assert!(
            rows[0]
                .status
                .starts_with("The patient has declined to share their GP record."),
            "{}",
            rows[0].status
        );
        assert_eq!(rows[1].tag_text, "May be incomplete");
        assert_eq!(
            rows[1].status,
            "Answered just now with 2 items. Some GP record items were excluded by the practice."
        );
    }

    #[test]
    fn patient_banner_reads_defensively() {
        let b = patient_banner(
            &json!({"name": [{"family": "Smith", "given": ["Ann", 7]}], "birthDate": "1950-01-02", "gender": "female"}),
        );
        assert_eq!(b.postcode, "Not recorded");
        let b = patient_banner(
            &json!({"address": [{"postalCode": "SG1 2AB and then a great deal more"}]}),
        );
        assert_eq!(b.postcode, "SG1 2AB and …", "clipped");
        let b = patient_banner(&json!("nonsense"));
        assert_eq!(b.postcode, "Not recorded");
    }

    #[test]
    fn types_the_record_does_not_show_and_forms_a_search_cannot_find_are_named_in_the_banner() {
        let mut record = record_with(Vec::new());
        record.sources.push(mcr_domain::SourceOutcome {
            source: SourceId::parse("community").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("RY4").unwrap_or_else(|_| unreachable!()),
            org_name: "Hertfordshire Community NHS Trust".into(),
            status: SourceStatus::Ok,
            items: 3,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 10,
            warnings: Vec::new(),
            not_shown: vec![
                mcr_domain::NotShown {
                    resource_type: "Goal".into(),
                    count: 12,
                },
                mcr_domain::NotShown {
                    resource_type: "NutritionOrder".into(),
                    count: 1,
                },
            ],
            unsearchable: vec![
                mcr_domain::UnsearchableForm::Identifier,
                mcr_domain::UnsearchableForm::OtherServer,
                mcr_domain::UnsearchableForm::Contained,
            ],
        });
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let page = record_page(&view, &Filter::default());
        assert_eq!(
            page.not_shown,
            ["Not shown: 12 Goal resources, 1 NutritionOrder resource from Hertfordshire Community NHS Trust (this record has no section for them; ask Hertfordshire Community NHS Trust if you need them)."]
        );
        assert_eq!(
            page.unsearchable,
            ["Hertfordshire Community NHS Trust's search cannot find items that name the patient only by NHS number, by an address outside this region's sources or inside the item; any such items are not shown."],
            "one line for the source"
        );
        let html = page.render().unwrap_or_default();
        assert!(html.contains("12 Goal resources"), "{html}");
        assert!(
            // The apostrophe is escaped in HTML.
            html.contains("only by NHS number, by an address outside this region")
                && html.contains("s sources or inside the item"),
            "{html}"
        );
        assert!(html.contains("not every source can be asked for every item"));
    }
}
