//! Federation: ask every source that holds a patient at once, each with a deadline and a size
//! cap, and merge what comes back into one record with the source of every item.
//!
//! The only way to fetch a patient's clinical data is [`Federation::fetch_record`], which
//! takes a [`mcr_policy::Grant`]: no grant, no request. Only the resource types of the data
//! classes in the grant are asked for, and items outside it are dropped before merge.
//! [`Federation::patient_feed`] reads `Patient` resources only, for the patient index.
//!
//! This crate must never persist anything it receives, nor log clinical content or patient
//! identifiers; a source's answer is untrusted input (slow, wrong, huge or hostile) and a
//! failing source becomes a [`FailureReason`] in the record, never an error of the whole view.

pub mod capabilities;
mod client;
pub mod document;
pub mod gpconnect;
pub mod identity;
mod merge;
mod search_plan;
mod sign_ahead;
mod transport;

pub use client::{
    Ask, FederationConfig, Fetched, HttpSource, IdentifierSearch, Location, OtherForm,
    PatientSearch, Source, SourceConfig, SourceKind,
};
pub use identity::{IdentitySigner, Requester};
pub use merge::{
    digest, merge, take_sections, Digest, Digested, Received, SourceFetch, SourceMeta,
};
pub use search_plan::Asking;
pub use sign_ahead::SignedAhead;

use futures::future::join_all;
use mcr_domain::{DataClass, FailureReason, SourceId};
use mcr_policy::{Grant, ResourceFilter};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The configured sources and how to ask them.
#[derive(Debug, Clone)]
pub struct Federation {
    sources: BTreeMap<SourceId, Arc<dyn Source>>,
    order: Vec<SourceId>,
    config: FederationConfig,
    /// What each source's CapabilityStatement says, as last read.
    discovery: BTreeMap<SourceId, Arc<capabilities::Discovery>>,
}

/// A patient's address at another FHIR source of the region (see
/// [`mcr_fhir::PatientAt`]), owned.
struct Elsewhere {
    /// The source's base URL, without a trailing slash.
    base: String,
    local_id: String,
}

impl Elsewhere {
    fn at(&self) -> mcr_fhir::PatientAt<'_> {
        mcr_fhir::PatientAt {
            base: &self.base,
            local_id: &self.local_id,
        }
    }

    /// `{base}/Patient/{id}`, as a server writes it in an absolute reference.
    fn address(&self) -> String {
        format!("{}/Patient/{}", self.base, self.local_id)
    }
}

/// How long past its deadline a source that does not stop by itself is waited for.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// The resource types that carry each data class (the table is `mcr-fhir`'s).
pub use mcr_fhir::resource_types_for;

impl Federation {
    pub fn new(sources: Vec<Arc<dyn Source>>, config: FederationConfig) -> Self {
        let order = sources.iter().map(|s| s.id().clone()).collect();
        let discovery = sources
            .iter()
            .map(|s| (s.id().clone(), Arc::default()))
            .collect();
        let sources = sources.into_iter().map(|s| (s.id().clone(), s)).collect();
        Self {
            sources,
            order,
            config,
            discovery,
        }
    }

    /// Read every source's CapabilityStatement now, all at once, each within the view
    /// deadline; what each said (or why not) is kept for the views and the operators. Returns
    /// how many were read.
    pub async fn discover(&self, now: chrono::DateTime<chrono::Utc>) -> usize {
        let asks = self.sources().map(|source| async move {
            let outcome = source.capability_statement(self.config.deadline).await?;
            let read = match outcome {
                Ok(statement) => capabilities::Capabilities::read(&statement),
                Err(reason) => Err(capabilities::failure_words(&reason)),
            };
            match &read {
                Err(why) => {
                    tracing::warn!(source = %source.id(), why = %why, "capabilities not read")
                }
                Ok(c) if c.unreadable_entries > 0 => tracing::warn!(
                    source = %source.id(),
                    passed_over = c.unreadable_entries,
                    "capability statement entries without a resource type name passed over"
                ),
                Ok(_) => {}
            }
            let ok = read.is_ok();
            self.discovery.get(source.id())?.record(read, now);
            Some(ok)
        });
        join_all(asks)
            .await
            .into_iter()
            .flatten()
            .filter(|ok| *ok)
            .count()
    }

    /// Whether `source` is asked for `resource_type` (by a view, or by the index's care-event
    /// feed): its configured types override what it says; without them, what its
    /// CapabilityStatement lists as searchable by patient (every type, until it has said).
    pub fn asks(&self, source: &dyn Source, resource_type: &str) -> bool {
        let configured = &source.config().resource_types;
        if configured.is_empty() {
            self.discovery
                .get(source.id())
                .and_then(|d| d.answers(resource_type))
                .unwrap_or(true)
        } else {
            configured.iter().any(|t| t == resource_type)
        }
    }

    /// Each source in configuration order with what its CapabilityStatement said, for the
    /// operators' page and `/metrics`; `None` for a source that has none (GP Connect).
    pub fn discovered(&self) -> Vec<(&Arc<dyn Source>, capabilities::Discovered)> {
        self.sources()
            .filter_map(|s| Some((s, self.discovery.get(s.id())?.snapshot())))
            .collect()
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    /// Sources in configuration order.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<dyn Source>> {
        self.order.iter().filter_map(|id| self.sources.get(id))
    }

    pub fn source(&self, id: &SourceId) -> Option<&Arc<dyn Source>> {
        self.sources.get(id)
    }

    /// Ask every located source at once for the data classes of `filter`'s grant, each bounded
    /// by its deadline (the source's own `deadline_ms`, or the federation's) counted from
    /// `started` (when the view began: the clinician's wait, not the sources' alone); what a
    /// source sent by then is kept, cut short ([`SourceFetch::cut_short`]). Each resource is digested as it arrives ([`digest`]), shown or not
    /// as `filter` says. Returns one
    /// [`SourceFetch`] per location, in the order given; a source that fails or is too slow is
    /// reported as such and never delays the others. `ahead`'s identity tokens are sent if
    /// they name the grant's requester (pass `SignedAhead::default()` for none); every other
    /// source's token is signed here.
    pub async fn fetch_record(
        &self,
        filter: &ResourceFilter<'_>,
        locations: &[Location],
        started: Instant,
        ahead: SignedAhead<'_>,
    ) -> Vec<SourceFetch> {
        join_all(self.asks_for(filter, locations, started, ahead)).await
    }

    /// As [`Federation::fetch_record`], but each source's answer is handed over as soon as
    /// it is in (or its deadline has passed), with its place in `locations`: for a page that
    /// shows each part of the record once every source that may hold it has answered.
    pub fn fetch_each<'a>(
        &'a self,
        filter: &'a ResourceFilter<'a>,
        locations: &'a [Location],
        started: Instant,
        ahead: SignedAhead<'_>,
    ) -> impl futures::Stream<Item = (usize, SourceFetch)> + 'a {
        self.asks_for(filter, locations, started, ahead)
            .into_iter()
            .enumerate()
            .map(|(i, ask)| async move { (i, ask.await) })
            .collect::<futures::stream::FuturesUnordered<_>>()
    }

    /// Whether the source at `at` may hold items of `section` in a view under `grant`: it is
    /// asked for a type that carries one of the section's granted classes (a source whose
    /// capabilities are not known is asked for every type, so it may). A source that is not
    /// configured holds nothing.
    pub fn may_hold(&self, grant: &Grant, at: &Location, section: mcr_domain::Section) -> bool {
        let Some(source) = self.sources.get(&at.source) else {
            return false;
        };
        grant
            .data_classes()
            .iter()
            .filter(|c| mcr_domain::Section::for_class(**c) == Some(section))
            .flat_map(|c| resource_types_for(*c))
            .any(|t| self.asks(&**source, t))
    }

    /// The types a view asks `source` for, of the `types` its grant covers (`Patient`
    /// always): those the source is asked for ([`Federation::asks`]), and, when the grant
    /// covers any `clinical` data, the types configured that the record has no place for, to
    /// be counted and named as not shown: never ignored because the gateway did not ask.
    fn wanted<'a>(
        &self,
        source: &'a dyn Source,
        types: &[&'a str],
        clinical: bool,
    ) -> Vec<&'a str> {
        let mut wanted: Vec<&str> = types
            .iter()
            .copied()
            .filter(|t| *t == "Patient" || self.asks(source, t))
            .collect();
        if clinical {
            for t in &source.config().resource_types {
                if !mcr_fhir::is_shown_type(t) && !wanted.contains(&t.as_str()) {
                    wanted.push(t);
                }
            }
        }
        wanted
    }

    /// How views ask `source` for the items that name a patient, and which forms of patient
    /// reference they cannot ask it for, over every type a view granted every data class asks
    /// it for (a role granted fewer may be asked fewer types, and its view names no more
    /// forms): by the plan each view follows, for the operators' page and `/metrics`.
    pub fn asking(&self, source: &dyn Source) -> Asking {
        let mut types: Vec<&'static str> = Vec::new();
        for class in DataClass::ALL {
            for t in resource_types_for(class) {
                if !types.contains(t) {
                    types.push(t);
                }
            }
        }
        let wanted = self.wanted(source, &types, true);
        search_plan::asking(
            source.config(),
            self.discovery.get(source.id()).map(|d| &**d),
            &wanted,
        )
    }

    /// One request per located source, each bounded by its deadline (see
    /// [`Federation::fetch_record`]), not yet started.
    fn asks_for<'a>(
        &'a self,
        filter: &'a ResourceFilter<'a>,
        locations: &'a [Location],
        started: Instant,
        ahead: SignedAhead<'_>,
    ) -> Vec<impl std::future::Future<Output = SourceFetch> + 'a> {
        let grant = filter.grant();
        let mut tokens = ahead.for_grant(grant);
        let mut types: Vec<&'static str> = Vec::new();
        for class in grant.data_classes() {
            for t in resource_types_for(*class) {
                if !types.contains(t) {
                    types.push(t);
                }
            }
        }
        if !types.contains(&"Patient") {
            // Demographics are needed to show whose record this is, even to roles that may
            // see nothing else; the merge drops them if the grant does not include them.
            types.push("Patient");
        }
        let clinical = grant
            .data_classes()
            .iter()
            .any(|c| !matches!(c, DataClass::Demographics | DataClass::CareTeam));
        locations
            .iter()
            .map(|loc| {
                let source = self.sources.get(&loc.source).cloned();
                let types = types.clone();
                let signed = tokens.remove(&loc.source);
                async move {
                    let asked = Instant::now();
                    let Some(source) = source else {
                        return SourceFetch::failed_unknown(&loc.source);
                    };
                    let config = source.config();
                    // Counted from the start of the view: the clinician's wait.
                    let deadline = config
                        .deadline_ms
                        .map_or(self.config.deadline, Duration::from_millis);
                    let wanted = self.wanted(&*source, &types, clinical);
                    // Items naming the patient in other forms than `Patient/{id}` are asked
                    // for where the source can be asked; the forms it cannot are said.
                    let (other_forms, unsearchable) = search_plan::other_forms(
                        config,
                        self.discovery.get(source.id()).map(|d| &**d),
                        &wanted,
                    );
                    let elsewhere = self.addresses_elsewhere(loc, locations);
                    // Asked for only beside the source's own address, where it is asked by one.
                    let addresses = if other_forms.is_empty() {
                        Vec::new()
                    } else {
                        elsewhere.iter().map(Elsewhere::address).collect()
                    };
                    let ask = Ask {
                        signed,
                        until: tokio::time::Instant::from_std(started + deadline),
                        deadline,
                        other_forms,
                        elsewhere: addresses,
                    };
                    let elsewhere: Vec<_> = elsewhere.iter().map(Elsewhere::at).collect();
                    let meta = SourceMeta {
                        source: source.id(),
                        org_code: &config.organisation.code,
                        org_name: &config.organisation.name,
                        base_url: config.base_url.as_str(),
                        local_id: &loc.local_id,
                        elsewhere: &elsewhere,
                    };
                    let digest = |r: Received<'_>| digest(filter, &meta, r);
                    // A source stops at its deadline and hands back what arrived; one that does
                    // not is stopped a moment later, with nothing.
                    let result = tokio::time::timeout_at(
                        ask.until + DEADLINE_GRACE,
                        source.fetch_at(grant, loc, &wanted, &digest, ask),
                    )
                    .await;
                    let fetched = match result {
                        Ok(fetched) => fetched,
                        Err(_) => Err(FailureReason::Timeout {
                            after_ms: millis(deadline),
                        }),
                    };
                    let (outcome, source_ms, warnings, cut_short) = match fetched {
                        Ok(f) => (Ok(f.resources), f.source_ms, f.warnings, f.cut_short),
                        Err(reason) => (Err(reason), None, Vec::new(), None),
                    };
                    SourceFetch {
                        source: source.id().clone(),
                        org_code: config.organisation.code.clone(),
                        org_name: config.organisation.name.clone(),
                        base_url: config.base_url.to_string(),
                        outcome,
                        elapsed_ms: millis(asked.elapsed()),
                        source_ms,
                        warnings,
                        cut_short,
                        unsearchable,
                    }
                }
            })
            .collect()
    }

    /// The patient's addresses at the region's other FHIR R4 sources, from `locations` (all
    /// the index holds for them), for the source at `at`: an item there may name the patient
    /// by one of them.
    fn addresses_elsewhere(&self, at: &Location, locations: &[Location]) -> Vec<Elsewhere> {
        locations
            .iter()
            .filter(|other| other.source != at.source)
            .filter_map(|other| {
                let config = self.sources.get(&other.source)?.config();
                (config.kind == SourceKind::FhirR4).then(|| Elsewhere {
                    base: config.base_url.as_str().trim_end_matches('/').to_owned(),
                    local_id: other.local_id.clone(),
                })
            })
            .collect()
    }

    /// How long one sync of `source` may read it: its own `feed_timeout_secs`, or the
    /// federation's.
    fn feed_timeout(&self, source: &SourceConfig) -> Duration {
        source
            .feed_timeout_secs
            .map_or(self.config.sync_timeout, Duration::from_secs)
    }

    /// Open one document of the patient at `at`: document `id` (a `DocumentReference` id at
    /// that source) is read again and must pass `filter` exactly as it would in a record view
    /// with this filter's grant (tied to this patient, granted, shared, not withheld); then the bytes
    /// its attachment names, at most [`FederationConfig::max_document_bytes`], checked
    /// against its declared type. Bounded by [`FederationConfig::document_deadline`] until
    /// the bytes start arriving.
    pub async fn open_document(
        &self,
        filter: &ResourceFilter<'_>,
        at: &Location,
        locations: &[Location],
        id: &str,
    ) -> Result<document::OpenedDocument, document::DocumentRefusal> {
        let source = self
            .sources
            .get(&at.source)
            .ok_or(document::DocumentRefusal::NotFound)?;
        let config = source.config();
        let elsewhere = self.addresses_elsewhere(at, locations);
        let elsewhere: Vec<_> = elsewhere.iter().map(Elsewhere::at).collect();
        let meta = SourceMeta {
            source: source.id(),
            org_code: &config.organisation.code,
            org_name: &config.organisation.name,
            base_url: config.base_url.as_str(),
            local_id: &at.local_id,
            elsewhere: &elsewhere,
        };
        let check = |r: Received<'_>| digest(filter, &meta, r);
        let deadline = self.config.document_deadline;
        tokio::time::timeout(
            deadline,
            source.open_document(
                filter.grant(),
                at,
                id,
                &check,
                self.config.max_document_bytes,
            ),
        )
        .await
        .map_err(|_| {
            document::DocumentRefusal::Source(FailureReason::Timeout {
                after_ms: millis(deadline),
            })
        })?
    }

    /// Every `Patient` a source holds, or those changed after `since` (an instant as the
    /// source wrote `meta.lastUpdated`), for the patient index, a page at a time into `pages`
    /// as the source sends them. Demographics only. `Ok` once the last page is handed over.
    pub async fn patient_feed(
        &self,
        source: &SourceId,
        since: Option<&str>,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        let s = self
            .sources
            .get(source)
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "not a configured source".into(),
            })?;
        s.patient_feed(since, self.feed_timeout(s.config()), pages)
            .await
    }

    /// A source's care-event metadata of one type (see [`Source::care_event_feed`]).
    pub async fn care_event_feed(
        &self,
        source: &SourceId,
        resource_type: &str,
        from: chrono::NaiveDate,
        pages: tokio::sync::mpsc::Sender<Vec<Value>>,
    ) -> Result<(), FailureReason> {
        let s = self
            .sources
            .get(source)
            .ok_or_else(|| FailureReason::Unreachable {
                detail: "not a configured source".into(),
            })?;
        s.care_event_feed(resource_type, from, self.feed_timeout(s.config()), pages)
            .await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use mcr_domain::{NhsNumber, OdsCode, Purpose, Role};

    fn federation(ids: &[&str]) -> Federation {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let clock = Arc::new(mcr_domain::FixedClock::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000, 0).expect("time"),
        ));
        let signer = Arc::new(
            IdentitySigner::new(
                pkcs8.as_ref(),
                "https://mcr.example",
                OdsCode::parse("RX1").expect("ods"),
                clock,
            )
            .expect("signer"),
        );
        let sources = ids
            .iter()
            .map(|id| {
                let config = SourceConfig {
                    id: SourceId::parse(id).expect("id"),
                    organisation: mcr_domain::Organisation {
                        code: OdsCode::parse("RX2").expect("ods"),
                        name: (*id).to_owned(),
                        kind: mcr_domain::OrgKind::AcuteTrust,
                        member: true,
                        suspended: false,
                    },
                    base_url: url::Url::parse(&format!("https://{id}.example/fhir")).expect("url"),
                    resource_types: vec!["Condition".into()],
                    batch: false,
                    kind: SourceKind::FhirR4,
                    gp_connect: None,
                    deadline_ms: None,
                    feed_timeout_secs: None,
                    patient_search: PatientSearch::default(),
                    identifier_search: Default::default(),
                };
                let source =
                    HttpSource::new(config, reqwest::Client::new(), FederationConfig::default())
                        .with_identity(Arc::clone(&signer));
                Arc::new(source) as Arc<dyn Source>
            })
            .collect();
        Federation::new(sources, FederationConfig::default())
    }

    fn claims(token: &str) -> Value {
        let body = token.split('.').nth(1).expect("a JWS");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .expect("base64url");
        serde_json::from_slice(&json).expect("claims")
    }

    #[test]
    fn a_source_may_hold_a_section_only_if_it_is_asked_for_a_type_that_carries_it() {
        let f = federation(&["gp"]);
        let nhs = NhsNumber::parse("9434765919").expect("nhs");
        let (grant, _) = mcr_testkit::grant(
            &nhs,
            &[
                DataClass::Problems,
                DataClass::Allergies,
                DataClass::Medications,
            ],
        );
        let at = |id: &str| Location {
            source: SourceId::parse(id).expect("id"),
            local_id: "p".into(),
            registered_practice: None,
        };
        use mcr_domain::Section;
        // Configured for Condition alone.
        assert!(f.may_hold(&grant, &at("gp"), Section::Problems));
        assert!(!f.may_hold(&grant, &at("gp"), Section::Allergies));
        let (problems_not_granted, _) = mcr_testkit::grant(&nhs, &[DataClass::Allergies]);
        assert!(
            !f.may_hold(&problems_not_granted, &at("gp"), Section::Problems),
            "a section the grant does not cover is held by no one"
        );
        assert!(!f.may_hold(&grant, &at("elsewhere"), Section::Problems));
    }

    #[test]
    fn tokens_signed_ahead_name_each_source_and_serve_only_the_requester_they_name() {
        let f = federation(&["gp", "acute"]);
        let (nhs, other_nhs) = (
            NhsNumber::parse("9434765919").expect("nhs"),
            NhsNumber::parse("9434765870").expect("nhs"),
        );
        let (org, other_org) = (
            OdsCode::parse("RWH").expect("ods"),
            OdsCode::parse("RX9").expect("ods"),
        );
        let who = Requester {
            user_id: "ae.okafor",
            role: Role::Clinician,
            org_code: &org,
            purpose: Purpose::DirectCare,
            patient: &nhs,
        };
        // Signed while something else is awaited: here a read that takes a few polls.
        let sign_all = || {
            let mut polls = 0;
            let slow_read = std::future::poll_fn(|cx| {
                polls += 1;
                if polls < 5 {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready("read")
                }
            });
            let (read, ahead) = futures::executor::block_on(f.sign_while(who, slow_read));
            assert_eq!(read, "read", "what was awaited is handed back");
            assert_eq!(ahead.tokens.len(), 2, "one token per source");
            ahead
        };

        let tokens = sign_all().for_requester(&who);
        assert_eq!(tokens.len(), 2);
        for id in ["gp", "acute"] {
            let c = claims(&tokens[&SourceId::parse(id).expect("id")]);
            assert_eq!(c["aud"], format!("https://{id}.example/fhir"));
            assert_eq!(c["sub"], "ae.okafor");
            assert_eq!(
                c["requested_record"]["identifier"][0]["value"],
                "9434765919"
            );
            assert_eq!(
                c["requesting_organization"]["identifier"][0]["value"],
                "RWH"
            );
        }

        // A grant to anyone else (another patient, user, role or organisation) gets none.
        for other in [
            Requester {
                patient: &other_nhs,
                ..who
            },
            Requester {
                user_id: "nurse.evans",
                ..who
            },
            Requester {
                role: Role::Nurse,
                ..who
            },
            Requester {
                org_code: &other_org,
                ..who
            },
        ] {
            assert!(sign_all().for_requester(&other).is_empty(), "{other:?}");
        }
        // Nothing signed ahead: nothing to use.
        assert!(SignedAhead::default().for_requester(&who).is_empty());
    }
}
