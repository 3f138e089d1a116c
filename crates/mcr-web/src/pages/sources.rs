//! `/app/sources`: the region's source systems and what each says it can do (its
//! CapabilityStatement as last read, [`mcr_federation::capabilities`]), and how views ask it
//! (its `patient_search` and `identifier_search` as they apply, [`mcr_gateway::Asking`]):
//! which forms of patient reference its search cannot find, in the words of the view's
//! warning, and where configuration overrides what the statement declares. For any signed-in
//! member of staff; it names systems and resource types, never a patient.

use super::session::PageUser;
use super::text::human_time;
use super::{render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mcr_gateway::{Asking, IdentifierSearch, PatientSearch, SourceKind};

pub(crate) struct SourceRow {
    pub id: String,
    pub organisation: String,
    pub base_url: String,
    /// `FHIR R4` or `GP Connect`.
    pub protocol: &'static str,
    /// The types configured, overriding the statement; empty: the statement decides.
    pub configured: Vec<String>,
    /// When the statement was last read, if ever.
    pub read_at: Option<String>,
    pub software: String,
    pub fhir_version: String,
    pub batch: bool,
    /// Entries of the statement passed over (no resource type name).
    pub unreadable_entries: usize,
    /// Listed and asked for: searchable by patient, or (a `Patient`) read by its id.
    pub searchable: Vec<String>,
    /// Listed but not searchable by patient (never asked for unless configured).
    pub not_searchable: Vec<String>,
    /// Configured but not listed as searchable: asked all the same.
    pub configured_unlisted: Vec<String>,
    /// The last attempt's failure, and when.
    pub failure: Option<String>,
    pub failures: u64,
    /// GP Connect: its capabilities are the specification's, not discovered.
    pub fixed: bool,
    /// How views ask it, in words.
    pub asked: AskedWords,
}

/// How views ask one source for the items that name a patient, in words: one row each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AskedWords {
    /// How its search by patient is made, and the setting that says so.
    pub search: String,
    /// Whether it is asked by NHS number, and whether configuration or its
    /// CapabilityStatement decides: a `relative` FHIR R4 source only.
    pub by_nhs_number: Option<String>,
    /// Configuration, not the CapabilityStatement, decides whether it is asked by NHS number
    /// ([`Asking::identifier_overridden`]).
    pub overridden: bool,
    /// What its search cannot find, in the words of the view's warning; `None` for GP
    /// Connect (asked by NHS number, no search by reference).
    pub cannot_find: Option<String>,
}

/// The words for how views ask a source of `kind` (see [`Asking`]); `read`: whether its
/// CapabilityStatement has been read.
pub(crate) fn asked_words(asking: &Asking, kind: SourceKind, read: bool) -> AskedWords {
    if kind == SourceKind::GpConnect {
        return AskedWords {
            search: "By NHS number, in one GP Connect structured-record request: no search by \
                     patient reference is made"
                .into(),
            by_nhs_number: None,
            overridden: false,
            cannot_find: None,
        };
    }
    let cannot_find = Some(
        match mcr_domain::UnsearchableForm::cannot_find(&asking.unsearchable) {
            Some(cannot) => {
                format!("Its search {cannot}: each view says so for this source in its warnings")
            }
            None if asking.patient_search == PatientSearch::EveryForm => {
                "Nothing: its search finds every form of patient reference".into()
            }
            None => "Nothing: it is asked for no type but Patient".into(),
        },
    );
    if asking.patient_search == PatientSearch::EveryForm {
        return AskedWords {
            search: "By the patient's id, one search per type: its search finds every item \
                     about the patient whatever form names them (patient_search = every-form, \
                     set in configuration; a CapabilityStatement cannot say this)"
                .into(),
            by_nhs_number: None,
            overridden: false,
            cannot_find,
        };
    }
    let statement = || -> String {
        if !read {
            "the CapabilityStatement has not been read".into()
        } else if asking.declared_identifier.is_empty() {
            "the CapabilityStatement does not declare it".into()
        } else if asking.declared_identifier.len() == asking.types.len() {
            "the CapabilityStatement declares it too".into()
        } else {
            format!(
                "the CapabilityStatement declares it only for {}",
                asking.declared_identifier.join(", ")
            )
        }
    };
    let by_nhs_number = match asking.identifier_search {
        IdentifierSearch::Declared if !read => "Not until its CapabilityStatement is read and \
             declares the :identifier modifier (identifier_search = declared)"
            .to_owned(),
        IdentifierSearch::Declared if asking.by_identifier.is_empty() => {
            "No: its CapabilityStatement does not declare the :identifier modifier on any type \
             asked (identifier_search = declared)"
                .to_owned()
        }
        IdentifierSearch::Declared if asking.by_identifier.len() == asking.types.len() => {
            "For every type asked, as its CapabilityStatement declares the :identifier modifier \
             (identifier_search = declared)"
                .to_owned()
        }
        IdentifierSearch::Declared => {
            let not: Vec<&str> = asking
                .types
                .iter()
                .filter(|t| !asking.by_identifier.contains(t))
                .map(String::as_str)
                .collect();
            format!(
                "For {}, as its CapabilityStatement declares the :identifier modifier; not for \
                 {} (identifier_search = declared)",
                asking.by_identifier.join(", "),
                not.join(", ")
            )
        }
        IdentifierSearch::Always => format!(
            "Always, set in configuration; {} (identifier_search = always)",
            statement()
        ),
        IdentifierSearch::Never => {
            let statement = if read && asking.declared_identifier.is_empty() {
                "the CapabilityStatement does not declare it either".to_owned()
            } else if read {
                format!(
                    "the CapabilityStatement declares it for {}",
                    asking.declared_identifier.join(", ")
                )
            } else {
                statement()
            };
            format!("Never, set in configuration; {statement} (identifier_search = never)")
        }
    };
    AskedWords {
        search: "By the patient's id, and again by this source's own address \
                 ({base}/Patient/{id}), per type: its search is taken to find only items that \
                 name the patient as Patient/{id} (patient_search = relative, the default)"
            .into(),
        by_nhs_number: Some(by_nhs_number),
        overridden: read && asking.identifier_overridden(),
        cannot_find,
    }
}

#[derive(Template)]
#[template(path = "app/sources.html")]
pub(crate) struct SourcesPage {
    pub layout: Layout,
    pub sources: Vec<SourceRow>,
}

pub(crate) async fn page(user: PageUser, State(state): State<AppState>) -> Response {
    let federation = state.gateway.federation();
    let sources = federation
        .discovered()
        .into_iter()
        .map(|(source, d)| {
            let config = source.config();
            let fixed = config.kind == SourceKind::GpConnect;
            let asked = asked_words(
                &federation.asking(&**source),
                config.kind,
                d.capabilities.is_some(),
            );
            let unreadable_entries = d
                .capabilities
                .as_ref()
                .map_or(0, |(c, _)| c.unreadable_entries);
            let (searchable, not_searchable, software, fhir_version, batch, read_at) =
                match &d.capabilities {
                    Some((c, at)) => (
                        // A Patient is read by its id, not searched: it is asked for.
                        c.types
                            .keys()
                            .filter(|n| c.answers(n))
                            .cloned()
                            .collect::<Vec<_>>(),
                        c.types.keys().filter(|n| !c.answers(n)).cloned().collect(),
                        c.software.clone().unwrap_or_default(),
                        c.fhir_version.clone().unwrap_or_default(),
                        c.batch,
                        Some(human_time(at)),
                    ),
                    None => (
                        Vec::new(),
                        Vec::new(),
                        String::new(),
                        String::new(),
                        false,
                        None,
                    ),
                };
            let configured_unlisted = if d.capabilities.is_some() {
                config
                    .resource_types
                    .iter()
                    .filter(|t| *t != "Patient" && !searchable.contains(t))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            SourceRow {
                id: config.id.as_str().to_owned(),
                organisation: config.organisation.name.clone(),
                base_url: config.base_url.to_string(),
                protocol: if fixed { "GP Connect" } else { "FHIR R4" },
                configured: config.resource_types.clone(),
                read_at,
                software,
                fhir_version,
                batch,
                unreadable_entries,
                searchable,
                not_searchable,
                configured_unlisted,
                failure: d
                    .failure
                    .as_ref()
                    .map(|(why, at)| format!("{why} ({})", human_time(at))),
                failures: d.failures,
                fixed,
                asked,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &SourcesPage {
            layout: Layout::staff(&user),
            sources,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::UnsearchableForm::{Contained, Identifier, OtherServer};

    fn asking(
        patient_search: PatientSearch,
        identifier_search: IdentifierSearch,
        by_identifier: &[&str],
        declared_identifier: &[&str],
        unsearchable: Vec<mcr_domain::UnsearchableForm>,
    ) -> Asking {
        let strings = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect();
        Asking {
            patient_search,
            identifier_search,
            by_identifier: strings(by_identifier),
            declared_identifier: strings(declared_identifier),
            types: strings(&["Condition", "Flag"]),
            unsearchable,
        }
    }

    fn row(id: &str, asked: AskedWords) -> SourceRow {
        SourceRow {
            id: id.into(),
            organisation: format!("Organisation {id}"),
            base_url: format!("https://{id}.example/fhir"),
            protocol: "FHIR R4",
            configured: Vec::new(),
            read_at: Some("5 December 2026 at 03:00".into()),
            software: String::new(),
            fhir_version: String::new(),
            batch: false,
            unreadable_entries: 0,
            searchable: vec!["Condition".into(), "Flag".into()],
            not_searchable: Vec::new(),
            configured_unlisted: Vec::new(),
            failure: None,
            failures: 0,
            fixed: false,
            asked,
        }
    }

    #[test]
    fn a_relative_source_asked_always_by_nhs_number_and_an_every_form_one_are_said_so() {
        let always = asked_words(
            &asking(
                PatientSearch::Relative,
                IdentifierSearch::Always,
                &["Condition", "Flag"],
                &[],
                vec![OtherServer, Contained],
            ),
            SourceKind::FhirR4,
            true,
        );
        assert!(
            always.search.contains("again by this source's own address")
                && always
                    .search
                    .ends_with("(patient_search = relative, the default)"),
            "{}",
            always.search
        );
        assert_eq!(
            always.by_nhs_number.as_deref(),
            Some(
                "Always, set in configuration; the CapabilityStatement does not declare it \
                 (identifier_search = always)"
            )
        );
        assert!(always.overridden);
        // The view's own words for the forms, NHS number not among them: it is asked by it.
        assert_eq!(
            always.cannot_find.as_deref(),
            Some(
                "Its search cannot find items that name the patient by an address outside this \
                 region's sources or inside the item: each view says so for this source in its \
                 warnings"
            )
        );

        let every = asked_words(
            &asking(
                PatientSearch::EveryForm,
                IdentifierSearch::Declared,
                &[],
                &[],
                Vec::new(),
            ),
            SourceKind::FhirR4,
            true,
        );
        assert!(
            every
                .search
                .contains("finds every item about the patient whatever form names them")
                && every
                    .search
                    .contains("patient_search = every-form, set in configuration"),
            "{}",
            every.search
        );
        assert_eq!(every.by_nhs_number, None);
        assert!(!every.overridden);
        assert_eq!(
            every.cannot_find.as_deref(),
            Some("Nothing: its search finds every form of patient reference")
        );

        // Both on the page, in the design system's summary list.
        let html = SourcesPage {
            layout: Layout::staff_anonymous(),
            sources: vec![row("acute", always), row("gp", every)],
        }
        .render()
        .expect("renders");
        for words in [
            "<dt class=\"nhsuk-summary-list__key\">Asked by NHS number</dt>",
            "Configuration overrides the CapabilityStatement</strong> Always, set in \
             configuration; the CapabilityStatement does not declare it",
            "Items it cannot find",
            "Nothing: its search finds every form of patient reference",
        ] {
            assert!(html.contains(words), "{words} in {html}");
        }
        assert_eq!(html.matches("Asked by NHS number").count(), 1, "{html}");
    }

    #[test]
    fn who_decides_on_asking_by_nhs_number_is_said() {
        let words = |identifier_search, by: &[&str], declared: &[&str], read| {
            let unsearchable = if by.len() == 2 {
                vec![OtherServer, Contained]
            } else {
                vec![Identifier, OtherServer, Contained]
            };
            asked_words(
                &asking(
                    PatientSearch::Relative,
                    identifier_search,
                    by,
                    declared,
                    unsearchable,
                ),
                SourceKind::FhirR4,
                read,
            )
        };
        let w = words(
            IdentifierSearch::Declared,
            &["Condition"],
            &["Condition"],
            true,
        );
        assert_eq!(
            w.by_nhs_number.as_deref(),
            Some(
                "For Condition, as its CapabilityStatement declares the :identifier modifier; \
                 not for Flag (identifier_search = declared)"
            )
        );
        assert!(!w.overridden);
        assert!(w.cannot_find.as_deref().is_some_and(
            |c| c.contains("name the patient only by NHS number, by an address outside")
        ));
        let w = words(IdentifierSearch::Declared, &[], &[], false);
        assert!(w
            .by_nhs_number
            .as_deref()
            .is_some_and(|b| b.starts_with("Not until its CapabilityStatement is read")));
        let w = words(IdentifierSearch::Never, &[], &["Condition"], true);
        assert_eq!(
            w.by_nhs_number.as_deref(),
            Some(
                "Never, set in configuration; the CapabilityStatement declares it for \
                 Condition (identifier_search = never)"
            )
        );
        assert!(w.overridden);
        let w = words(
            IdentifierSearch::Always,
            &["Condition", "Flag"],
            &["Condition", "Flag"],
            true,
        );
        assert!(
            !w.overridden,
            "declared on every type: configuration says no more"
        );
        assert!(w
            .by_nhs_number
            .as_deref()
            .is_some_and(|b| b.contains("declares it too")));
        let gp = asked_words(
            &asking(
                PatientSearch::Relative,
                IdentifierSearch::Declared,
                &[],
                &[],
                Vec::new(),
            ),
            SourceKind::GpConnect,
            false,
        );
        assert!(gp.search.starts_with("By NHS number, in one GP Connect"));
        assert_eq!((gp.by_nhs_number, gp.cannot_find), (None, None));
    }
}
