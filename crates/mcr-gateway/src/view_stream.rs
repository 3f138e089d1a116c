//! Viewing a record as its sources answer: the record page's use case.
//!
//! The same path as [`Gateway::view_record`] (the same access phase, filter, fetch and merge),
//! cut so that a page can be sent in parts. The decision is audited (with the watch's flags)
//! before [`Gateway::view_record_streamed`] returns, so before the page's first byte; the
//! sources are asked meanwhile. Then each section is handed over once every source that may
//! hold it ([`mcr_federation::Federation::may_hold`]) has answered or passed its deadline,
//! merged from all of them as the whole record would be, its items taken out of the answers
//! (never copied, never merged twice); last, the whole view (who answered, counts, warnings),
//! with the audit record of what each source gave (`view-record-answered`). `$everything`
//! keeps [`Gateway::view_record`]: one audit record, sent whole.

use crate::view::{source_audit, Access, Granted, Phases, View, LOCATION_WITHHELD};
use crate::{Gateway, GatewayError, RequestContext};
use futures::StreamExt;
use mcr_audit::{Action, AuditEvent, Outcome};
use mcr_domain::{DataClass, MergedRecord, NhsNumber, Section};
use mcr_federation::{Location, SignedAhead, SourceFetch};
use mcr_policy::{Basis, Decision, Grant, ResourceFilter};
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tracing::Instrument;

/// A permitted view whose record is on its way: what may be said at once, and what arrives.
#[derive(Debug)]
pub struct StreamedView {
    pub opening: Opening,
    /// Sections as they settle, each once, then the whole view ([`Arrival::Complete`], always
    /// last; the channel closes after it). Every section is handed over before the whole view
    /// (once every source has answered, every section is settled). Closed without it only if
    /// the gateway's task failed.
    pub arrivals: mpsc::Receiver<Arrival>,
}

/// What is known once the view is decided and audited, before any source has answered.
#[derive(Debug, Clone)]
pub struct Opening {
    pub nhs: NhsNumber,
    /// Whose record this is, as the patient index holds it; never the address (a source may
    /// yet say the patient is restricted). `None` when the grant does not cover demographics.
    pub patient: Option<IndexedName>,
    pub basis: Basis,
    /// Data classes this view was granted.
    pub classes: BTreeSet<DataClass>,
    /// The organisations being asked, in the view's order of sources.
    pub asking: Vec<String>,
}

/// The index's name, date of birth and gender of the patient.
#[derive(Debug, Clone)]
pub struct IndexedName {
    pub family: String,
    /// Given names, space separated.
    pub given: String,
    pub birth_date: chrono::NaiveDate,
    pub gender: Option<String>,
}

/// What arrives after the opening.
#[derive(Debug)]
pub enum Arrival {
    /// These sections are settled: every source that may hold them has answered or passed its
    /// deadline. `record` holds their items (merged from every source, as the whole record's
    /// will be) and the status of each source that has answered so far.
    Sections {
        sections: BTreeSet<Section>,
        record: MergedRecord,
    },
    /// Every source has answered: the whole view (banner, each source's status and counts,
    /// warnings), and whether the audit record of what each source gave was written. Its
    /// sections hold only what no [`Arrival::Sections`] held: items that reached a section
    /// after it was handed over (a source sending a type it was not asked for), to be said
    /// as late. The items handed over are counted in each source's outcome, not held again.
    Complete {
        view: Box<View>,
        audited: Result<(), GatewayError>,
    },
}

#[derive(Debug)]
pub enum StreamOutcome {
    /// Permitted and audited: the opening may be sent now, the rest as it arrives.
    Opened(StreamedView),
    /// Not permitted now (already audited).
    NotPermitted(Decision),
}

impl Gateway {
    /// View a patient's record for a page sent as the sources answer: decide, audit the
    /// decision, then hand over each section once every source that may hold it has answered,
    /// and last the whole view. Nothing about the patient is returned before the decision's
    /// audit record is committed; if it cannot be, the sources' answers are dropped unread.
    pub async fn view_record_streamed(
        &self,
        ctx: &RequestContext,
        nhs: &NhsNumber,
    ) -> Result<StreamOutcome, GatewayError> {
        let span = tracing::info_span!("view-record", correlation = %ctx.correlation_id);
        async {
            let mut phases = Phases::start();
            let mut timer = crate::metrics::ViewTimer::start(self.metrics.clone());
            let access = self
                .decide_view(ctx, nhs)
                .instrument(Phases::span("access"))
                .await;
            let Granted {
                grant,
                locations,
                watched,
                patient,
                restricted,
                reviews,
                ..
            } = match access {
                Ok(Access::Granted(granted)) => *granted,
                Ok(Access::Refused(decision)) => {
                    timer.outcome(decision.code());
                    return Ok(StreamOutcome::NotPermitted(decision));
                }
                Err((outcome, e)) => {
                    timer.outcome(outcome);
                    return Err(e);
                }
            };
            phases.end("access");

            // A restricted patient's GP practices are never named, from the first part on.
            let withhold = Withhold {
                restricted,
                practices: self.practices_of(&locations),
            };
            let opening = Opening {
                nhs: nhs.clone(),
                patient: grant.allows(DataClass::Demographics).then(|| IndexedName {
                    family: patient.family.clone(),
                    given: patient.given.clone(),
                    birth_date: patient.birth_date,
                    gender: patient.gender.clone(),
                }),
                basis: grant.basis().clone(),
                classes: grant.data_classes().clone(),
                asking: locations
                    .iter()
                    .map(|l| {
                        self.federation.source(&l.source).map_or_else(
                            || l.source.to_string(),
                            |s| {
                                let org = &s.config().organisation;
                                if restricted && withhold.practices.contains(&org.code) {
                                    mcr_domain::PRACTICE_WITHHELD.to_owned()
                                } else {
                                    org.name.clone()
                                }
                            },
                        )
                    })
                    .collect(),
            };
            let mut decided = self.event(ctx, Action::ViewRecord, Some(nhs.as_str()));
            decided.outcome = Outcome::Permit;
            decided.basis = Some(grant.basis().code().to_owned());
            decided.detail = Some(grant.basis().describe());
            let answered = self.event(ctx, Action::ViewRecordAnswered, Some(nhs.as_str()));

            // The sources are asked now; what they send reaches the caller only through the
            // channel, which is handed over once the decision's audit record is committed.
            let (tx, arrivals) = mpsc::channel(Section::ALL.len() + 1);
            let task = tokio::spawn(
                self.clone()
                    .answer(
                        Decided {
                            grant,
                            locations,
                            withhold,
                            reviews,
                        },
                        phases,
                        timer,
                        answered,
                        tx,
                    )
                    .instrument(tracing::Span::current()),
            );
            let (committed, ()) = tokio::join!(self.audit(&decided), self.write_flags(&watched));
            if let Err(e) = committed {
                task.abort();
                return Err(e);
            }
            Ok(StreamOutcome::Opened(StreamedView { opening, arrivals }))
        }
        .instrument(span)
        .await
    }

    /// Ask every located source, hand over each section as it settles, then merge what is left
    /// of the whole record (the counts, statuses and warnings, and any item that came late),
    /// audit what each source gave, and hand over the whole view.
    async fn answer(
        self,
        decided: Decided,
        mut phases: Phases,
        mut timer: crate::metrics::ViewTimer,
        mut event: AuditEvent,
        tx: mpsc::Sender<Arrival>,
    ) {
        let Decided {
            grant,
            locations,
            withhold,
            reviews,
        } = decided;
        let filter = grant.filter(&self.policy, self.agreements(), self.clock.now());
        let nhs = grant.patient().clone();
        // The sources that may hold each section, by their place in `locations`.
        let holders: Vec<(Section, Vec<usize>)> = Section::ALL
            .iter()
            .map(|s| {
                let at = locations.iter().enumerate();
                let may = at.filter(|(_, l)| self.federation.may_hold(&grant, l, *s));
                (*s, may.map(|(i, _)| i).collect())
            })
            .collect();
        let mut answers: Vec<Option<SourceFetch>> = locations.iter().map(|_| None).collect();
        let mut settled = BTreeSet::new();
        let fetch = async {
            let each = self.federation.fetch_each(
                &filter,
                &locations,
                phases.began,
                SignedAhead::default(),
            );
            let mut each = std::pin::pin!(each);
            // Sections no source may hold (not granted, or no source is asked for them).
            settle(
                &filter,
                &holders,
                &mut answers,
                &mut settled,
                &withhold,
                &tx,
            )
            .await;
            while let Some((i, fetched)) = each.next().await {
                if let Some(slot) = answers.get_mut(i) {
                    *slot = Some(fetched);
                }
                settle(
                    &filter,
                    &holders,
                    &mut answers,
                    &mut settled,
                    &withhold,
                    &tx,
                )
                .await;
            }
        };
        fetch.instrument(Phases::span("fetch")).await;
        phases.end("fetch");
        let fetches: Vec<SourceFetch> = answers.into_iter().flatten().collect();
        // Restricted: as the index said with the decision's inputs, or as a source labels its
        // Patient now.
        let restricted = withhold.applies(fetches.iter());
        // Labelled by a source now: the index is told, so the next view decides with it.
        if restricted && !withhold.restricted && self.remember_restricted(&nhs).await.is_err() {
            tracing::error!(correlation = %event.correlation_id, "a source's restricted label could not be written to the index");
        }

        event.at = self.clock.now();
        event.outcome = Outcome::Permit;
        event.basis = Some(grant.basis().code().to_owned());
        event.detail = Some(if restricted {
            format!("{}; {LOCATION_WITHHELD}", grant.basis().describe())
        } else {
            grant.basis().describe()
        });
        event.sources = fetches.iter().map(source_audit).collect();
        let timings = self.metrics.sources(&fetches);
        // The audit record commits while the record is merged.
        let (audited, mut record) = tokio::join!(
            self.audit(&event).instrument(Phases::span("audit")),
            async { Phases::span("merge").in_scope(|| mcr_federation::merge(&filter, fetches)) }
        );
        if restricted {
            record.withhold_location();
            record.withhold_practice_names(&withhold.practices);
        }
        phases.end("merge");
        timer.outcome("permit");
        drop(timer);
        let view = View {
            basis: grant.basis().clone(),
            classes: grant.data_classes().clone(),
            record,
            timings,
            phases: phases.done,
            identity_warnings: self.identity_warnings(&reviews),
        };
        // A reader who has gone away is not an error: the answers are audited either way.
        let _ = tx
            .send(Arrival::Complete {
                view: Box::new(view),
                audited: audited.map(|_| ()),
            })
            .await;
    }
}

/// Hand over the sections that every source that may hold them has now answered for, their
/// items taken out of the answers (never copied): each section is handed over once.
async fn settle(
    filter: &ResourceFilter<'_>,
    holders: &[(Section, Vec<usize>)],
    answers: &mut [Option<SourceFetch>],
    settled: &mut BTreeSet<Section>,
    withhold: &Withhold,
    tx: &mpsc::Sender<Arrival>,
) {
    let newly: BTreeSet<Section> = holders
        .iter()
        .filter(|(s, at)| {
            !settled.contains(s)
                && at
                    .iter()
                    .all(|i| answers.get(*i).is_some_and(Option::is_some))
        })
        .map(|(s, _)| *s)
        .collect();
    if newly.is_empty() {
        return;
    }
    let mut so_far: Vec<&mut SourceFetch> = answers.iter_mut().flatten().collect();
    let mut record = mcr_federation::take_sections(filter, &mut so_far, &newly);
    if withhold.applies(so_far.iter().map(|f| &**f)) {
        record.withhold_practice_names(&withhold.practices);
    }
    settled.extend(newly.iter().copied());
    let _ = tx
        .send(Arrival::Sections {
            sections: newly,
            record,
        })
        .await;
}

/// A granted streamed view: what may be seen, where to ask, and what to withhold.
struct Decided {
    grant: Grant,
    locations: Vec<Location>,
    withhold: Withhold,
    /// The matching queue's pairs naming the patient, said in the finished view.
    reviews: Vec<mcr_store::MatchCandidateRow>,
}

/// What a restricted patient's view withholds: their GP practices' names (and, in the whole
/// record, their location).
struct Withhold {
    /// The index says the patient is restricted.
    restricted: bool,
    practices: BTreeSet<mcr_domain::OdsCode>,
}

impl Withhold {
    /// Restricted, as the index says or as a source that has answered labels its Patient.
    fn applies<'f>(&self, answered: impl Iterator<Item = &'f SourceFetch>) -> bool {
        self.restricted
            || answered
                .into_iter()
                .any(SourceFetch::labels_patient_restricted)
    }
}
