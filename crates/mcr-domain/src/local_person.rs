use serde::{Deserialize, Serialize};
use std::fmt;

/// The identifier the region gives an index person it made from a source record that carries
/// no NHS number and matched nobody (a local identity).
///
/// It can never be taken for an NHS number: it is written `L` and nine digits (`L000000042`),
/// which [`crate::NhsNumber::parse`] refuses, it has its own FHIR identifier system
/// ([`LocalPersonId::SYSTEM`]), and it is its own type, so nothing keyed by an NHS number (an
/// opt-out, a permission, a care event, a record view) can be given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalPersonId(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a local person id is `L` and nine digits (L000000042)")]
pub struct LocalPersonIdError;

impl LocalPersonId {
    /// FHIR identifier system for local identities (never `https://fhir.nhs.uk/Id/nhs-number`).
    pub const SYSTEM: &'static str = "https://mycarerecord.example/Id/local-person";

    /// The id with this sequence number (the store assigns them: 1, 2, …).
    pub fn from_seq(seq: i64) -> Result<Self, LocalPersonIdError> {
        if (1..=999_999_999).contains(&seq) {
            Ok(Self(seq))
        } else {
            Err(LocalPersonIdError)
        }
    }

    /// Accepts `L000000042` (and a lower-case `l`).
    pub fn parse(input: &str) -> Result<Self, LocalPersonIdError> {
        let rest = input
            .trim()
            .strip_prefix(['L', 'l'])
            .ok_or(LocalPersonIdError)?;
        if rest.len() != 9 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LocalPersonIdError);
        }
        Self::from_seq(rest.parse().map_err(|_| LocalPersonIdError)?)
    }

    /// The store's sequence number.
    pub fn seq(self) -> i64 {
        self.0
    }
}

impl fmt::Display for LocalPersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{:09}", self.0)
    }
}

impl TryFrom<String> for LocalPersonId {
    type Error = LocalPersonIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LocalPersonId> for String {
    fn from(id: LocalPersonId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NhsNumber;

    #[test]
    fn a_local_id_is_never_an_nhs_number() {
        for seq in [1, 42, 943_476_591, 999_999_999] {
            let id = LocalPersonId::from_seq(seq).expect("in range");
            let text = id.to_string();
            assert_eq!(text.len(), 10);
            assert!(
                NhsNumber::parse(&text).is_err(),
                "{text} parsed as an NHS number"
            );
            assert!(NhsNumber::parse(&text[1..]).is_err() || text[1..].len() != 10);
            assert_eq!(LocalPersonId::parse(&text), Ok(id));
        }
    }

    #[test]
    fn an_nhs_number_is_never_a_local_id() {
        assert!(LocalPersonId::parse("9434765919").is_err());
        assert!(LocalPersonId::parse("L12345678").is_err());
        assert!(LocalPersonId::parse("L0000000001").is_err());
        assert!(LocalPersonId::parse("L000000000").is_err());
        assert!(LocalPersonId::from_seq(0).is_err());
    }
}
