//! The HL7 v2 ADT listener: how hospital, community and mental health systems tell My Care
//! Record that a patient was admitted, transferred, discharged, registered for an attendance,
//! pre-admitted, merged, or that one of those was cancelled.
//!
//! It owns the MLLP framing ([`listener`]), a small strict parser of HL7 v2 text ([`parse`]),
//! what an ADT message means for care relationships and the ACK that answers it ([`adt`]).
//! Each message is answered: AA when applied, AE (an error, with the reason) or AR (rejected:
//! a version before 2.4, a type not taken, a sender not allowed, a frame too large or cut
//! short). Applying is the gateway's use case ([`mcr_gateway::Gateway::record_care_event`]),
//! which audits every accepted message; a message not applied is kept for review
//! ([`mcr_gateway::Gateway::hold_feed_message`]).
//!
//! It must never keep or log clinical content (a diagnosis, a name, free text): only the NHS
//! number, the organisation, the ward/service codes, the visit number and the times reach the
//! gateway, and a held message keeps only its envelope and the reason.

pub mod adt;
pub mod listener;
pub mod parse;

pub use adt::{ack, interpret, timestamp, AckCode, AdtMessage, Envelope, Interpreted, Refusal};
pub use listener::{
    serve, AdtListener, Counts, ListenError, ListenerConfig, SenderConfig, Transport,
};
