use crate::{DataClass, NhsNumber, OdsCode, SourceId};
use serde::{Deserialize, Serialize};

/// The sections a merged record is shown in, in display order: what a clinician needs first
/// (alerts, then legal and end-of-life decisions) at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Alerts,
    LegalEndOfLife,
    Allergies,
    Medications,
    Problems,
    Encounters,
    Appointments,
    Results,
    Immunisations,
    Procedures,
    Referrals,
    Documents,
    CareTeam,
    CareAndSupport,
}

impl Section {
    pub const ALL: [Section; 14] = [
        Section::Alerts,
        Section::LegalEndOfLife,
        Section::Allergies,
        Section::Medications,
        Section::Problems,
        Section::Encounters,
        Section::Appointments,
        Section::Results,
        Section::Immunisations,
        Section::Procedures,
        Section::Referrals,
        Section::Documents,
        Section::CareTeam,
        Section::CareAndSupport,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::Alerts => "Alerts and flags",
            Section::LegalEndOfLife => "Legal and end-of-life decisions",
            Section::Allergies => "Allergies and adverse reactions",
            Section::Medications => "Medications",
            Section::Problems => "Problems and diagnoses",
            Section::Encounters => "Encounters",
            Section::Appointments => "Appointments",
            Section::Results => "Observations and results",
            Section::Immunisations => "Immunisations",
            Section::Procedures => "Procedures",
            Section::Referrals => "Referrals",
            Section::Documents => "Documents",
            Section::CareTeam => "Care team and episodes of care",
            Section::CareAndSupport => "Care and support",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Alerts => "alerts",
            Section::LegalEndOfLife => "legal-end-of-life",
            Section::Allergies => "allergies",
            Section::Medications => "medications",
            Section::Problems => "problems",
            Section::Encounters => "encounters",
            Section::Appointments => "appointments",
            Section::Results => "results",
            Section::Immunisations => "immunisations",
            Section::Procedures => "procedures",
            Section::Referrals => "referrals",
            Section::Documents => "documents",
            Section::CareTeam => "care-team",
            Section::CareAndSupport => "care-and-support",
        }
    }

    /// The section an item of this data class is shown in (`None` for classes that are not
    /// record items, such as demographics).
    pub fn for_class(class: DataClass) -> Option<Section> {
        Some(match class {
            DataClass::Alerts => Section::Alerts,
            DataClass::LegalEndOfLife => Section::LegalEndOfLife,
            DataClass::Allergies => Section::Allergies,
            DataClass::Medications => Section::Medications,
            DataClass::Problems => Section::Problems,
            DataClass::Encounters => Section::Encounters,
            DataClass::Appointments => Section::Appointments,
            DataClass::Results => Section::Results,
            DataClass::Immunisations => Section::Immunisations,
            DataClass::Procedures => Section::Procedures,
            DataClass::Referrals => Section::Referrals,
            DataClass::Documents => Section::Documents,
            DataClass::CareTeam => Section::CareTeam,
            DataClass::Assessments | DataClass::CarePlans | DataClass::KeyContacts => {
                Section::CareAndSupport
            }
            DataClass::Demographics => return None,
        })
    }
}

/// Where one copy of an item came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSource {
    pub source: SourceId,
    pub org_code: OdsCode,
    pub org_name: String,
    /// The absolute URL of the resource at its source (`{base}/{type}/{id}`).
    pub full_url: String,
    /// When the source says the item was recorded (ISO 8601 as the source gave it).
    pub recorded: Option<String>,
}

/// One item of the merged record: a resource as a source sent it, the few fields read from it,
/// and every source that holds the same item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordItem {
    pub section: Section,
    pub class: DataClass,
    pub resource_type: String,
    /// Primary coding as `(system, code)`.
    pub code: Option<(String, String)>,
    /// What to show: the coding's display or the resource's text.
    pub display: String,
    /// A second line: dose, value and unit, reaction, …
    pub detail: Option<String>,
    /// Clinical status as the source gave it (active, resolved, completed, …).
    pub status: Option<String>,
    /// The clinically relevant date (onset, period start, effective time), ISO 8601.
    pub date: Option<String>,
    pub sources: Vec<ItemSource>,
    /// Set when sources agree this is the same item but disagree on a detail.
    pub discrepancy: Option<String>,
    /// The resource as the first source sent it, kept whole (as text) and never persisted.
    pub resource: SourceJson,
}

/// A resource exactly as its source sent it: the JSON text, checked to be one well-formed JSON
/// value when it was received. The API returns it byte for byte (never decoded and encoded
/// again); a page that needs a field the merge did not keep parses it with [`SourceJson::value`].
///
/// `Debug` shows only its length: it is clinical data and must not reach a log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceJson(Box<serde_json::value::RawValue>);

impl SourceJson {
    /// The JSON text as received.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Parsed again. `None` only if the text is not JSON, which the constructors rule out.
    pub fn value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.0.get()).ok()
    }

    /// Checked JSON text, as received from a source.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text.to_owned()).map(Self)
    }

    /// Already checked JSON text (a `RawValue` the deserialiser produced).
    pub fn from_raw(raw: Box<serde_json::value::RawValue>) -> Self {
        Self(raw)
    }

    /// Encodes a parsed value (tests, and resources built here rather than received).
    pub fn from_value(value: &serde_json::Value) -> Self {
        // A `Value` always encodes (its map keys are strings), so this cannot fail.
        Self(serde_json::value::to_raw_value(value).expect("a serde_json::Value encodes"))
    }
}

impl PartialEq for SourceJson {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Debug for SourceJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceJson({} bytes)", self.json().len())
    }
}

/// Why a source gave no data for this view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FailureReason {
    /// Did not answer within the deadline.
    Timeout { after_ms: u64 },
    /// Could not be connected to (refused, reset, DNS, TLS).
    Unreachable { detail: String },
    /// Answered with an HTTP error status.
    HttpStatus { status: u16 },
    /// Answered with something that is not the FHIR we asked for.
    Malformed { detail: String },
    /// Sent more than the configured cap.
    TooLarge { limit_bytes: u64 },
    /// A GP Connect provider: the patient has dissented from sharing their GP record
    /// (`NO_PATIENT_CONSENT`). Never shown as an empty record.
    PatientDissent,
    /// A GP Connect provider: no record it may share for this NHS number (`PATIENT_NOT_FOUND`:
    /// unknown, inactive, deceased or sensitive).
    PatientNotFound,
    /// A GP Connect provider: the patient is not registered (as a regular patient) at this
    /// practice (`PATIENT_NOT_FOUND` saying so).
    NotRegistered,
    /// A GP Connect provider refused the NHS number as invalid (`INVALID_NHS_NUMBER`).
    InvalidNhsNumber,
    /// A GP Connect provider refused the request itself (`INVALID_RESOURCE`,
    /// `INVALID_PARAMETER`, `BAD_REQUEST`, …): the gateway asked wrongly.
    InvalidRequest { code: String },
    /// A GP Connect provider refused this requester (`ACCESS DENIED`, `NO_RELATIONSHIP`,
    /// `NO_ORGANISATION_CONSENT`, or the Spine proxy's refusal).
    AccessDenied { code: String },
    /// A GP Connect provider failed on its side (`INTERNAL_SERVER_ERROR`, …).
    ProviderError { code: String },
    /// A search's Bundle said it matched `held` resources (`Bundle.total`) but the source sent
    /// `sent` and offered no next page: the rest cannot be asked for.
    Unpaged {
        resource_type: String,
        held: u64,
        sent: u64,
    },
}

impl FailureReason {
    /// A sentence for the banner on the record page.
    pub fn describe(&self) -> String {
        match self {
            FailureReason::Timeout { after_ms } => {
                format!(
                    "did not answer within {:.1} seconds",
                    *after_ms as f64 / 1000.0
                )
            }
            FailureReason::Unreachable { detail } => format!("could not be reached ({detail})"),
            FailureReason::HttpStatus { status } => {
                format!("answered with an error (HTTP {status})")
            }
            FailureReason::Malformed { detail } => {
                format!("sent data that could not be read ({detail})")
            }
            FailureReason::TooLarge { limit_bytes } => format!(
                "sent more than the {} MB limit",
                limit_bytes / (1024 * 1024)
            ),
            FailureReason::PatientDissent => {
                "the patient has declined to share their GP record".into()
            }
            FailureReason::PatientNotFound => {
                "holds no GP record it can share for this NHS number".into()
            }
            FailureReason::NotRegistered => "says the patient is not registered there".into(),
            FailureReason::InvalidNhsNumber => "refused the NHS number as invalid".into(),
            FailureReason::InvalidRequest { code } => {
                format!("refused the request as invalid ({code})")
            }
            FailureReason::AccessDenied { code } => format!("refused access ({code})"),
            FailureReason::ProviderError { code } => {
                format!("failed on its side ({code})")
            }
            FailureReason::Unpaged {
                resource_type,
                held,
                sent,
            } => format!(
                "said it holds {held} {resource_type} resources for this patient but sent {sent} and offered no next page"
            ),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FailureReason::Timeout { .. } => "timeout",
            FailureReason::Unreachable { .. } => "unreachable",
            FailureReason::HttpStatus { .. } => "http-status",
            FailureReason::Malformed { .. } => "malformed",
            FailureReason::TooLarge { .. } => "too-large",
            FailureReason::PatientDissent => "patient-dissent",
            FailureReason::PatientNotFound => "patient-not-found",
            FailureReason::NotRegistered => "not-registered",
            FailureReason::InvalidNhsNumber => "invalid-nhs-number",
            FailureReason::InvalidRequest { .. } => "invalid-request",
            FailureReason::AccessDenied { .. } => "access-denied",
            FailureReason::ProviderError { .. } => "provider-error",
            FailureReason::Unpaged { .. } => "unpaged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SourceStatus {
    /// Answered in full.
    Ok,
    /// Answered in part, then stopped for `0` (its deadline, or the size cap): what arrived
    /// is shown, and the view says the rest of this source's record is missing.
    Partial(FailureReason),
    Failed(FailureReason),
}

/// What happened when one source was asked, for the banner, the API and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOutcome {
    pub source: SourceId,
    pub org_code: OdsCode,
    pub org_name: String,
    pub status: SourceStatus,
    /// Resources received and kept (after filtering).
    pub items: usize,
    /// Items this source sent that were withheld (sensitive, confidential, or outside the grant).
    pub withheld: usize,
    /// Items this source sent that could not be tied to this patient (no subject, a reference
    /// to a server where the index does not hold this patient, …): not shown, counted and
    /// said.
    #[serde(default)]
    pub untied: usize,
    /// Items this source sent about another of its patients: a source error, not shown,
    /// counted and said.
    #[serde(default)]
    pub another_patient: usize,
    pub elapsed_ms: u64,
    /// What the source said about its own answer, for the banner: a GP Connect provider's
    /// list warnings (confidential items excluded, record in transit, awaiting filing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Resources this source sent of types the record has no place for, counted by type
    /// (sorted by type): never shown, never ignored in silence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_shown: Vec<NotShown>,
    /// The forms of patient reference R4 allows that this source's search cannot be asked
    /// for (sorted): items naming the patient only that way are never sent, so the view says
    /// they may exist ([`SourceOutcome::unsearchable_sentence`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsearchable: Vec<UnsearchableForm>,
}

/// A form of patient reference R4 allows that a source's search by patient cannot find, so
/// items naming the patient only that way never reach a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnsearchableForm {
    /// A logical reference: `subject.identifier` with the NHS number and no `reference`,
    /// where the source is not asked with the `:identifier` modifier (its statement does not
    /// declare it, and its configuration does not say it answers it).
    Identifier,
    /// An absolute reference to a `Patient` on a server outside the region's sources
    /// (`https://elsewhere.example/fhir/Patient/123`), or at one of them where the index does
    /// not hold this patient: a source is asked by its own address and by the patient's
    /// addresses at the region's other sources, never by one nobody knows.
    OtherServer,
    /// A `Patient` contained in the item (`"reference": "#p"`): a search by patient never
    /// finds one.
    Contained,
}

impl UnsearchableForm {
    /// Every form, in the order they are said.
    pub const ALL: [UnsearchableForm; 3] = [
        UnsearchableForm::Identifier,
        UnsearchableForm::OtherServer,
        UnsearchableForm::Contained,
    ];

    /// What a search that cannot be asked for `forms` cannot do ("cannot find items that name
    /// the patient only by NHS number, by an address outside this region's sources or inside
    /// the item"), in
    /// the words of the view's warning ([`SourceOutcome::unsearchable_sentence`]) and of the
    /// operators' page of sources; `None` for no form.
    pub fn cannot_find(forms: &[UnsearchableForm]) -> Option<String> {
        let words: Vec<&str> = forms.iter().map(|f| f.words()).collect();
        let words = match words.split_last() {
            None => return None,
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((only, _)) => (*only).to_owned(),
        };
        Some(format!("cannot find items that name the patient {words}"))
    }

    /// The word the audit trail keeps.
    pub fn code(self) -> &'static str {
        match self {
            UnsearchableForm::Identifier => "identifier",
            UnsearchableForm::OtherServer => "other-server",
            UnsearchableForm::Contained => "contained",
        }
    }

    /// How an item names the patient in this form, as the view says it.
    fn words(self) -> &'static str {
        match self {
            UnsearchableForm::Identifier => "only by NHS number",
            UnsearchableForm::OtherServer => "by an address outside this region's sources",
            UnsearchableForm::Contained => "inside the item",
        }
    }
}

/// How many resources of one type a source sent that the record does not show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotShown {
    pub resource_type: String,
    pub count: usize,
}

impl SourceOutcome {
    /// Items the source sent that this view does not show because they could not be shown
    /// as this patient's.
    pub fn not_tied(&self) -> usize {
        self.untied + self.another_patient
    }

    /// The sentence for the view's warnings when only part of this source's record arrived,
    /// or `None`.
    pub fn partial_sentence(&self) -> Option<String> {
        let SourceStatus::Partial(reason) = &self.status else {
            return None;
        };
        let items = if self.items == 1 { "item" } else { "items" };
        let cut = match reason {
            FailureReason::Timeout { after_ms } => {
                format!("the {:.1}-second deadline", *after_ms as f64 / 1000.0)
            }
            FailureReason::TooLarge { limit_bytes } => {
                format!("the {} MB limit was reached", limit_bytes / (1024 * 1024))
            }
            FailureReason::Unpaged {
                resource_type,
                held,
                sent,
            } => {
                return Some(format!(
                    "Only part of the record at {} is shown: it holds {held} {resource_type} resources for this patient but sent {sent} and offered no way to ask for the rest, so {} are missing here",
                    self.org_name,
                    held.saturating_sub(*sent)
                ));
            }
            other => format!("it {}", other.describe()),
        };
        Some(format!(
            "Only part of the record at {} is shown: {} {items} arrived before {cut}; the rest of its record is missing here",
            self.org_name, self.items
        ))
    }

    /// The sentence for the view's warnings when this source sent resources of types the
    /// record does not show ("Not shown: 12 Goal resources from …"), or `None`.
    pub fn not_shown_sentence(&self) -> Option<String> {
        if self.not_shown.is_empty() {
            return None;
        }
        let kinds: Vec<String> = self
            .not_shown
            .iter()
            .map(|n| {
                let word = if n.count == 1 {
                    "resource"
                } else {
                    "resources"
                };
                format!("{} {} {word}", n.count, n.resource_type)
            })
            .collect();
        Some(format!(
            "Not shown: {} from {} (this record has no section for them; ask {} if you need them).",
            kinds.join(", "),
            self.org_name,
            self.org_name
        ))
    }

    /// The sentence for the view's warnings when this source's search cannot be asked for
    /// every form of patient reference ("… search cannot find items that name the patient
    /// only by NHS number, by an address outside this region's sources or inside the item; any such items are
    /// not shown."), or `None`. Not said of a source that failed: everything it holds is
    /// missing, and said so.
    pub fn unsearchable_sentence(&self) -> Option<String> {
        if matches!(self.status, SourceStatus::Failed(_)) {
            return None;
        }
        let cannot = UnsearchableForm::cannot_find(&self.unsearchable)?;
        Some(format!(
            "{}'s search {cannot}; any such items are not shown.",
            self.org_name,
        ))
    }

    /// The sentence for the view's warnings when items could not be tied, or `None`.
    pub fn not_tied_sentence(&self) -> Option<String> {
        let n = self.not_tied();
        if n == 0 {
            return None;
        }
        let items = if n == 1 { "item" } else { "items" };
        let mut s = format!(
            "{n} {items} from {} could not be tied to this patient and {} not shown",
            self.org_name,
            if n == 1 { "is" } else { "are" }
        );
        if self.another_patient > 0 {
            s.push_str(&format!(
                " ({} named another patient)",
                self.another_patient
            ));
        }
        if self.items == 0 {
            s.push_str(": nothing it sent could be shown");
        }
        s.push('.');
        Some(s)
    }
}

/// One patient's record as merged from every source asked, for one view. Lives only for the
/// request that built it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedRecord {
    pub nhs_number: NhsNumber,
    /// The patient's demographics as the most authoritative source gave them.
    pub patient: Option<serde_json::Value>,
    /// Where [`Self::patient`] is held: its address at the source it came from (its `fullUrl`
    /// in a Bundle, which must agree with its id there).
    #[serde(default)]
    pub patient_url: Option<String>,
    /// Sections in display order; each section's items newest first.
    pub sections: Vec<(Section, Vec<RecordItem>)>,
    /// Every source asked, in configuration order.
    pub sources: Vec<SourceOutcome>,
    /// Sections the viewer's role may not see (shown as "not available to your role").
    pub unavailable_sections: Vec<Section>,
    /// True when anything was withheld from this view (never what, nor how many per category).
    pub withheld: bool,
    /// Sentences for the banner when the sources' Patients disagree on name, date of birth or
    /// sex for this NHS number (a wrong-patient risk), one per detail that differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demographics_differ: Vec<String>,
    /// The patient is restricted (a source's or PDS's confidentiality label, or the index's
    /// status): their address, telephone, contacts and registered practice were removed from
    /// [`Self::patient`] and are never shown ([`MergedRecord::withhold_location`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub location_withheld: bool,
}

/// What a restricted patient's GP practice is called wherever the record names it.
pub const PRACTICE_WITHHELD: &str = "GP practice (withheld: restricted record)";

impl MergedRecord {
    /// Remove where the patient is (`address`, `telecom`, `contact`, `generalPractitioner`)
    /// from the record's Patient, and say so.
    pub fn withhold_location(&mut self) {
        self.location_withheld = true;
        if let Some(serde_json::Value::Object(p)) = &mut self.patient {
            for field in ["address", "telecom", "contact", "generalPractitioner"] {
                p.remove(field);
            }
        }
    }

    /// Name the GP practices among `practices` (ODS codes) only as "GP practice (withheld:
    /// restricted record)", in the record's source list, on every item they hold, and inside
    /// the resources as their sources sent them (a `performer` or `informationSource` naming
    /// the practice by ODS code, a contained `Organization`, the practice's name in a
    /// display such as "Clinician, Bridge Street Surgery") and the Patient (its
    /// `managingOrganization`): the registered practice says where a restricted patient lives.
    /// Their items stay. Returns how many resources were rewritten.
    pub fn withhold_practice_names(
        &mut self,
        practices: &std::collections::BTreeSet<OdsCode>,
    ) -> usize {
        let mut names = std::collections::BTreeSet::new();
        for s in &mut self.sources {
            if practices.contains(&s.org_code) && s.org_name != PRACTICE_WITHHELD {
                names.insert(std::mem::replace(&mut s.org_name, PRACTICE_WITHHELD.into()));
            }
        }
        for (_, items) in &mut self.sections {
            for item in items {
                for src in &mut item.sources {
                    if practices.contains(&src.org_code) && src.org_name != PRACTICE_WITHHELD {
                        names.insert(std::mem::replace(
                            &mut src.org_name,
                            PRACTICE_WITHHELD.into(),
                        ));
                    }
                }
            }
        }
        if practices.is_empty() {
            return 0;
        }
        // First the references by ODS code (which also tell the practices' names), then the
        // names wherever they are written. ODS codes are plain ASCII: a resource whose text
        // does not contain one does not name it, so only those are parsed.
        let codes: Vec<&str> = practices.iter().map(OdsCode::as_str).collect();
        let mut rewritten = 0;
        if let Some(p) = &mut self.patient {
            redact::references(p, &codes, &mut names);
        }
        for (_, items) in &mut self.sections {
            for item in items {
                let text = item.resource.json();
                if !codes.iter().any(|c| text.contains(c)) {
                    continue;
                }
                if let Some(mut v) = item.resource.value() {
                    if redact::references(&mut v, &codes, &mut names) {
                        item.resource = SourceJson::from_value(&v);
                        rewritten += 1;
                    }
                }
            }
        }
        names.remove(PRACTICE_WITHHELD);
        names.retain(|n| n.trim().len() >= 3);
        if names.is_empty() {
            return rewritten;
        }
        // A name's longest run of letters and digits finds it however a source escapes its
        // punctuation; the parsed text then decides.
        let hints: Vec<&str> = names.iter().map(|n| redact::hint(n)).collect();
        if let Some(p) = &mut self.patient {
            redact::names(p, &names);
        }
        for (_, items) in &mut self.sections {
            for item in items {
                let text = item.resource.json();
                if !hints.iter().any(|h| text.contains(h)) {
                    continue;
                }
                if let Some(mut v) = item.resource.value() {
                    if redact::names(&mut v, &names) {
                        item.resource = SourceJson::from_value(&v);
                        rewritten += 1;
                    }
                }
            }
        }
        rewritten
    }

    pub fn items(&self, section: Section) -> &[RecordItem] {
        self.sections
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, items)| items.as_slice())
            .unwrap_or(&[])
    }

    pub fn item_count(&self) -> usize {
        self.sections.iter().map(|(_, i)| i.len()).sum()
    }

    pub fn failed_sources(&self) -> impl Iterator<Item = &SourceOutcome> {
        self.sources
            .iter()
            .filter(|s| matches!(s.status, SourceStatus::Failed(_)))
    }
}

mod redact;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod withhold_tests;
