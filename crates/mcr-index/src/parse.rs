use chrono::{DateTime, NaiveDate, Utc};
use mcr_domain::{NhsNumber, SourceId};
use mcr_store::{IndexedPatient, LinkMethod, SourceLink};
use serde_json::Value;

/// The demographics read from one source's `Patient` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePatient {
    pub source: SourceId,
    pub local_id: String,
    /// Present only when the source gave one that passes the check digit.
    pub nhs_number: Option<NhsNumber>,
    pub family: String,
    pub given: String,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    /// The first line of the same address, normalised; `None` when there is none or the
    /// source labels the patient restricted (kept for matching only, never shown).
    pub address: Option<String>,
    pub gp_practice: Option<String>,
    pub last_updated: Option<String>,
}

/// The first line of `home`, one of Patient `r`'s addresses, normalised for matching; `None`
/// when it has none or `r` is labelled restricted (the index keeps no address for them).
pub(crate) fn address_line(home: Option<&Value>, r: &Value) -> Option<String> {
    home.and_then(|ad| ad.get("line")?.as_array()?.first()?.as_str())
        .map(mcr_domain::demographics::normalise_address_line)
        .filter(|l| !l.is_empty() && !mcr_fhir::restricted_label(r))
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Read a source `Patient`. `None` when it has no usable id.
pub fn parse_patient(source: &SourceId, r: &Value) -> Option<SourcePatient> {
    if mcr_fhir::resource_type(r) != Some("Patient") {
        return None;
    }
    let local_id = mcr_fhir::resource_id(r)?.to_owned();
    let nhs_number = r
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(NhsNumber::SYSTEM))
        .find_map(|i| NhsNumber::parse(i.get("value")?.as_str()?).ok());
    let name = r.get("name").and_then(Value::as_array).and_then(|names| {
        names
            .iter()
            .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
            .or_else(|| names.first())
    });
    let family = name
        .and_then(|n| n.get("family"))
        .and_then(Value::as_str)
        .map(|f| clip(f.trim(), 100))
        .unwrap_or_default();
    let given = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .take(4)
                .filter_map(Value::as_str)
                .map(|s| clip(s.trim(), 60))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let birth_date = r
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let gender = r
        .get("gender")
        .and_then(Value::as_str)
        .filter(|g| matches!(*g, "male" | "female" | "other" | "unknown"))
        .map(str::to_owned);
    // The first address with a postcode (or the first address): its postcode and first line.
    let home = r.get("address").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .find(|ad| ad.get("postalCode").and_then(Value::as_str).is_some())
            .or_else(|| a.first())
    });
    let postcode = home
        .and_then(|ad| ad.get("postalCode")?.as_str())
        .map(|p| clip(p.trim(), 10));
    let address = address_line(home, r);
    let gp_practice = r
        .get("generalPractitioner")
        .and_then(Value::as_array)
        .and_then(|g| {
            g.iter()
                .find_map(|ref_| ref_.get("identifier")?.get("value")?.as_str())
        })
        .and_then(|c| mcr_domain::OdsCode::parse(c).ok())
        .map(|c| c.to_string());
    let last_updated = mcr_fhir::str_at(r, &["meta", "lastUpdated"])
        .filter(|s| DateTime::parse_from_rfc3339(s).is_ok())
        .map(str::to_owned);
    Some(SourcePatient {
        source: source.clone(),
        local_id,
        nhs_number,
        family,
        given,
        birth_date,
        gender,
        postcode,
        address,
        gp_practice,
        last_updated,
    })
}

impl SourcePatient {
    /// The record's key: its source and local id.
    pub fn key(&self) -> mcr_store::RecordKey {
        (self.source.clone(), self.local_id.clone())
    }

    /// The demographics in the form matching compares.
    pub fn prepared(&self) -> crate::matching::Prepared {
        crate::matching::Prepared::new(
            &self.family,
            &self.given,
            self.birth_date,
            self.gender.as_deref(),
            self.postcode.as_deref(),
            self.nhs_number.clone(),
        )
        .with_address(self.address.as_deref())
    }

    /// A review candidate pairing this record with an index patient.
    pub(crate) fn candidate(
        &self,
        nhs: &NhsNumber,
        kind: &str,
        scored: &crate::matching::Scored,
        guard: Option<&str>,
        now: DateTime<Utc>,
    ) -> mcr_store::MatchCandidateRow {
        mcr_store::MatchCandidateRow {
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            nhs_number: nhs.clone(),
            kind: kind.to_owned(),
            score: (scored.weight * 100.0).round() / 100.0,
            agreement: scored.agreement.to_string(),
            guard: guard
                .map(str::to_owned)
                .or_else(|| scored.guard.map(|g| g.code().to_owned())),
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date,
            gender: self.gender.clone(),
            postcode: self.postcode.clone(),
            found_at: now,
        }
    }

    pub(crate) fn unmatched(
        &self,
        reason: &str,
        candidates: usize,
        now: DateTime<Utc>,
    ) -> mcr_store::UnmatchedRecord {
        mcr_store::UnmatchedRecord {
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            reason: reason.to_owned(),
            candidates: u32::try_from(candidates).unwrap_or(u32::MAX),
            seen_at: now,
        }
    }

    /// The index entry this record gives. The sync rejects records without a birth date
    /// before this (the index needs one).
    pub(crate) fn indexed(&self, nhs: NhsNumber, now: DateTime<Utc>) -> IndexedPatient {
        IndexedPatient {
            nhs_number: nhs,
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date.unwrap_or(NaiveDate::MIN),
            gender: self.gender.clone(),
            postcode: self.postcode.clone(),
            address: self.address.clone(),
            gp_practice: self.gp_practice.clone(),
            updated_at: now,
        }
    }

    pub(crate) fn link(
        &self,
        nhs: NhsNumber,
        method: LinkMethod,
        now: DateTime<Utc>,
    ) -> SourceLink {
        SourceLink {
            nhs_number: nhs,
            source: self.source.clone(),
            local_id: self.local_id.clone(),
            method,
            family: self.family.clone(),
            given: self.given.clone(),
            birth_date: self.birth_date,
            postcode: self.postcode.clone(),
            linked_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_uk_core_patient() {
        let r = json!({"resourceType": "Patient", "id": "GP-1",
            "meta": {"lastUpdated": "2026-01-01T10:00:00Z"},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
            "name": [{"use": "official", "family": "Smith", "given": ["Jane", "Ann"]}],
            "birthDate": "1970-02-03", "gender": "female",
            "address": [{"postalCode": "SG1 2AB"}],
            "generalPractitioner": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "E82001"}}]});
        let p = parse_patient(&SourceId::parse("gp").unwrap(), &r).unwrap();
        assert_eq!(p.nhs_number.unwrap().as_str(), "9434765919");
        assert_eq!(p.given, "Jane Ann");
        assert_eq!(p.postcode.as_deref(), Some("SG1 2AB"));
        assert_eq!(p.gp_practice.as_deref(), Some("E82001"));
    }

    #[test]
    fn an_invalid_nhs_number_is_treated_as_absent() {
        let r = json!({"resourceType": "Patient", "id": "X1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]});
        let p = parse_patient(&SourceId::parse("gp").unwrap(), &r).unwrap();
        assert_eq!(p.nhs_number, None);
        assert!(parse_patient(
            &SourceId::parse("gp").unwrap(),
            &json!({"resourceType": "Patient"})
        )
        .is_none());
    }
}
