//! The acute trust's records: referrals, procedures, appointments, encounters, problems, medicines, results and letters (some as PDFs).

use super::*;

impl Gen<'_> {
    /// Referrals to the trust's clinics (from the patient's GP): about one patient in five has
    /// one open, made in the last two months; some have an older one, completed.
    pub(super) fn acute_referrals(&mut self) {
        let today = self.today();
        if self.rng.gen_bool(0.2) {
            let d = date_between(
                &mut self.rng,
                today - Duration::days(60),
                today - Duration::days(1),
            );
            self.referral(d, true);
        }
        if self.rng.gen_bool(0.3) {
            let d = self.recent_date(3);
            self.referral(d, false);
        }
    }

    /// Operations and investigations done here: about one patient in four.
    pub(super) fn acute_procedures(&mut self) {
        if !self.rng.gen_bool(0.25) {
            return;
        }
        let n = self.count(1, 2);
        for _ in 0..n {
            let code = codes::PROCEDURES[self.rng.gen_range(0..codes::PROCEDURES.len())];
            let d = self.recent_date(10);
            let r = json!({
                "resourceType": "Procedure",
                "id": self.next_id(),
                "meta": self.meta(d, false),
                "status": "completed",
                "code": cc(SNOMED, &code),
                "subject": self.subject(),
                "performedDateTime": day(d),
                "performer": [{ "actor": self.clinician() }],
            });
            self.out.push(r);
        }
    }

    /// An outpatient appointment booked one to four months ahead: about one patient in four.
    /// (Further ahead than the policy's default 30 days, so the demo's relationships stay
    /// what its other care events make them.)
    pub(super) fn acute_appointments(&mut self) {
        if !self.rng.gen_bool(0.25) {
            return;
        }
        let clinic = codes::CLINICS[self.rng.gen_range(0..codes::CLINICS.len())];
        let today = self.today();
        let d = date_between(
            &mut self.rng,
            today + Duration::days(31),
            today + Duration::days(120),
        );
        let secs = self.rng.gen_range(9 * 2..17 * 2) * 1800;
        let start = timestamp(d, secs);
        // R4: an appointment with a start has an end (app-2).
        let end = timestamp(d, secs + 1800);
        let booked = today - Duration::days(self.rng.gen_range(1..30));
        let r = json!({
            "resourceType": "Appointment",
            "id": self.next_id(),
            "meta": self.meta(booked, false),
            "status": "booked",
            "serviceType": [{ "text": clinic }],
            "description": clinic,
            "start": start,
            "end": end,
            "minutesDuration": 30,
            "created": day(booked),
            "participant": [
                { "actor": { "reference": format!("Patient/{}", self.local) }, "status": "accepted" },
                { "actor": { "type": "Location", "display": clinic }, "status": "accepted" },
            ],
        });
        self.out.push(r);
    }

    fn referral(&mut self, authored: NaiveDate, active: bool) {
        let r = json!({
            "resourceType": "ServiceRequest",
            "id": self.next_id(),
            "meta": self.meta(authored, false),
            "status": if active { "active" } else { "completed" },
            "intent": "order",
            "code": cc(SNOMED, &codes::REFERRAL),
            "subject": self.subject(),
            "authoredOn": day(authored),
            "performer": [org_reference(self.source_org)],
        });
        self.out.push(r);
    }

    pub(super) fn acute_encounters(&mut self) {
        let ae = self.count(1, 4);
        for _ in 0..ae {
            let d = self.recent_date(6);
            let reason = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            self.encounter(
                ("EMER", "emergency"),
                &codes::ED_VISIT,
                d,
                Some(d),
                Some(&reason),
            );
        }
        let imp = self.count(0, 2);
        for _ in 0..imp {
            let d = self.recent_date(6);
            let end = (d + Duration::days(self.rng.gen_range(1..12))).min(self.today());
            let reason = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            self.encounter(
                ("IMP", "inpatient encounter"),
                &codes::ADMISSION,
                d,
                Some(end),
                Some(&reason),
            );
        }
        let amb = self.count(2, 7);
        for _ in 0..amb {
            let d = self.recent_date(6);
            self.encounter(("AMB", "ambulatory"), &codes::OUTPATIENT, d, Some(d), None);
        }
        if self.t.admitted {
            let d = self.today() - Duration::days(self.rng.gen_range(0..6));
            self.encounter(
                ("EMER", "emergency"),
                &codes::ED_VISIT,
                d,
                None,
                Some(&codes::ACUTE_PROBLEMS[0]),
            );
            self.encounter(
                ("IMP", "inpatient encounter"),
                &codes::ADMISSION,
                d,
                None,
                Some(&codes::ACUTE_PROBLEMS[0]),
            );
        }
    }

    pub(super) fn acute_conditions(&mut self) {
        if self.t.duplicated {
            if let Some((c, onset)) = self.prof.conds.first().copied() {
                let recorded = self.recent_date(3).max(onset);
                self.condition(&codes::CHRONIC[c], onset, recorded, true, false, None, None);
            }
        }
        let n = self.count(1, 4);
        for _ in 0..n {
            let code = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            let d = self.recent_date(6);
            self.condition(&code, d, d, false, false, None, None);
        }
        for (s, d) in self.prof.sensitive.clone() {
            self.condition(
                &codes::SENSITIVE[s],
                d,
                d,
                matches!(s, 0 | 5),
                true,
                None,
                None,
            );
        }
        if self.t.hostile {
            let d = self.recent_date(2);
            self.condition(
                &codes::ACUTE_PROBLEMS[3],
                d,
                d,
                false,
                false,
                Some(format!("{RLO} {ZERO_WIDTH}")),
                None,
            );
        }
    }

    pub(super) fn acute_medications(&mut self) {
        if self.t.duplicated {
            if let Some((m, start)) = self.prof.meds.first().copied() {
                let med = codes::MEDS[m];
                let dose = if self.t.dose_differs {
                    med.other_dose
                } else {
                    med.dose
                };
                let asserted = self.recent_date(2).max(start);
                self.medication(&med, asserted, None, dose, false);
            }
        }
        let n = self.count(1, 5);
        for _ in 0..n {
            let med = codes::MEDS[self.rng.gen_range(0..codes::MEDS.len())];
            let start = self.recent_date(6);
            let end = (start + Duration::days(self.rng.gen_range(5..30))).min(self.today());
            self.medication(&med, start, Some(end), med.dose, false);
        }
    }

    pub(super) fn acute_observations(&mut self) {
        let panels = self.count(3, 9);
        for _ in 0..panels {
            let d = self.recent_date(6);
            for k in [
                &codes::HAEMOGLOBIN,
                &codes::WBC,
                &codes::PLATELETS,
                &codes::SODIUM,
                &codes::POTASSIUM,
                &codes::CREATININE,
                &codes::EGFR,
                &codes::CRP,
            ] {
                self.observation(k, d, k.mean);
            }
        }
    }

    pub(super) fn acute_documents(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.enherts-tr.nhs.uk/CodeSystem/document-category",
            "code": "clinical-letter",
            "display": "Clinical letter",
        }]});
        let n = self.count(1, 6);
        for k in 0..n {
            let d = self.recent_date(6);
            let problem = codes::ACUTE_PROBLEMS[self.rng.gen_range(0..codes::ACUTE_PROBLEMS.len())];
            let (type_code, title) = if k % 2 == 0 {
                (codes::DISCHARGE_SUMMARY, "Discharge summary")
            } else {
                (codes::CLINIC_LETTER, "Outpatient clinic letter")
            };
            let text = format!(
                "{title}\n\nSeen on {} with {}. Investigations reviewed. Plan discussed with the patient. \
                 Please continue current medication and review in primary care in two weeks.",
                day(d),
                problem.display.to_lowercase()
            );
            if self.rng.gen_bool(0.5) {
                self.document(
                    cc(SNOMED, &type_code),
                    category.clone(),
                    title,
                    &text,
                    "text/plain",
                    d,
                    false,
                );
            } else {
                let html = format!(
                    "<html><body><h1>{title}</h1><p>{}</p></body></html>",
                    text.replace('\n', " ")
                );
                self.document(
                    cc(SNOMED, &type_code),
                    category.clone(),
                    title,
                    &html,
                    "text/html",
                    d,
                    false,
                );
            }
        }
        for (s, d) in self.prof.sensitive.clone() {
            let text = format!(
                "Sexual and reproductive health clinic letter.\n\nDiagnosis: {}. Confidential: not for onward disclosure.",
                codes::SENSITIVE[s].display
            );
            self.document(
                cc(SNOMED, &codes::CLINIC_LETTER),
                category.clone(),
                "Clinic letter",
                &text,
                "text/plain",
                d,
                true,
            );
        }
        if self.t.hostile {
            let d = self.recent_date(1);
            let html = format!(
                "<html><body><h1>Discharge summary</h1><p>{SCRIPT}</p><p>{IMG}</p><p>{RLO}</p><p>{ZERO_WIDTH}</p><p>{}</p></body></html>",
                long_text()
            );
            self.document(
                cc(SNOMED, &codes::DISCHARGE_SUMMARY),
                category.clone(),
                &format!("Discharge {SCRIPT}"),
                &html,
                "text/html",
                d,
                false,
            );
        }
        // Some letters are held as PDFs the source sends only when asked (`Binary`).
        if self.rng.gen_bool(0.4) {
            let d = self.recent_date(6);
            self.pdf_document(
                cc(SNOMED, &codes::DISCHARGE_SUMMARY),
                category,
                "Discharge summary (PDF)",
                d,
            );
        }
    }

    // ---- community --------------------------------------------------------------------------
}
