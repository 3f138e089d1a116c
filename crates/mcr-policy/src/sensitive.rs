//! Sensitive and restricted data: which resources are withheld from every view.

use mcr_fhir::Json;
use serde::{Deserialize, Serialize};

pub const SNOMED: &str = "http://snomed.info/sct";
pub const V3_CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The legally restricted and sensitive categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SensitiveCategory {
    /// IVF and embryology (Human Fertilisation and Embryology Act).
    Ivf,
    /// Sexually transmitted infections.
    Sti,
    Hiv,
    /// Termination of pregnancy.
    Termination,
    GenderReassignment,
}

/// One code that makes a resource sensitive wherever it appears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveCode {
    pub system: String,
    pub code: String,
    pub category: SensitiveCategory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitivityConfig {
    pub codes: Vec<SensitiveCode>,
    /// Withhold resources whose `meta.security` carries confidentiality R (restricted) or
    /// V (very restricted).
    pub withhold_confidential_labels: bool,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        use SensitiveCategory as S;
        let list: [(&str, &str, S); 16] = [
            (SNOMED, "86406008", S::Hiv),                 // HIV infection
            (SNOMED, "165816005", S::Hiv),                // HIV positive
            (SNOMED, "62479008", S::Hiv),                 // AIDS
            (SNOMED, "91948008", S::Hiv),                 // Asymptomatic HIV infection
            (SNOMED, "105629000", S::Sti),                // Chlamydial infection
            (SNOMED, "240589008", S::Sti),                // Chlamydia trachomatis infection
            (SNOMED, "15628003", S::Sti),                 // Gonorrhoea
            (SNOMED, "76272004", S::Sti),                 // Syphilis
            (SNOMED, "33839006", S::Sti),                 // Genital herpes simplex
            (SNOMED, "52637005", S::Ivf),                 // In vitro fertilisation
            (SNOMED, "386639001", S::Termination),        // Termination of pregnancy
            (SNOMED, "93461009", S::GenderReassignment),  // Gender dysphoria
            (SNOMED, "407374003", S::GenderReassignment), // Transsexual
            // Sensitivity labels a source may put in meta.security.
            (V3_ACT_CODE, "HIV", S::Hiv),
            (V3_ACT_CODE, "STD", S::Sti),
            (V3_ACT_CODE, "SEX", S::Sti),
        ];
        Self {
            codes: list
                .into_iter()
                .map(|(system, code, category)| SensitiveCode {
                    system: system.to_owned(),
                    code: code.to_owned(),
                    category,
                })
                .collect(),
            withhold_confidential_labels: true,
        }
    }
}

/// Why a resource was withheld. For counting and audit only: a view never says what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "category", rename_all = "kebab-case")]
pub enum WithholdReason {
    Sensitive(SensitiveCategory),
    /// The source labelled it restricted or very restricted.
    ConfidentialLabel,
}

/// Elements of a resource whose codings are checked.
const CODED_ELEMENTS: [&str; 6] = [
    "code",
    "valueCodeableConcept",
    "reasonCode",
    "medicationCodeableConcept",
    "type",
    "category",
];

/// How deep `contained` resources are followed (a hostile source could nest forever).
const MAX_CONTAINED_DEPTH: u8 = 2;

/// Decides whether a resource from a source must be withheld from every view. The resource is
/// untrusted input: anything of the wrong shape is skipped, never a panic.
pub fn withhold<J: Json>(resource: &J, cfg: &SensitivityConfig) -> Option<WithholdReason> {
    withhold_at(resource, cfg, 0)
}

fn withhold_at<J: Json>(
    resource: &J,
    cfg: &SensitivityConfig,
    depth: u8,
) -> Option<WithholdReason> {
    if let Some(security) = resource.get("meta").and_then(|m| m.get("security")) {
        let label = find_coding(security, &mut |coding| {
            if cfg.withhold_confidential_labels
                && coding.0 == V3_CONFIDENTIALITY
                && matches!(coding.1, "R" | "V")
            {
                return Some(WithholdReason::ConfidentialLabel);
            }
            sensitive_category(cfg, coding).map(WithholdReason::Sensitive)
        });
        if label.is_some() {
            return label;
        }
    }
    for element in CODED_ELEMENTS {
        if let Some(v) = resource.get(element) {
            if let Some(cat) = find_coding(v, &mut |c| sensitive_category(cfg, c)) {
                return Some(WithholdReason::Sensitive(cat));
            }
        }
    }
    if depth < MAX_CONTAINED_DEPTH {
        if let Some(contained) = resource.get("contained").and_then(J::as_array) {
            return contained
                .iter()
                .find_map(|r| withhold_at(r, cfg, depth + 1));
        }
    }
    None
}

fn sensitive_category(
    cfg: &SensitivityConfig,
    (system, code): (&str, &str),
) -> Option<SensitiveCategory> {
    cfg.codes
        .iter()
        .find(|c| c.system == system && c.code == code)
        .map(|c| c.category)
}

/// The first of what `found` makes of each `(system, code)` in a Coding, a CodeableConcept,
/// or an array of either, in order.
fn find_coding<'a, J: Json, T>(
    v: &'a J,
    found: &mut impl FnMut((&'a str, &'a str)) -> Option<T>,
) -> Option<T> {
    if let Some(items) = v.as_array() {
        return items.iter().find_map(|item| find_coding(item, found));
    }
    if !v.is_object() {
        return None;
    }
    match v.get("coding").and_then(J::as_array) {
        Some(cs) => cs.iter().filter_map(coding_pair).find_map(found),
        None => coding_pair(v).and_then(found),
    }
}

fn coding_pair<J: Json>(v: &J) -> Option<(&str, &str)> {
    Some((v.get("system")?.as_str()?, v.get("code")?.as_str()?))
}
