//! The community trust's records: encounters, problems, care plans, observations, episodes of care, alerts, immunisations and care teams.

use super::*;

impl Gen<'_> {
    pub(super) fn community_encounters(&mut self) {
        let n = self.count(15, 40);
        for _ in 0..n {
            let d = self.recent_date(4);
            if self.rng.gen_bool(0.7) {
                self.encounter(("HH", "home health"), &codes::HOME_VISIT, d, Some(d), None);
            } else {
                self.encounter(("AMB", "ambulatory"), &codes::OUTPATIENT, d, Some(d), None);
            }
        }
    }

    pub(super) fn community_conditions(&mut self) {
        let conds = self.prof.conds.clone();
        for (c, onset) in conds.into_iter().take(2) {
            let recorded = self.recent_date(4).max(onset);
            self.condition(&codes::CHRONIC[c], onset, recorded, true, false, None, None);
        }
        if self.age() >= 70 {
            let d = self.recent_date(2);
            self.condition(&codes::ACUTE_PROBLEMS[5], d, d, false, false, None, None);
        }
    }

    pub(super) fn community_care_plans(&mut self) {
        let category = cc(SNOMED, &codes::CARE_PLAN);
        let n = self.count(1, 3);
        for k in 0..n {
            let title = codes::COMMUNITY_PLANS[self.rng.gen_range(0..codes::COMMUNITY_PLANS.len())];
            let start = self.recent_date(3);
            let active = k == 0 || self.rng.gen_bool(0.3);
            let restricted = title.starts_with("Mental health") && self.t.sensitive;
            let description = if self.t.hostile && k == 0 {
                format!("{SCRIPT} {IMG} {}", long_text())
            } else {
                format!("{title}: goals agreed with the patient and family; review every 6 weeks.")
            };
            self.care_plan(
                category.clone(),
                title,
                &description,
                start,
                active,
                restricted,
            );
        }
    }

    pub(super) fn community_observations(&mut self) {
        let n = self.count(3, 10);
        self.series(&codes::WEIGHT, n, 3, codes::WEIGHT.mean);
        let n = self.count(3, 10);
        for _ in 0..n {
            let d = self.recent_date(3);
            self.blood_pressure(d, self.has(1));
        }
        let n = self.count(2, 8);
        self.series(&codes::SPO2, n, 3, codes::SPO2.mean);
        let n = self.count(1, 5);
        self.series(&codes::TEMPERATURE, n, 3, codes::TEMPERATURE.mean);
    }

    pub(super) fn community_episodes(&mut self) {
        let n = self.count(1, 3);
        for k in 0..n {
            let team = codes::COMMUNITY_TEAMS[self.rng.gen_range(0..codes::COMMUNITY_TEAMS.len())];
            let start = self.recent_date(4);
            self.episode(cc(SNOMED, &codes::REFERRAL), team, start, k == 0);
        }
    }

    pub(super) fn community_flags(&mut self) {
        if self.age() >= 70 || self.rng.gen_bool(0.3) {
            let d = self.recent_date(2);
            self.flag(SNOMED, &codes::FALLS, "clinical", d, None);
        }
        // A DNACPR decision, as palliative care teams hold it: a flag coded as such.
        if self.age() >= 80 && self.rng.gen_bool(0.4) {
            let d = self.recent_date(2);
            self.flag(
                SNOMED,
                &codes::DNACPR,
                "clinical",
                d,
                Some("DNACPR: do not attempt cardiopulmonary resuscitation. Form at home.".into()),
            );
        }
    }

    /// Seasonal flu every autumn for the over-65s (the last few seasons), and the
    /// pneumococcal vaccine once.
    pub(super) fn community_immunisations(&mut self) {
        if self.age() < 65 {
            return;
        }
        let year = self.today().year();
        for y in (year - 3)..year {
            let Some(d) = NaiveDate::from_ymd_opt(y, 10, self.rng.gen_range(1..=28)) else {
                continue;
            };
            if d >= self.today() || self.rng.gen_bool(0.2) {
                continue;
            }
            self.immunisation(&codes::FLU_VACCINE, d);
        }
        if self.rng.gen_bool(0.7) {
            let d = self.recent_date(6);
            self.immunisation(&codes::PNEUMOCOCCAL_VACCINE, d);
        }
    }

    fn immunisation(&mut self, vaccine: &Code, d: NaiveDate) {
        let batch = format!("B{}", self.rng.gen_range(10_000..99_999));
        let r = json!({
            "resourceType": "Immunization",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "completed",
            "vaccineCode": cc(codes::CVX, vaccine),
            "patient": self.subject(),
            "occurrenceDateTime": day(d),
            "recorded": day(d),
            "primarySource": true,
            "lotNumber": batch,
            "performer": [{ "actor": self.provider.clone() }],
        });
        self.out.push(r);
    }

    /// The community team caring for the patient now, when there is one.
    pub(super) fn community_care_teams(&mut self) {
        if self.age() < 60 && !self.rng.gen_bool(0.2) {
            return;
        }
        let team = codes::COMMUNITY_TEAMS[self.rng.gen_range(0..codes::COMMUNITY_TEAMS.len())];
        let start = self.recent_date(3);
        let r = json!({
            "resourceType": "CareTeam",
            "id": self.next_id(),
            "meta": self.meta(start, false),
            "status": "active",
            "name": team,
            "subject": self.subject(),
            "period": { "start": day(start) },
            "participant": [{
                "role": [{ "text": "Named nurse" }],
                "member": { "type": "PractitionerRole", "display": format!("Named nurse, {team}") },
            }],
            "managingOrganization": [self.provider.clone()],
        });
        self.out.push(r);
    }

    // ---- social care ------------------------------------------------------------------------
}
