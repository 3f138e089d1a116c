use super::*;
use crate::population::NhsAllocator;
use std::collections::HashSet;

fn small() -> Region {
    generate(&SynthConfig {
        patients: 3_000,
        ..SynthConfig::default()
    })
}

fn held_by<'a>(region: &'a Region, source: &str, nhs: &NhsNumber) -> Option<&'a SourcePatient> {
    let idx = region.people.iter().position(|p| &p.nhs_number == nhs)?;
    region
        .source(source)?
        .patients()
        .iter()
        .find(|sp| sp.person == idx)
}

#[test]
fn same_config_same_region() {
    let a = small();
    let b = small();
    assert_eq!(a.people, b.people);
    assert_eq!(a.samples, b.samples);
    for (sa, sb) in a.sources.iter().zip(&b.sources) {
        assert_eq!(sa.patients(), sb.patients());
        for sp in sa.patients().iter().take(20) {
            for t in &sa.resource_types {
                assert_eq!(sa.resources(&sp.local_id, t), sb.resources(&sp.local_id, t));
            }
        }
    }
    let c = generate(&SynthConfig {
        seed: 1,
        patients: 3_000,
        ..SynthConfig::default()
    });
    assert_ne!(a.people[0], c.people[0]);
}

#[test]
fn nhs_numbers_valid_unique_and_test_range() {
    let people = demographics(7, 20_000, SynthConfig::default().today);
    let mut seen = HashSet::new();
    for p in &people {
        assert!(p.nhs_number.is_test_range());
        assert_eq!(
            NhsNumber::parse(p.nhs_number.as_str()).as_ref(),
            Ok(&p.nhs_number)
        );
        assert!(
            seen.insert(p.nhs_number.clone()),
            "duplicate {}",
            p.nhs_number
        );
        assert!(p.birth_date <= SynthConfig::default().today);
        assert!(["male", "female", "other", "unknown"].contains(&p.gender));
    }
}

#[test]
fn nhs_numbers_stay_unique_past_the_999_range() {
    let mut alloc = NhsAllocator::new(3);
    let mut seen = HashSet::new();
    for _ in 0..1_000_000 {
        assert!(seen.insert(alloc.next()));
    }
}

#[test]
fn membership_is_roughly_as_specified() {
    let r = small();
    let n = r.people.len() as f64;
    let share = |id: &str| r.source(id).map_or(0, |s| s.patients().len()) as f64 / n;
    assert_eq!(share("gp"), 1.0);
    assert!((0.55..0.7).contains(&share("acute")), "{}", share("acute"));
    assert!(
        (0.18..0.35).contains(&share("community")),
        "{}",
        share("community")
    );
    assert!(
        (0.06..0.16).contains(&share("socialcare")),
        "{}",
        share("socialcare")
    );
}

#[test]
fn local_ids_and_resource_ids_unique_per_source() {
    let r = small();
    for s in &r.sources {
        let ids: HashSet<_> = s.patients().iter().map(|p| p.local_id.clone()).collect();
        assert_eq!(ids.len(), s.patients().len(), "{}", s.id);
        let sp = &s.patients()[0];
        for t in &s.resource_types {
            let res = s.resources(&sp.local_id, t);
            let ids: HashSet<_> = res
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), res.len());
            for r in &res {
                assert_eq!(r["resourceType"], *t);
                assert!(r["meta"]["lastUpdated"].is_string());
                let id = r["id"].as_str().unwrap();
                assert!(
                    id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{id}"
                );
                if *t != "Patient" {
                    let subj = r.get("subject").or_else(|| r.get("patient")).unwrap();
                    assert_eq!(subj["reference"], format!("Patient/{}", sp.local_id));
                }
            }
        }
    }
}

#[test]
fn every_source_patient_carries_its_own_mrn() {
    let r = small();
    for s in &r.sources {
        for sp in s.patients() {
            let ids = sp.resource["identifier"].as_array().unwrap();
            assert!(ids
                .iter()
                .any(|i| i["system"] == s.kind.mrn_system() && i["value"] == sp.local_id.as_str()));
        }
    }
}

#[test]
fn demographics_only_lacks_nhs_number_at_gp_and_is_uniquely_matchable() {
    let r = small();
    assert!(!r.samples.demographics_only.is_empty());
    for nhs in &r.samples.demographics_only {
        let gp = held_by(&r, "gp", nhs).expect("held by GP");
        assert!(gp.nhs_number.is_none());
        assert!(!gp.resource["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["system"] == NhsNumber::SYSTEM));
        let acute = held_by(&r, "acute", nhs).expect("held by acute");
        assert_eq!(acute.nhs_number.as_ref(), Some(nhs));
        // Unique by normalised family + first given + birth date + postcode, across the GP system.
        let name = &gp.resource["name"][0];
        let key = (
            normalise_name(name["family"].as_str().unwrap()),
            normalise_name(name["given"][0].as_str().unwrap()),
            gp.resource["birthDate"].as_str().unwrap().to_owned(),
            normalise_postcode(gp.resource["address"][0]["postalCode"].as_str().unwrap()),
        );
        let matches = r.source("gp").unwrap().patients().iter().filter(|o| {
            let n = &o.resource["name"][0];
            (
                normalise_name(n["family"].as_str().unwrap()),
                normalise_name(n["given"][0].as_str().unwrap()),
                o.resource["birthDate"].as_str().unwrap().to_owned(),
                normalise_postcode(o.resource["address"][0]["postalCode"].as_str().unwrap()),
            ) == key
        });
        assert_eq!(matches.count(), 1);
    }
    for nhs in &r.samples.no_nhs_number_in_acute {
        assert!(held_by(&r, "acute", nhs).unwrap().nhs_number.is_none());
        assert!(held_by(&r, "gp", nhs).unwrap().nhs_number.is_some());
    }
}

#[test]
fn name_differs_but_normalises_equal() {
    let r = small();
    assert!(!r.samples.name_differs.is_empty());
    for nhs in &r.samples.name_differs {
        let gp = held_by(&r, "gp", nhs).unwrap();
        let acute = held_by(&r, "acute", nhs).unwrap();
        let f1 = gp.resource["name"][0]["family"].as_str().unwrap();
        let f2 = acute.resource["name"][0]["family"].as_str().unwrap();
        assert_ne!(f1, f2);
        assert_eq!(normalise_name(f1), normalise_name(f2));
        assert_eq!(acute.nhs_number.as_ref(), Some(nhs));
    }
}

#[test]
fn samples_hold_where_they_say() {
    let r = small();
    for nhs in &r.samples.all_four {
        for s in ["gp", "acute", "community", "socialcare"] {
            assert!(held_by(&r, s, nhs).is_some(), "{s}");
        }
    }
    for nhs in &r.samples.gp_only {
        assert!(held_by(&r, "gp", nhs).is_some());
        for s in ["acute", "community", "socialcare"] {
            assert!(held_by(&r, s, nhs).is_none(), "{s}");
        }
    }
    let n = r.people.len();
    assert!(r.samples.sensitive.len() * 100 >= n * 3 - 100);
    assert!(!r.samples.hostile.is_empty() && !r.samples.large.is_empty());
    assert!(!r.samples.dose_discrepancy.is_empty());
}

fn codes_of(res: &[Value], field: &str) -> Vec<String> {
    res.iter()
        .map(|r| r[field]["coding"][0]["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn duplicated_items_share_codes_between_gp_and_acute() {
    let r = small();
    let (gp, acute) = (r.source("gp").unwrap(), r.source("acute").unwrap());
    for nhs in &r.samples.duplicated_items {
        let g = held_by(&r, "gp", nhs).unwrap();
        let a = held_by(&r, "acute", nhs).unwrap();
        let gc = gp.resources(&g.local_id, "Condition");
        let ac = acute.resources(&a.local_id, "Condition");
        let shared = ac.iter().find(|c| {
            gc.iter().any(|x| {
                x["code"]["coding"][0]["code"] == c["code"]["coding"][0]["code"]
                    && x["onsetDateTime"] == c["onsetDateTime"]
            })
        });
        assert!(shared.is_some(), "no shared problem for {nhs}");
        let gm = gp.resources(&g.local_id, "MedicationStatement");
        let am = acute.resources(&a.local_id, "MedicationStatement");
        let gm_codes = codes_of(&gm, "medicationCodeableConcept");
        let m = am.iter().find(|m| {
            gm_codes.contains(
                &m["medicationCodeableConcept"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        });
        let m = m.expect("shared medicine");
        assert_eq!(
            m["medicationCodeableConcept"]["coding"][0]["system"],
            codes::DMD
        );
        let gp_copy = gm
            .iter()
            .find(|x| {
                x["medicationCodeableConcept"]["coding"][0]["code"]
                    == m["medicationCodeableConcept"]["coding"][0]["code"]
            })
            .unwrap();
        let differs = gp_copy["dosage"][0]["text"] != m["dosage"][0]["text"];
        assert_eq!(differs, r.samples.dose_discrepancy.contains(nhs));
    }
}

#[test]
fn sensitive_patients_have_sensitive_codes_or_restricted_items() {
    let r = small();
    let sensitive: Vec<&str> = codes::SENSITIVE.iter().map(|c| c.code).collect();
    let gp = r.source("gp").unwrap();
    for nhs in &r.samples.sensitive {
        let g = held_by(&r, "gp", nhs).unwrap();
        let conds = gp.resources(&g.local_id, "Condition");
        assert!(conds
            .iter()
            .any(|c| sensitive.contains(&c["code"]["coding"][0]["code"].as_str().unwrap())));
    }
    let acute = r.source("acute").unwrap();
    let restricted = r.samples.sensitive.iter().any(|nhs| {
        let a = held_by(&r, "acute", nhs).unwrap();
        acute
            .resources(&a.local_id, "DocumentReference")
            .iter()
            .any(|d| d["meta"]["security"][0]["code"] == "R")
    });
    assert!(restricted);
}

#[test]
fn hostile_text_present() {
    let r = small();
    let nhs = &r.samples.hostile[0];
    let mut text = String::new();
    for s in &r.sources {
        let Some(sp) = held_by(&r, s.id.as_str(), nhs) else {
            continue;
        };
        for t in &s.resource_types {
            for res in s.resources(&sp.local_id, t) {
                text.push_str(&res.to_string());
            }
        }
    }
    assert!(text.contains("<script>alert(1)</script>"));
    assert!(text.contains("onerror=alert(1)"));
    assert!(text.contains('\u{202E}') && text.contains('\u{200B}'));
    assert!(text.contains(&clinical::long_text()));
}

#[test]
fn resource_counts_typical_and_large() {
    let r = small();
    let total = |nhs: &NhsNumber| -> usize {
        r.sources
            .iter()
            .filter_map(|s| {
                held_by(&r, s.id.as_str(), nhs).map(|sp| s.resource_count(&sp.local_id))
            })
            .sum()
    };
    let typical: Vec<usize> = r.samples.all_four.iter().map(total).collect();
    let mean = typical.iter().sum::<usize>() / typical.len();
    eprintln!("typical {mean} {typical:?}");
    assert!(
        (150..500).contains(&mean),
        "typical all-four patient has {mean} resources: {typical:?}"
    );
    for nhs in &r.samples.large {
        let t = total(nhs);
        eprintln!("large {t}");
        assert!((2000..5000).contains(&t), "large patient has {t}");
    }
}

#[test]
fn codes_in_coding_zero() {
    let r = small();
    let field = |t: &str| match t {
        "MedicationStatement" => "medicationCodeableConcept",
        "Immunization" => "vaccineCode",
        "Encounter" | "EpisodeOfCare" | "CarePlan" | "RelatedPerson" | "Consent" => "",
        "DocumentReference" => "type",
        _ => "code",
    };
    for s in &r.sources {
        let sp = &s.patients()[1];
        // A care team and an appointment are named, not coded.
        for t in s
            .resource_types
            .iter()
            .filter(|t| !matches!(**t, "Patient" | "CareTeam" | "Appointment"))
        {
            for res in s.resources(&sp.local_id, t) {
                let cc = match *t {
                    "Encounter" | "EpisodeOfCare" => &res["type"][0],
                    "CarePlan" => &res["category"][0],
                    "RelatedPerson" => &res["relationship"][0],
                    "Consent" => &res["category"][0],
                    other => &res[field(other)],
                };
                let c = &cc["coding"][0];
                assert!(
                    c["system"].is_string() && c["code"].is_string() && c["display"].is_string(),
                    "{t}: {res}"
                );
            }
        }
    }
}

#[test]
fn a_very_large_record_and_its_copies() {
    let cfg = SynthConfig {
        patients: 300,
        ..SynthConfig::default()
    };
    let plain = generate(&cfg);
    let r = generate_with(
        &cfg,
        VeryLarge {
            patients: 1,
            scale: 53,
        },
    );
    assert!(plain.samples.very_large.is_empty());
    assert_eq!(r.samples.very_large.len(), 1);
    // Chosen after every other sample: those are the same people with or without it.
    assert_eq!(
        Samples {
            very_large: Vec::new(),
            ..r.samples.clone()
        },
        plain.samples
    );
    let nhs = &r.samples.very_large[0];
    let total: usize = r
        .sources
        .iter()
        .filter_map(|s| held_by(&r, s.id.as_str(), nhs).map(|sp| s.resource_count(&sp.local_id)))
        .sum();
    assert!(
        (12_000..18_000).contains(&total),
        "very large patient has {total}"
    );

    let copies = r.copies(nhs);
    let (gp, acute) = (
        held_by(&r, "gp", nhs).expect("the GP holds them"),
        held_by(&r, "acute", nhs).expect("the acute trust holds them"),
    );
    // Each source's resources of the copied types, generated once, by id.
    let by_id = |source: &str, local: &str| -> HashMap<String, Value> {
        let slice = r.source(source).expect("source");
        [
            "Observation",
            "Condition",
            "MedicationStatement",
            "AllergyIntolerance",
            "DiagnosticReport",
            "MedicationRequest",
        ]
        .iter()
        .flat_map(|rt| slice.resources(local, rt))
        .map(|x| (x["id"].as_str().expect("id").to_owned(), x))
        .collect()
    };
    let (gp_items, acute_items) = (by_id("gp", &gp.local_id), by_id("acute", &acute.local_id));
    let find = |items: &HashMap<String, Value>, id: &str| -> Value {
        items.get(id).cloned().unwrap_or_else(|| panic!("no {id}"))
    };
    for rt in [
        "Observation",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
        "DiagnosticReport",
        "MedicationRequest",
    ] {
        let n = copies.iter().filter(|c| c.resource_type == rt).count();
        assert!(n > 0, "no {rt} copies");
    }
    assert!(copies.len() > 1_000, "{} copies", copies.len());
    for c in &copies {
        let g = find(&gp_items, &c.gp_id);
        if c.source != "acute" {
            continue;
        }
        let a = find(&acute_items, &c.id);
        for field in [
            "code",
            "medicationCodeableConcept",
            "effectiveDateTime",
            "valueQuantity",
            "onsetDateTime",
            "effectivePeriod",
            "dosage",
            "authoredOn",
            "dosageInstruction",
            "dispenseRequest",
            "issued",
        ] {
            if field == "onsetDateTime" && c.resource_type == "AllergyIntolerance" {
                continue;
            }
            assert_eq!(g.get(field), a.get(field), "{field} of {c:?}");
        }
        assert_eq!(
            a.pointer("/subject/reference")
                .or(a.pointer("/patient/reference")),
            Some(&Value::from(format!("Patient/{}", acute.local_id)))
        );
    }
    // A report the trust holds names the trust's copies of the GP's results, in order.
    for c in copies
        .iter()
        .filter(|c| c.resource_type == "DiagnosticReport")
    {
        let (g, a) = (find(&gp_items, &c.gp_id), find(&acute_items, &c.id));
        let results = |r: &Value, items: &HashMap<String, Value>| -> Vec<Value> {
            r["result"]
                .as_array()
                .expect("results")
                .iter()
                .map(|x| {
                    let id = x["reference"]
                        .as_str()
                        .expect("ref")
                        .trim_start_matches("Observation/");
                    let mut o = find(items, id);
                    for f in ["id", "subject", "performer", "meta"] {
                        o.as_object_mut().expect("object").remove(f);
                    }
                    o
                })
                .collect()
        };
        assert_eq!(results(&g, &gp_items), results(&a, &acute_items), "{c:?}");
        assert!(a["result"][0]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("Observation/{}-", acute.local_id))));
    }
    // Only a very large record holds reports and prescriptions.
    for nhs in r.samples.all_four.iter().take(20) {
        let gp = r.source("gp").expect("gp");
        let sp = held_by(&r, "gp", nhs).expect("held");
        assert!(gp.resources(&sp.local_id, "DiagnosticReport").is_empty());
        assert!(gp.resources(&sp.local_id, "MedicationRequest").is_empty());
    }
    assert!(!plain
        .source("gp")
        .expect("gp")
        .holds_type("DiagnosticReport"));
    // Anyone else's record shares at most an allergy and two long-term problems.
    for nhs in r.samples.all_four.iter().take(20) {
        assert!(r.copies(nhs).len() <= 3, "{:?}", r.copies(nhs));
    }
}
