//! The vocabulary of My Care Record: types only, used by every other crate.
//!
//! This crate owns what a value *is* (an NHS number with a valid check digit, an organisation of a
//! known kind, a signed-in user, the merged record) and makes invalid values impossible to hold.
//! It must never do I/O, read the clock directly, or know about HTTP, SQL or FHIR transport.

mod clock;
pub mod demographics;
mod local_person;
mod nhs_number;
mod org;
mod principal;
mod record;
mod source;

pub use clock::{Clock, FixedClock, SystemClock};
pub use local_person::{LocalPersonId, LocalPersonIdError};
pub use nhs_number::{NhsNumber, NhsNumberError};
pub use org::{OdsCode, OdsCodeError, OrgKind, Organisation};
pub use principal::{DataClass, Principal, Purpose, Role};
pub use record::{
    FailureReason, ItemSource, MergedRecord, NotShown, RecordItem, Section, SourceJson,
    SourceOutcome, SourceStatus, UnsearchableForm, PRACTICE_WITHHELD,
};
pub use source::{SourceId, SourceIdError};
