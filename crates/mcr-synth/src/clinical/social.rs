//! The council's social care records: care plans, contacts, assessments, episodes, legal decisions and alerts.

use super::*;

impl Gen<'_> {
    pub(super) fn social_care_plans(&mut self) {
        let n = self.count(1, 3);
        for k in 0..n {
            let title =
                codes::SOCIAL_CARE_PLANS[self.rng.gen_range(0..codes::SOCIAL_CARE_PLANS.len())];
            let category = json!({ "coding": [
                { "system": SNOMED, "code": codes::CARE_PLAN.code, "display": codes::CARE_PLAN.display },
                { "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/care-plan-type",
                  "code": title.to_lowercase().replace([' ', '\''], "-"), "display": title },
            ], "text": title });
            let start = self.recent_date(3);
            let description = format!(
                "{title}: two calls a day for personal care; meals on wheels; key safe at the property."
            );
            self.care_plan(category, title, &description, start, k == 0, false);
        }
    }

    pub(super) fn social_contacts(&mut self) {
        let n = self.rng.gen_range(1..=4) + if self.t.large { 2 } else { 0 };
        for k in 0..n {
            let rel = codes::RELATIONSHIPS[self.rng.gen_range(0..codes::RELATIONSHIPS.len())];
            let female = matches!(rel.code, "DAU" | "WIFE" | "SIS")
                || (!matches!(rel.code, "SON" | "HUSB" | "BRO") && self.rng.gen_bool(0.5));
            let given_list = if female {
                names::GIVEN_FEMALE
            } else {
                names::GIVEN_MALE
            };
            let given = given_list[self.rng.gen_range(0..given_list.len())].to_owned();
            let family = if matches!(rel.code, "NBOR" | "FRND") {
                names::SURNAMES[self.rng.gen_range(0..names::SURNAMES.len())].to_owned()
            } else {
                self.p.family.clone()
            };
            let given = if self.t.hostile && k == 0 {
                format!("{given}{IMG}")
            } else {
                given
            };
            let d = self.recent_date(3);
            let r = json!({
                "resourceType": "RelatedPerson",
                "id": self.next_id(),
                "meta": self.meta(d, false),
                "active": true,
                "patient": self.subject(),
                "relationship": [cc(codes::ROLE_CODE, &rel)],
                "name": [{ "family": family, "given": [given] }],
                "telecom": [{ "system": "phone", "value": format!("07700 900{:03}", self.rng.gen_range(0..1000)), "use": "mobile" }],
            });
            self.out.push(r);
        }
    }

    pub(super) fn social_assessments(&mut self) {
        let category = json!({ "coding": [{
            "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/document-category",
            "code": "assessment",
            "display": "Assessment",
        }]});
        let n = self.count(2, 8);
        for _ in 0..n {
            let title =
                codes::SOCIAL_ASSESSMENTS[self.rng.gen_range(0..codes::SOCIAL_ASSESSMENTS.len())];
            let type_ = json!({ "coding": [{
                "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/assessment-type",
                "code": title.to_lowercase().replace([' ', '\''], "-"),
                "display": title,
            }], "text": title });
            let d = self.recent_date(4);
            let text = format!(
                "{title}\n\nCompleted {} at home with the person and their daughter present. Eligible needs identified \
                 under the Care Act 2014: personal care, nutrition, maintaining a habitable home.",
                day(d)
            );
            self.document(
                type_,
                category.clone(),
                title,
                &text,
                "text/plain",
                d,
                false,
            );
        }
    }

    pub(super) fn social_episodes(&mut self) {
        let n = self.rng.gen_range(1..=2);
        for k in 0..n {
            let type_ = json!({ "coding": [{
                "system": "https://fhir.hertfordshire.gov.uk/CodeSystem/case-type",
                "code": "allocated-case",
                "display": "Allocated case",
            }]});
            let team = format!("Adult Care Services {} locality team", self.p.town);
            let start = self.recent_date(4);
            self.episode(type_, &team, start, k == 0);
        }
    }

    /// Lasting powers of attorney for health and welfare and advance decisions to refuse
    /// treatment, as the council's adult social care system records them: `Consent`
    /// (scope `adr`, the decision's SNOMED CT code as its category).
    pub(super) fn social_legal_decisions(&mut self) {
        if self.age() < 70 {
            return;
        }
        if self.rng.gen_bool(0.35) {
            let d = self.recent_date(8);
            let rel = codes::RELATIONSHIPS[self.rng.gen_range(0..4)];
            self.legal_consent(
                &codes::LPA_HEALTH,
                "permit",
                d,
                Some(("Attorney", rel.display)),
            );
        }
        if self.rng.gen_bool(0.15) {
            let d = self.recent_date(8);
            self.legal_consent(&codes::ADRT, "deny", d, None);
        }
    }

    fn legal_consent(
        &mut self,
        code: &Code,
        provision: &str,
        d: NaiveDate,
        actor: Option<(&str, &str)>,
    ) {
        let mut r = json!({
            "resourceType": "Consent",
            "id": self.next_id(),
            "meta": self.meta(d, false),
            "status": "active",
            "scope": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "adr", "display": "Advanced Care Directive",
            }]},
            "category": [cc(SNOMED, code)],
            "patient": self.subject(),
            "dateTime": day(d),
            "organization": [self.provider.clone()],
            "policy": [{ "uri": "https://www.legislation.gov.uk/ukpga/2005/9" }],
            "provision": { "type": provision, "period": { "start": day(d) } },
        });
        if let Some((role, who)) = actor {
            r["provision"]["actor"] = json!([{
                "role": { "text": role },
                "reference": { "display": format!("The patient's {who}") },
            }]);
        }
        self.out.push(r);
    }

    pub(super) fn social_flags(&mut self) {
        let system = "https://fhir.hertfordshire.gov.uk/CodeSystem/alert";
        let n = self.rng.gen_range(0..=3);
        let mut picks: Vec<usize> = (0..codes::SOCIAL_FLAGS.len()).collect();
        picks.shuffle(&mut self.rng);
        for (k, i) in picks
            .into_iter()
            .take(n.max(usize::from(self.t.hostile)))
            .enumerate()
        {
            let d = self.recent_date(3);
            let text = (self.t.hostile && k == 0).then(|| format!("{RLO} {ZERO_WIDTH}"));
            let category = if i == 2 { "safety" } else { "admin" };
            self.flag(system, &codes::SOCIAL_FLAGS[i], category, d, text);
        }
    }
}
