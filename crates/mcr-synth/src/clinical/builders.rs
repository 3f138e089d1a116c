//! The steps every source's records are built from: a `Condition`, a medicine, an
//! observation, an encounter, a flag, a document, a care plan, an episode of care; the ids,
//! timestamps and `meta` they share.

use super::*;

/// Where a document's content is: in the resource (base64), or a `Binary` on the source.
enum Content<'a> {
    Inline {
        content_type: &'a str,
        body: &'a str,
    },
    Binary,
}

impl Gen<'_> {
    pub(super) fn today(&self) -> NaiveDate {
        self.core.today
    }

    pub(super) fn age(&self) -> u32 {
        self.p.age_on(self.core.today)
    }

    /// Who asserted or recorded an item: a clinician in a role at the provider (R4 allows no
    /// Organization there), named but not resolvable, as GP systems often send it.
    pub(super) fn clinician(&self) -> Value {
        json!({
            "type": "PractitionerRole",
            "display": format!("Clinician, {}", self.provider["display"].as_str().unwrap_or("the provider")),
        })
    }

    pub(super) fn subject(&self) -> Value {
        json!({ "reference": format!("Patient/{}", self.local) })
    }

    pub(super) fn next_id(&self) -> String {
        format!("{}-{}{}", self.local, self.abbrev, self.out.len() + 1)
    }

    pub(super) fn ts(&mut self, d: NaiveDate) -> String {
        let secs = self.rng.gen_range(8 * 3600..19 * 3600);
        timestamp(d, secs)
    }

    pub(super) fn meta(&mut self, d: NaiveDate, restricted: bool) -> Value {
        let updated = (d + Duration::days(self.rng.gen_range(0..3))).min(self.today());
        let mut m = json!({ "lastUpdated": self.ts(updated) });
        if restricted {
            m["security"] =
                json!([{ "system": CONFIDENTIALITY, "code": "R", "display": "restricted" }]);
        }
        m
    }

    pub(super) fn history(&self, years: i32) -> NaiveDate {
        history_start(self.p, self.today(), years)
    }

    pub(super) fn recent_date(&mut self, years: i32) -> NaiveDate {
        let from = self.history(years);
        let to = self.today() - Duration::days(1);
        date_between(&mut self.rng, from, to)
    }

    pub(super) fn count(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.gen_range(lo..=hi) * self.scale
    }

    // ---- shared builders ------------------------------------------------------------------

    #[expect(
        clippy::too_many_arguments,
        reason = "a Condition has this many independent parts"
    )]
    pub(super) fn condition(
        &mut self,
        code: &Code,
        onset: NaiveDate,
        recorded: NaiveDate,
        active: bool,
        restricted: bool,
        note: Option<String>,
        code_text: Option<String>,
    ) {
        let mut r = json!({
            "resourceType": "Condition",
            "id": self.next_id(),
            "meta": self.meta(recorded, restricted),
            "clinicalStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": if active { "active" } else { "resolved" },
            }]},
            "verificationStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed",
            }]},
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item",
                "display": "Problem List Item",
            }]}],
            "code": cc(SNOMED, code),
            "subject": self.subject(),
            "onsetDateTime": day(onset),
            "recordedDate": day(recorded),
            "asserter": self.clinician(),
        });
        if !active {
            let end = (onset + Duration::days(self.rng.gen_range(5..40))).min(self.today());
            r["abatementDateTime"] = json!(day(end));
        }
        if let Some(text) = note {
            r["note"] = json!([{ "text": text }]);
        }
        if let Some(text) = code_text {
            r["code"]["text"] = json!(text);
        }
        self.out.push(r);
    }

    pub(super) fn medication(
        &mut self,
        med: &Med,
        start: NaiveDate,
        end: Option<NaiveDate>,
        dose: &str,
        restricted: bool,
    ) {
        let mut period = json!({ "start": day(start) });
        if let Some(e) = end {
            period["end"] = json!(day(e));
        }
        let r = json!({
            "resourceType": "MedicationStatement",
            "id": self.next_id(),
            "meta": self.meta(start, restricted),
            "status": if end.is_some() { "completed" } else { "active" },
            "medicationCodeableConcept": cc(DMD, &med_code(med)),
            "subject": self.subject(),
            "effectivePeriod": period,
            "dateAsserted": day(start),
            "informationSource": self.provider.clone(),
            "dosage": [{ "text": dose }],
        });
        self.out.push(r);
    }

    /// The acute trust's copy of a GP item: the same code, times, value and dose, under its
    /// own id, about its own patient, recorded by the trust.
    pub(super) fn copy_of_gp(&mut self, gp: &Value) {
        let mut r = gp.clone();
        r["id"] = json!(self.next_id());
        for field in ["subject", "patient"] {
            if r.get(field).is_some() {
                r[field] = self.subject();
            }
        }
        if r.get("performer").is_some() {
            r["performer"] = json!([self.provider.clone()]);
        }
        if r.get("informationSource").is_some() {
            r["informationSource"] = self.provider.clone();
        }
        if r.get("asserter").is_some() {
            r["asserter"] = self.clinician();
        }
        if r.get("requester").is_some() {
            r["requester"] = self.provider.clone();
        }
        self.out.push(r);
    }

    pub(super) fn observation(&mut self, kind: &ObsKind, d: NaiveDate, mean: f64) {
        let value = round_to(
            (mean + kind.sd * gauss(&mut self.rng)).max(kind.sd / 2.0),
            kind.decimals,
        );
        let when = self.ts(d);
        let r = json!({
            "resourceType": "Observation",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": kind.category,
            }]}],
            "code": cc(LOINC, &Code { code: kind.code, display: kind.display }),
            "subject": self.subject(),
            "effectiveDateTime": when,
            "issued": when,
            "performer": [self.provider.clone()],
            "valueQuantity": { "value": value, "unit": kind.unit, "system": UCUM, "code": kind.unit },
        });
        self.out.push(r);
    }

    pub(super) fn blood_pressure(&mut self, d: NaiveDate, hypertensive: bool) {
        let (s, dia) = if hypertensive {
            (148.0, 90.0)
        } else {
            (124.0, 78.0)
        };
        let sys = (s + 12.0 * gauss(&mut self.rng)).round();
        let dia = (dia + 8.0 * gauss(&mut self.rng)).round();
        let when = self.ts(d);
        let component = |c: &Code, v: f64| {
            json!({
                "code": cc(LOINC, c),
                "valueQuantity": { "value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]" },
            })
        };
        let r = json!({
            "resourceType": "Observation",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }]}],
            "code": cc(LOINC, &codes::BP_PANEL),
            "subject": self.subject(),
            "effectiveDateTime": when,
            "issued": when,
            "performer": [self.provider.clone()],
            "component": [component(&codes::BP_SYSTOLIC, sys), component(&codes::BP_DIASTOLIC, dia)],
        });
        self.out.push(r);
    }

    pub(super) fn has(&self, chronic: usize) -> bool {
        self.prof.conds.iter().any(|(c, _)| *c == chronic)
    }

    pub(super) fn encounter(
        &mut self,
        class: (&str, &str),
        kind: &Code,
        start: NaiveDate,
        end: Option<NaiveDate>,
        reason: Option<&Code>,
    ) -> NaiveDate {
        let start_ts = self.ts(start);
        let mut period = json!({ "start": start_ts });
        if let Some(e) = end {
            period["end"] = json!(self.ts(e));
        }
        let mut r = json!({
            "resourceType": "Encounter",
            "id": self.next_id(),
            "meta": self.meta(end.unwrap_or(start), false),
            "status": if end.is_some() { "finished" } else { "in-progress" },
            "class": { "system": ACT_CODE, "code": class.0, "display": class.1 },
            "type": [cc(SNOMED, kind)],
            "subject": self.subject(),
            "period": period,
            "serviceProvider": self.provider.clone(),
        });
        if let Some(code) = reason {
            r["reasonCode"] = json!([cc(SNOMED, code)]);
        }
        if class.0 == "IMP" {
            if end.is_some() {
                r["hospitalization"] = json!({ "dischargeDisposition": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                    "code": "home",
                    "display": "Home",
                }]}});
            }
            r["location"] = json!([{ "location": { "display": "Ward 7B, Lister Hospital" } }]);
        }
        self.out.push(r);
        start
    }

    pub(super) fn flag(
        &mut self,
        system: &str,
        code: &Code,
        category: &str,
        start: NaiveDate,
        text: Option<String>,
    ) {
        let mut r = json!({
            "resourceType": "Flag",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": "active",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                "code": category,
            }]}],
            "code": cc(system, code),
            "subject": self.subject(),
            "period": { "start": day(start) },
            "author": self.provider.clone(),
        });
        if let Some(t) = text {
            r["code"]["text"] = json!(t);
        }
        self.out.push(r);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "a DocumentReference has this many independent parts"
    )]
    pub(super) fn document(
        &mut self,
        type_: Value,
        category: Value,
        title: &str,
        body: &str,
        content_type: &str,
        d: NaiveDate,
        restricted: bool,
    ) {
        let content = Content::Inline { content_type, body };
        self.document_reference(type_, category, title, d, restricted, content);
    }

    /// A `DocumentReference` whose content is a PDF held on the source as a `Binary` of the
    /// same id (`attachment.url` = `Binary/{id}`); [`crate::SourceSlice::binary`] makes it.
    pub(super) fn pdf_document(
        &mut self,
        type_: Value,
        category: Value,
        title: &str,
        d: NaiveDate,
    ) {
        self.document_reference(type_, category, title, d, false, Content::Binary);
    }

    fn document_reference(
        &mut self,
        type_: Value,
        category: Value,
        title: &str,
        d: NaiveDate,
        restricted: bool,
        content: Content<'_>,
    ) {
        let id = self.next_id();
        let when = self.ts(d);
        let (content_type, held_as, held) = match content {
            Content::Inline { content_type, body } => (
                content_type,
                "data",
                base64::engine::general_purpose::STANDARD.encode(body.as_bytes()),
            ),
            Content::Binary => ("application/pdf", "url", format!("Binary/{id}")),
        };
        let mut attachment = json!({ "contentType": content_type, "language": "en-GB" });
        attachment[held_as] = Value::String(held);
        attachment["title"] = json!(title);
        attachment["creation"] = json!(when);
        let r = json!({
            "resourceType": "DocumentReference",
            "id": id,
            "meta": self.meta(d, restricted),
            "status": "current",
            "type": type_,
            "category": [category],
            "subject": self.subject(),
            "date": when,
            "author": [self.provider.clone()],
            "custodian": self.provider.clone(),
            "description": title,
            "content": [{ "attachment": attachment }],
        });
        self.out.push(r);
    }

    pub(super) fn care_plan(
        &mut self,
        category: Value,
        title: &str,
        description: &str,
        start: NaiveDate,
        active: bool,
        restricted: bool,
    ) {
        let mut period = json!({ "start": day(start) });
        if !active {
            period["end"] = json!(day((start + Duration::days(90)).min(self.today())));
        }
        let r = json!({
            "resourceType": "CarePlan",
            "id": self.next_id(),
            "meta": self.meta(start, restricted),
            "status": if active { "active" } else { "completed" },
            "intent": "plan",
            "category": [category],
            "title": title,
            "description": description,
            "subject": self.subject(),
            "period": period,
            "author": self.provider.clone(),
        });
        self.out.push(r);
    }

    pub(super) fn episode(&mut self, type_: Value, team: &str, start: NaiveDate, active: bool) {
        let mut period = json!({ "start": day(start) });
        if !active {
            period["end"] = json!(day(
                (start + Duration::days(self.rng.gen_range(14..200))).min(self.today())
            ));
        }
        let r = json!({
            "resourceType": "EpisodeOfCare",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": if active { "active" } else { "finished" },
            "type": [type_],
            "patient": self.subject(),
            "managingOrganization": org_reference(self.source_org),
            "period": period,
            "team": [{ "display": team }],
        });
        self.out.push(r);
    }

    // ---- GP ---------------------------------------------------------------------------------

    pub(super) fn allergies(&mut self, kind: SourceKind) {
        let mut list = self.prof.allergies.clone();
        if kind == SourceKind::Acute {
            // The hospital records the first one (the same code as the GP's).
            list.truncate(1);
        }
        for (a, reaction, criticality, onset) in list {
            let category = match a {
                0 | 1 | 4 => "medication",
                2 | 3 => "food",
                _ => "environment",
            };
            let recorded = if kind == SourceKind::Gp {
                onset
            } else {
                self.recent_date(3).max(onset)
            };
            let r = json!({
                "resourceType": "AllergyIntolerance",
                "id": self.next_id(),
                "meta": self.meta(recorded, false),
                "clinicalStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }]},
                "verificationStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }]},
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": cc(SNOMED, &codes::ALLERGIES[a]),
                "patient": self.subject(),
                "onsetDateTime": day(onset),
                "recordedDate": day(recorded),
                "recorder": self.clinician(),
                "reaction": [{
                    "manifestation": [cc(SNOMED, &codes::REACTIONS[reaction])],
                    "severity": if criticality == "high" { "severe" } else { "mild" },
                }],
            });
            self.out.push(r);
        }
    }

    pub(super) fn series(&mut self, kind: &ObsKind, n: usize, years: i32, mean: f64) {
        for _ in 0..n {
            let d = self.recent_date(years);
            self.observation(kind, d, mean);
        }
    }
}
