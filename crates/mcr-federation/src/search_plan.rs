//! Which searches a view makes of a FHIR R4 source for the forms in which an item may name its
//! patient, and which forms it cannot ask for (see [`PatientSearch`]).
//!
//! A source whose search finds only relative references is asked again, per type, by its own
//! base URL (`subject={base}/Patient/{id}`, or `patient=…` for a type without `subject`) with
//! the patient's addresses at the region's other sources beside it (`Ask::elsewhere`, one
//! search, the addresses as alternatives), and by NHS number (`patient:identifier=…`) for each
//! type its CapabilityStatement declares the modifier on, or as its configuration says instead
//! ([`IdentifierSearch`]). A contained `Patient` can never be searched for, nor an address
//! outside the region's sources (an item naming one is stored as sent, and no search by an
//! address the index holds matches it), nor an identifier where the source is not asked by
//! one: those forms are named, for the view to say and the audit record to count.

use crate::capabilities::Discovery;
use crate::client::{IdentifierSearch, OtherForm, PatientSearch, SourceConfig, SourceKind};
use mcr_domain::UnsearchableForm;

/// The R4 resource types whose search parameters include `subject` (the rest of the types a
/// view asks for are searched by `patient` only): used until a source's CapabilityStatement
/// says which it lists.
const R4_SUBJECT_TYPES: &[&str] = &[
    "CarePlan",
    "CareTeam",
    "ClinicalImpression",
    "Composition",
    "Condition",
    "DeviceRequest",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Flag",
    "Goal",
    "List",
    "Media",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "QuestionnaireResponse",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
];

/// The searches besides `patient={id}` for the types `wanted` of a source configured as
/// `config` (whose statement, if read, is in `discovery`), and the forms it cannot be asked
/// for, sorted. Nothing for a GP Connect source (one structured-record call, by NHS number),
/// a source whose search finds every form, or a view that asks for no type but `Patient`.
pub(crate) fn other_forms(
    config: &SourceConfig,
    discovery: Option<&Discovery>,
    wanted: &[&str],
) -> (Vec<OtherForm>, Vec<UnsearchableForm>) {
    if config.kind != SourceKind::FhirR4 || config.patient_search == PatientSearch::EveryForm {
        return (Vec::new(), Vec::new());
    }
    let mut forms = Vec::new();
    let mut identifier_everywhere = true;
    for t in wanted.iter().copied().filter(|t| *t != "Patient") {
        let said = discovery.and_then(|d| d.of_type(t));
        let subject = match &said {
            Some(c) => c.has_subject(),
            None => R4_SUBJECT_TYPES.contains(&t),
        };
        let param = if subject { "subject" } else { "patient" };
        forms.push(OtherForm::Absolute {
            resource_type: t.to_owned(),
            param,
        });
        let by_identifier = match config.identifier_search {
            IdentifierSearch::Declared => said
                .is_some_and(|c| c.patient_identifier)
                .then_some("patient"),
            IdentifierSearch::Always => Some(param),
            IdentifierSearch::Never => None,
        };
        match by_identifier {
            Some(param) => forms.push(OtherForm::Identifier {
                resource_type: t.to_owned(),
                param,
            }),
            None => identifier_everywhere = false,
        }
    }
    if forms.is_empty() {
        return (forms, Vec::new());
    }
    let mut unsearchable = Vec::new();
    if !identifier_everywhere {
        unsearchable.push(UnsearchableForm::Identifier);
    }
    unsearchable.push(UnsearchableForm::OtherServer);
    unsearchable.push(UnsearchableForm::Contained);
    (forms, unsearchable)
}

/// How views ask one source for the items that name a patient, and what they cannot ask it
/// for, over the types `wanted` (every type a view may ask it for): for the operators' page
/// of sources and `/metrics`, made by the same plan as a view's ([`other_forms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asking {
    pub patient_search: PatientSearch,
    pub identifier_search: IdentifierSearch,
    /// The types asked by NHS number (`:identifier`), in the order asked.
    pub by_identifier: Vec<String>,
    /// The types whose CapabilityStatement, as last read, declares the `:identifier`
    /// modifier on `patient`.
    pub declared_identifier: Vec<String>,
    /// The types asked for besides `Patient`.
    pub types: Vec<String>,
    /// The forms it cannot be asked for, sorted: what a view's warning names.
    pub unsearchable: Vec<UnsearchableForm>,
}

impl Asking {
    /// Whether the configuration, not the CapabilityStatement, decides whether it is asked by
    /// NHS number: `always` where the statement does not declare the modifier on every type
    /// asked, `never` where it declares it on any.
    pub fn identifier_overridden(&self) -> bool {
        match self.identifier_search {
            IdentifierSearch::Declared => false,
            IdentifierSearch::Always => self.declared_identifier.len() < self.types.len(),
            IdentifierSearch::Never => !self.declared_identifier.is_empty(),
        }
    }
}

/// How views ask a source configured as `config` (whose statement, if read, is in
/// `discovery`) for the types `wanted`: [`other_forms`], told as an [`Asking`].
pub(crate) fn asking(
    config: &SourceConfig,
    discovery: Option<&Discovery>,
    wanted: &[&str],
) -> Asking {
    let (forms, unsearchable) = other_forms(config, discovery, wanted);
    let types: Vec<String> = wanted
        .iter()
        .filter(|t| **t != "Patient")
        .map(|t| (*t).to_owned())
        .collect();
    let declared_identifier = types
        .iter()
        .filter(|t| {
            discovery
                .and_then(|d| d.of_type(t))
                .is_some_and(|c| c.patient_identifier)
        })
        .cloned()
        .collect();
    let by_identifier = forms
        .iter()
        .filter(|f| matches!(f, OtherForm::Identifier { .. }))
        .map(|f| f.resource_type().to_owned())
        .collect();
    Asking {
        patient_search: config.patient_search,
        identifier_search: config.identifier_search,
        by_identifier,
        declared_identifier,
        types,
        unsearchable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Capabilities, TypeCapability};

    fn config(patient_search: PatientSearch, kind: SourceKind) -> SourceConfig {
        SourceConfig {
            id: mcr_domain::SourceId::parse("acute").expect("id"),
            organisation: mcr_domain::Organisation {
                code: mcr_domain::OdsCode::parse("RWH").expect("ods"),
                name: "Acute".into(),
                kind: mcr_domain::OrgKind::AcuteTrust,
                member: true,
                suspended: false,
            },
            base_url: url::Url::parse("https://acute.example/fhir").expect("url"),
            resource_types: Vec::new(),
            batch: true,
            kind,
            gp_connect: None,
            deadline_ms: None,
            feed_timeout_secs: None,
            patient_search,
            identifier_search: IdentifierSearch::Declared,
        }
    }

    fn absolute(t: &str, param: &'static str) -> OtherForm {
        OtherForm::Absolute {
            resource_type: t.into(),
            param,
        }
    }

    #[test]
    fn a_source_that_finds_only_relative_references_is_asked_again_by_its_base_url() {
        let c = config(PatientSearch::Relative, SourceKind::FhirR4);
        // Nothing read yet: R4's own parameters decide `subject` or `patient`.
        let (forms, unsearchable) =
            other_forms(&c, None, &["Patient", "Condition", "AllergyIntolerance"]);
        assert_eq!(
            forms,
            [
                absolute("Condition", "subject"),
                absolute("AllergyIntolerance", "patient")
            ]
        );
        assert_eq!(
            unsearchable,
            [
                UnsearchableForm::Identifier,
                UnsearchableForm::OtherServer,
                UnsearchableForm::Contained
            ],
            "no statement declares `:identifier`; an address outside the region's sources and \
             a contained Patient are never searchable"
        );
    }

    #[test]
    fn by_nhs_number_only_where_the_statement_declares_the_identifier_modifier() {
        let c = config(PatientSearch::Relative, SourceKind::FhirR4);
        let d = Discovery::default();
        let mut caps = Capabilities::default();
        for (t, identifier) in [("Condition", true), ("Flag", false)] {
            caps.types.insert(
                t.into(),
                TypeCapability {
                    search_params: vec!["patient".into()],
                    by_patient: true,
                    patient_identifier: identifier,
                },
            );
        }
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time");
        d.record(Ok(caps), at);
        let (forms, unsearchable) = other_forms(&c, Some(&d), &["Condition", "Flag"]);
        assert_eq!(
            forms,
            [
                // The statement lists no `subject` for either: asked by `patient`.
                absolute("Condition", "patient"),
                OtherForm::Identifier {
                    resource_type: "Condition".into(),
                    param: "patient"
                },
                absolute("Flag", "patient"),
            ]
        );
        assert_eq!(
            unsearchable,
            [
                UnsearchableForm::Identifier,
                UnsearchableForm::OtherServer,
                UnsearchableForm::Contained
            ],
            "Flag items naming the patient by NHS number alone cannot be asked for"
        );
        // Every type declares it: the NHS number is not named.
        let (_, unsearchable) = other_forms(&c, Some(&d), &["Condition"]);
        assert_eq!(
            unsearchable,
            [UnsearchableForm::OtherServer, UnsearchableForm::Contained]
        );
    }

    #[test]
    fn configuration_overrides_the_statement_on_asking_by_nhs_number() {
        let d = Discovery::default();
        let mut caps = Capabilities::default();
        caps.types.insert(
            "Condition".into(),
            TypeCapability {
                search_params: vec!["patient".into(), "subject".into()],
                by_patient: true,
                patient_identifier: true,
            },
        );
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time");
        d.record(Ok(caps), at);
        let identifier = |t: &str, param| OtherForm::Identifier {
            resource_type: t.into(),
            param,
        };
        // Always: every type, by `subject` where it has it (Condition here; AllergyIntolerance
        // by R4's own parameters, unlisted), whatever the statement declares.
        let mut c = config(PatientSearch::Relative, SourceKind::FhirR4);
        c.identifier_search = IdentifierSearch::Always;
        let (forms, unsearchable) = other_forms(&c, Some(&d), &["Condition", "AllergyIntolerance"]);
        assert_eq!(
            forms,
            [
                absolute("Condition", "subject"),
                identifier("Condition", "subject"),
                absolute("AllergyIntolerance", "patient"),
                identifier("AllergyIntolerance", "patient"),
            ]
        );
        assert_eq!(
            unsearchable,
            [UnsearchableForm::OtherServer, UnsearchableForm::Contained],
            "asked by NHS number for every type: that form is not named"
        );
        // Never: not even where the statement declares it, and the form is named.
        c.identifier_search = IdentifierSearch::Never;
        let (forms, unsearchable) = other_forms(&c, Some(&d), &["Condition"]);
        assert_eq!(forms, [absolute("Condition", "subject")]);
        assert_eq!(
            unsearchable,
            [
                UnsearchableForm::Identifier,
                UnsearchableForm::OtherServer,
                UnsearchableForm::Contained
            ]
        );
    }

    #[test]
    fn how_a_source_is_asked_says_where_configuration_overrides_the_statement() {
        let d = Discovery::default();
        let mut caps = Capabilities::default();
        caps.types.insert(
            "Condition".into(),
            TypeCapability {
                search_params: vec!["patient".into()],
                by_patient: true,
                patient_identifier: true,
            },
        );
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time");
        d.record(Ok(caps), at);
        let wanted = ["Patient", "Condition", "Flag"];
        let mut c = config(PatientSearch::Relative, SourceKind::FhirR4);
        let declared = asking(&c, Some(&d), &wanted);
        assert_eq!(declared.types, ["Condition", "Flag"]);
        assert_eq!(declared.declared_identifier, ["Condition"]);
        assert_eq!(declared.by_identifier, ["Condition"]);
        assert_eq!(declared.unsearchable, other_forms(&c, Some(&d), &wanted).1);
        assert!(!declared.identifier_overridden());

        c.identifier_search = IdentifierSearch::Always;
        let always = asking(&c, Some(&d), &wanted);
        assert_eq!(always.by_identifier, ["Condition", "Flag"]);
        assert!(
            always.identifier_overridden(),
            "the statement does not declare it on Flag"
        );
        assert!(!always.unsearchable.contains(&UnsearchableForm::Identifier));
        assert!(
            !asking(&c, Some(&d), &["Condition"]).identifier_overridden(),
            "declared on every type asked: configuration says no more than the statement"
        );

        c.identifier_search = IdentifierSearch::Never;
        let never = asking(&c, Some(&d), &wanted);
        assert!(never.by_identifier.is_empty());
        assert!(never.identifier_overridden(), "declared on Condition");
        assert!(!asking(&c, Some(&d), &["Flag"]).identifier_overridden());

        let every = asking(
            &config(PatientSearch::EveryForm, SourceKind::FhirR4),
            Some(&d),
            &wanted,
        );
        assert!(every.unsearchable.is_empty() && every.by_identifier.is_empty());
    }

    #[test]
    fn nothing_more_is_asked_or_said_where_it_cannot_help() {
        for c in [
            config(PatientSearch::EveryForm, SourceKind::FhirR4),
            config(PatientSearch::Relative, SourceKind::GpConnect),
        ] {
            assert_eq!(
                other_forms(&c, None, &["Condition"]),
                (Vec::new(), Vec::new())
            );
        }
        let c = config(PatientSearch::Relative, SourceKind::FhirR4);
        assert_eq!(
            other_forms(&c, None, &["Patient"]),
            (Vec::new(), Vec::new()),
            "a view of demographics alone asks for no item"
        );
    }
}
