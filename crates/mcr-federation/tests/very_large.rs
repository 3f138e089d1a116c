//! A very large record (the benchmark's 15,000-resource view, here at a twentieth of the size
//! so the suite stays quick), fetched over real HTTP from the simulated GP, acute and
//! community systems and merged: every item each source holds is in the view or counted, and
//! every item two sources both hold (the generator's own list of copies) is shown once, with
//! both sources, and nothing else is merged.

use mcr_domain::{DataClass, MergedRecord, SourceStatus};
use mcr_federation::{
    Federation, FederationConfig, HttpSource, Location, SignedAhead, Source, SourceConfig,
    SourceKind,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCES: [&str; 3] = ["gp", "acute", "community"];

struct Rig {
    region: mcr_synth::Region,
    nhs: mcr_domain::NhsNumber,
    _handles: Vec<mcr_sources::SourceHandle>,
    /// Source id → base URL.
    bases: HashMap<&'static str, String>,
    federation: Federation,
}

async fn rig(scale: usize) -> Rig {
    let region = mcr_synth::generate_with(
        &mcr_synth::SynthConfig {
            patients: 300,
            ..Default::default()
        },
        mcr_synth::VeryLarge { patients: 1, scale },
    );
    let nhs = region.samples.very_large[0].clone();
    let limits = FederationConfig {
        deadline: Duration::from_secs(60),
        max_bytes_per_source: 64 * 1024 * 1024,
        page_size: 500,
        max_pages: 1000,
        ..FederationConfig::default()
    };
    let mut handles = Vec::new();
    let mut bases = HashMap::new();
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    for id in SOURCES {
        let slice = region.source(id).expect("source").clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = mcr_sources::serve_with(
            slice.clone(),
            listener,
            mcr_sources::Behaviour::default(),
            mcr_sources::SourceOptions::default(),
        )
        .await
        .expect("serve");
        let base = handle.base_url();
        let config = SourceConfig {
            id: slice.id.clone(),
            organisation: slice.organisation.clone(),
            base_url: url::Url::parse(&base).expect("url"),
            resource_types: slice
                .resource_types
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            batch: true,
            kind: SourceKind::FhirR4,
            gp_connect: None,
            deadline_ms: None,
            feed_timeout_secs: None,
            patient_search: Default::default(),
            identifier_search: Default::default(),
        };
        sources.push(Arc::new(HttpSource::new(
            config,
            reqwest::Client::new(),
            limits.clone(),
        )));
        bases.insert(id, base.trim_end_matches('/').to_owned());
        handles.push(handle);
    }
    Rig {
        federation: Federation::new(sources, limits),
        region,
        nhs,
        _handles: handles,
        bases,
    }
}

impl Rig {
    fn local_id(&self, source: &str) -> String {
        self.region
            .source(source)
            .expect("source")
            .patients()
            .iter()
            .find(|p| p.nhs_number.as_ref() == Some(&self.nhs))
            .expect("held")
            .local_id
            .clone()
    }

    async fn view(&self) -> MergedRecord {
        let (grant, policy) = mcr_testkit::grant(&self.nhs, &DataClass::ALL);
        let filter = grant.filter(
            &policy,
            [],
            mcr_domain::Clock::now(&mcr_domain::SystemClock),
        );
        let locations: Vec<Location> = SOURCES
            .iter()
            .map(|id| Location {
                source: mcr_domain::SourceId::parse(id).expect("id"),
                local_id: self.local_id(id),
                registered_practice: None,
            })
            .collect();
        let fetches = self
            .federation
            .fetch_record(&filter, &locations, Instant::now(), SignedAhead::default())
            .await;
        mcr_federation::merge(&filter, fetches)
    }

    /// Every clinical resource a source holds for the patient, as the URL the view names it by.
    fn held(&self, source: &str) -> Vec<String> {
        let slice = self.region.source(source).expect("source");
        let local = self.local_id(source);
        let base = &self.bases[source];
        slice
            .resource_types
            .iter()
            .filter(|t| **t != "Patient")
            .flat_map(|t| {
                slice
                    .resources(&local, t)
                    .into_iter()
                    .map(move |r| format!("{base}/{t}/{}", r["id"].as_str().expect("id")))
            })
            .collect()
    }
}

#[tokio::test]
async fn a_very_large_record_shows_every_item_or_counts_it_and_merges_every_copy() {
    let rig = rig(4).await;
    let record = rig.view().await;
    let items: Vec<_> = record.sections.iter().flat_map(|(_, i)| i).collect();
    // Each source's URL → the item it is shown in.
    let mut shown_in: HashMap<&str, usize> = HashMap::new();
    for (n, item) in items.iter().enumerate() {
        for s in &item.sources {
            assert!(
                shown_in.insert(s.full_url.as_str(), n).is_none(),
                "{} shown twice",
                s.full_url
            );
        }
    }

    // Every item in the view or counted, source by source.
    let mut total = 0;
    for id in SOURCES {
        let outcome = record
            .sources
            .iter()
            .find(|s| s.source.as_str() == id)
            .expect("every source answered");
        assert_eq!(outcome.status, SourceStatus::Ok, "{outcome:?}");
        let held = rig.held(id);
        total += held.len();
        let shown = held
            .iter()
            .filter(|u| shown_in.contains_key(u.as_str()))
            .count();
        let counted = outcome.withheld
            + outcome.untied
            + outcome.another_patient
            + outcome.not_shown.iter().map(|n| n.count).sum::<usize>();
        assert_eq!(
            shown + counted,
            held.len(),
            "{id}: {shown} shown and {counted} counted of {} held",
            held.len()
        );
        assert_eq!(outcome.items, shown, "{id}: items kept are the items shown");
    }
    assert!(total > 700, "a twentieth of ~15,000: {total}");
    let shown_urls: HashSet<&str> = shown_in.keys().copied().collect();
    assert!(
        shown_urls.len() <= total,
        "nothing shown that no source holds"
    );

    // Every known copy is one item with both sources.
    let copies = rig.region.copies(&rig.nhs);
    let url = |source: &str, rt: &str, id: &str| format!("{}/{rt}/{id}", rig.bases[source]);
    let mut by_type: HashMap<&str, usize> = HashMap::new();
    let mut pairs = HashSet::new();
    for c in &copies {
        let gp = url("gp", c.resource_type, &c.gp_id);
        let other = url(c.source, c.resource_type, &c.id);
        assert_eq!(
            shown_in.get(gp.as_str()),
            shown_in.get(other.as_str()),
            "{c:?} is shown as two items"
        );
        assert!(shown_in.contains_key(gp.as_str()), "{c:?} not shown");
        *by_type.entry(c.resource_type).or_default() += 1;
        pairs.insert((gp, other));
    }
    for rt in [
        "Observation",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
        "DiagnosticReport",
        "MedicationRequest",
    ] {
        assert!(by_type.get(rt).copied().unwrap_or(0) > 0, "no {rt} copies");
    }
    // Reports and prescriptions the GP holds that the trust does not are shown alone: the
    // same panel on another day, the same medicine issued another month, is another item.
    for rt in ["DiagnosticReport", "MedicationRequest"] {
        let copied: HashSet<&str> = copies
            .iter()
            .filter(|c| c.resource_type == rt)
            .map(|c| c.gp_id.as_str())
            .collect();
        let alone = rig
            .region
            .source("gp")
            .expect("gp")
            .resources(&rig.local_id("gp"), rt)
            .into_iter()
            .filter(|r| !copied.contains(r["id"].as_str().expect("id")))
            .map(|r| url("gp", rt, r["id"].as_str().expect("id")))
            .collect::<Vec<_>>();
        assert!(!alone.is_empty(), "the GP holds {rt}s the trust does not");
        for u in &alone {
            let n = *shown_in
                .get(u.as_str())
                .unwrap_or_else(|| panic!("{u} not shown"));
            assert_eq!(
                items[n].sources.len(),
                1,
                "{u} merged with {:?}",
                items[n].sources
            );
        }
    }
    // Each report the trust holds names its results by the trust's own ids, each shown once
    // with the GP's copy of it.
    let acute = rig.region.source("acute").expect("acute");
    for c in copies
        .iter()
        .filter(|c| c.resource_type == "DiagnosticReport")
    {
        let report = acute
            .resources(&rig.local_id("acute"), "DiagnosticReport")
            .into_iter()
            .find(|r| r["id"] == c.id.as_str())
            .expect("the copy");
        for r in report["result"].as_array().expect("results") {
            let id = r["reference"]
                .as_str()
                .expect("reference")
                .trim_start_matches("Observation/");
            let n = shown_in[url("acute", "Observation", id).as_str()];
            assert!(
                items[n].sources.iter().any(|s| s.source.as_str() == "gp"),
                "{id}: a copied report's result is a copy of the GP's"
            );
        }
    }
    // And nothing else is merged: every item with several sources is a known copy.
    for item in items.iter().filter(|i| i.sources.len() > 1) {
        let gp = item
            .sources
            .iter()
            .find(|s| s.source.as_str() == "gp")
            .unwrap_or_else(|| panic!("merged without the GP's: {item:?}"));
        for other in item.sources.iter().filter(|s| s.source.as_str() != "gp") {
            assert!(
                pairs.contains(&(gp.full_url.clone(), other.full_url.clone())),
                "{} and {} merged but are not copies",
                gp.full_url,
                other.full_url
            );
        }
    }
}
