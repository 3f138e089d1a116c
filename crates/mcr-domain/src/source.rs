use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The short name of a configured source system, e.g. `gp`, `acute`. Lower-case letters,
/// digits and `-`, at most 32 characters, so it is safe in URLs, logs and HTML ids. Held
/// shared: every item a source sends names it, and a copy is a count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a source id is 1 to 32 lower-case letters, digits or `-`; got `{0}`")]
pub struct SourceIdError(String);

impl SourceId {
    pub fn parse(s: &str) -> Result<Self, SourceIdError> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(SourceIdError(s.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SourceId {
    type Error = SourceIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SourceId> for String {
    fn from(value: SourceId) -> Self {
        value.0.as_ref().to_owned()
    }
}
