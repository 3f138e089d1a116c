//! The GP system's records: problems, medicines, results and their reports, prescriptions, encounters, documents and alerts.

use super::*;

impl Gen<'_> {
    pub(super) fn gp_conditions(&mut self) {
        let conds = self.prof.conds.clone();
        for (k, (c, onset)) in conds.iter().enumerate() {
            let recorded = (*onset + Duration::days(self.rng.gen_range(0..14))).min(self.today());
            let note = (self.t.hostile && k == 0).then(hostile_note);
            self.condition(
                &codes::CHRONIC[*c],
                *onset,
                recorded,
                true,
                false,
                note,
                None,
            );
        }
        let minor = self.count(2, 7);
        for k in 0..minor {
            let code = codes::MINOR[self.rng.gen_range(0..codes::MINOR.len())];
            let onset = self.recent_date(10);
            let note = (self.t.hostile && conds.is_empty() && k == 0).then(hostile_note);
            self.condition(&code, onset, onset, false, false, note, None);
        }
        for (s, d) in self.prof.sensitive.clone() {
            let restricted = s == 0 || self.rng.gen_bool(0.5);
            let active = matches!(s, 0 | 5);
            self.condition(&codes::SENSITIVE[s], d, d, active, restricted, None, None);
        }
        if self.t.hostile {
            let d = self.recent_date(2);
            self.condition(
                &codes::MINOR[0],
                d,
                d,
                false,
                false,
                Some(long_text()),
                Some(format!("{SCRIPT}{IMG}")),
            );
        }
    }

    pub(super) fn gp_medications(&mut self) {
        for (k, (m, start)) in self.prof.meds.clone().into_iter().enumerate() {
            let med = codes::MEDS[m];
            let dose = if self.t.hostile && k == 0 {
                format!("{IMG} {SCRIPT}")
            } else {
                med.dose.to_owned()
            };
            self.medication(&med, start, None, &dose, false);
        }
        let courses = self.count(1, 5);
        for _ in 0..courses {
            let med = codes::MEDS[codes::COURSES[self.rng.gen_range(0..codes::COURSES.len())]];
            let start = self.recent_date(8);
            let end = (start + Duration::days(7)).min(self.today());
            self.medication(&med, start, Some(end), med.dose, false);
        }
        if let Some((_, d)) = self.prof.sensitive.iter().find(|(s, _)| *s == 0).copied() {
            let arv = codes::ANTIRETROVIRAL;
            self.medication(&arv, d, None, arv.dose, true);
        }
    }

    pub(super) fn gp_observations(&mut self) {
        if self.age() < 16 && !self.t.large {
            let n = self.count(2, 5);
            self.series(&codes::WEIGHT, n, 10, 10.0 + 3.0 * f64::from(self.age()));
            let n = self.count(1, 4);
            self.series(&codes::TEMPERATURE, n, 10, codes::TEMPERATURE.mean);
            let n = self.count(1, 3);
            self.series(&codes::HEART_RATE, n, 10, 95.0);
            return;
        }
        let hypertensive = self.has(1);
        let n = self.count(6, 14) + if hypertensive { 8 * self.scale } else { 0 };
        for _ in 0..n {
            let d = self.recent_date(8);
            self.blood_pressure(d, hypertensive);
        }
        let n = self.count(3, 8);
        self.series(&codes::WEIGHT, n, 8, codes::WEIGHT.mean);
        let n = self.count(1, 3);
        self.series(&codes::BMI, n, 8, codes::BMI.mean);
        let n = self.count(3, 8);
        self.series(&codes::HEART_RATE, n, 8, codes::HEART_RATE.mean);
        let n = self.count(0, 4);
        self.series(&codes::SPO2, n, 5, codes::SPO2.mean);
        let n = self.count(1, 4);
        self.series(&codes::CHOLESTEROL, n, 8, codes::CHOLESTEROL.mean);
        // HbA1c: quarterly for people with diabetes, drifting down as treatment works.
        if self.has(0) {
            let start = self.history(6);
            let quarters = usize::try_from(days_between(start, self.today()) / 91).unwrap_or(0);
            let n = quarters * self.scale.min(3);
            for q in 0..n {
                let d = start
                    + Duration::days(
                        i64::try_from(q * 91 / self.scale.min(3)).unwrap_or(0)
                            + self.rng.gen_range(0..20),
                    );
                let mean = 66.0 - 10.0 * (q as f64 / n.max(1) as f64);
                self.observation(&codes::HBA1C, d.min(self.today()), mean);
            }
        } else {
            let n = self.count(0, 2);
            self.series(&codes::HBA1C, n, 6, codes::HBA1C.mean);
        }
        // Blood panels: full blood count and urea & electrolytes on the same day.
        let ckd = self.has(6);
        let panels = self.count(4, 10);
        for _ in 0..panels {
            let d = self.recent_date(8);
            for k in [
                &codes::HAEMOGLOBIN,
                &codes::WBC,
                &codes::PLATELETS,
                &codes::SODIUM,
                &codes::POTASSIUM,
            ] {
                self.observation(k, d, k.mean);
            }
            self.observation(
                &codes::CREATININE,
                d,
                if ckd { 150.0 } else { codes::CREATININE.mean },
            );
            self.observation(&codes::EGFR, d, if ckd { 42.0 } else { codes::EGFR.mean });
        }
    }

    /// A very large record's laboratory reports: each full blood count and each urea and
    /// electrolytes panel among the GP's observations, as a `DiagnosticReport` naming its
    /// results, dated as its first result.
    pub(super) fn gp_reports(&mut self) {
        if !self.t.very_large {
            return;
        }
        let obs = gp_resources(self.core, self.p.index, "Observation");
        for (code, display, results) in panels(&obs) {
            let first = &obs[results[0]];
            let r = json!({
                "resourceType": "DiagnosticReport",
                "id": self.next_id(),
                "meta": first["meta"].clone(),
                "status": "final",
                "category": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code": "LAB",
                    "display": "Laboratory",
                }]}],
                "code": cc(LOINC, &Code { code, display }),
                "subject": self.subject(),
                "effectiveDateTime": first["effectiveDateTime"].clone(),
                "issued": first["issued"].clone(),
                "performer": [self.provider.clone()],
                "result": results
                    .iter()
                    .map(|k| json!({ "reference": format!("Observation/{}", obs[*k]["id"].as_str().unwrap_or_default()) }))
                    .collect::<Vec<_>>(),
            });
            self.out.push(r);
        }
    }

    /// A very large record's prescriptions, each a completed `MedicationRequest` valid for 28
    /// days: each current medicine issued every 28 days since it started (at most eight years
    /// back), and each course of medicine the GP records, issued the day it started.
    pub(super) fn gp_prescriptions(&mut self) {
        if !self.t.very_large {
            return;
        }
        let from = self.today() - Duration::days(8 * 365);
        let mut issues: Vec<(Med, NaiveDate)> = Vec::new();
        for (m, start) in self.prof.meds.clone() {
            let mut d = start.max(from);
            while d < self.today() {
                issues.push((codes::MEDS[m], d));
                d += Duration::days(28);
            }
        }
        let courses = gp_resources(self.core, self.p.index, "MedicationStatement");
        for c in courses
            .iter()
            .filter(|c| c["status"] == "completed" && c.pointer("/meta/security").is_none())
        {
            let code = c.pointer("/medicationCodeableConcept/coding/0/code");
            let start = c.pointer("/effectivePeriod/start").and_then(Value::as_str);
            let med = codes::MEDS
                .iter()
                .find(|m| code == Some(&Value::from(m.code)));
            if let (Some(med), Some(Ok(d))) = (med, start.map(|s| s.parse::<NaiveDate>())) {
                issues.push((*med, d));
            }
        }
        for (med, d) in issues {
            {
                let r = json!({
                    "resourceType": "MedicationRequest",
                    "id": self.next_id(),
                    "meta": self.meta(d, false),
                    "status": "completed",
                    "intent": "order",
                    "courseOfTherapyType": { "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                        "code": "continuous",
                    }]},
                    "medicationCodeableConcept": cc(DMD, &med_code(&med)),
                    "subject": self.subject(),
                    "authoredOn": day(d),
                    "requester": self.provider.clone(),
                    "dosageInstruction": [{ "text": med.dose }],
                    "dispenseRequest": { "validityPeriod": {
                        "start": day(d),
                        "end": day(d + Duration::days(28)),
                    }},
                });
                self.out.push(r);
            }
        }
    }

    pub(super) fn gp_encounters(&mut self) {
        let n = self.count(16, 40) + if self.age() >= 65 { 10 * self.scale } else { 0 };
        let conds: Vec<Code> = self
            .prof
            .conds
            .iter()
            .map(|(c, _)| codes::CHRONIC[*c])
            .collect();
        for _ in 0..n {
            let d = self.recent_date(6);
            let kind =
                codes::GP_ENCOUNTER_TYPES[self.rng.gen_range(0..codes::GP_ENCOUNTER_TYPES.len())];
            let reason = if conds.is_empty() || self.rng.gen_bool(0.4) {
                codes::MINOR[self.rng.gen_range(0..codes::MINOR.len())]
            } else {
                conds[self.rng.gen_range(0..conds.len())]
            };
            self.encounter(("AMB", "ambulatory"), &kind, d, Some(d), Some(&reason));
        }
    }

    /// The letters a practice holds as PDFs (a referral it sent, a discharge summary it
    /// received), shared through GP Connect Access Document only: see
    /// [`crate::SourceSlice::practice_documents`].
    pub(super) fn gp_documents(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.hertsgp.example/CodeSystem/document-category",
            "code": "correspondence",
            "display": "Correspondence",
        }]});
        let n = self.rng.gen_range(1..=3);
        for k in 0..n {
            let d = self.recent_date(4);
            let (code, title) = if k % 2 == 0 {
                (codes::REFERRAL, "Referral letter (PDF)")
            } else {
                (codes::DISCHARGE_SUMMARY, "Discharge summary received (PDF)")
            };
            self.pdf_document(cc(SNOMED, &code), category.clone(), title, d);
        }
    }

    pub(super) fn gp_flags(&mut self) {
        if self.age() >= 75 {
            let d = self.recent_date(3);
            self.flag(SNOMED, &codes::FALLS, "clinical", d, None);
        }
        let n = if self.rng.gen_bool(0.3) {
            self.rng.gen_range(1..=2)
        } else {
            0
        };
        for _ in 0..n {
            let code = codes::GP_FLAGS[self.rng.gen_range(1..codes::GP_FLAGS.len())];
            let d = self.recent_date(5);
            self.flag(SNOMED, &code, "clinical", d, None);
        }
    }

    // ---- acute ------------------------------------------------------------------------------
}
