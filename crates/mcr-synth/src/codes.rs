//! Code catalogues used by the generator. Codes are real SNOMED CT / LOINC concepts where the
//! generator needs a known meaning; dm+d identifiers are plausible VMP ids for synthetic use.

pub const SNOMED: &str = "http://snomed.info/sct";
pub const LOINC: &str = "http://loinc.org";
pub const DMD: &str = "https://dmd.nhs.uk";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

/// A code in a system.
#[derive(Debug, Clone, Copy)]
pub struct Code {
    pub code: &'static str,
    pub display: &'static str,
}

const fn c(code: &'static str, display: &'static str) -> Code {
    Code { code, display }
}

/// Long-term conditions (SNOMED CT). Index positions are referred to by [`MEDS_FOR`].
pub const CHRONIC: &[Code] = &[
    c("44054006", "Type 2 diabetes mellitus"),
    c("38341003", "Hypertensive disorder"),
    c("195967001", "Asthma"),
    c("13645005", "Chronic obstructive lung disease"),
    c("49436004", "Atrial fibrillation"),
    c("84114007", "Heart failure"),
    c("709044004", "Chronic kidney disease"),
    c("35489007", "Depressive disorder"),
    c("197480006", "Anxiety disorder"),
    c("40930008", "Hypothyroidism"),
    c("396275006", "Osteoarthritis"),
    c("55822004", "Hyperlipidaemia"),
    c("235595009", "Gastro-oesophageal reflux disease"),
    c("84757009", "Epilepsy"),
    c("52448006", "Dementia"),
    c("64859006", "Osteoporosis"),
    c("22298006", "Myocardial infarction"),
    c("230690007", "Cerebrovascular accident"),
];

/// Short-lived problems, mostly resolved.
pub const MINOR: &[Code] = &[
    c("54150009", "Upper respiratory infection"),
    c("68566005", "Urinary tract infectious disease"),
    c("161891005", "Backache"),
    c("43116000", "Eczema"),
    c("90176007", "Tonsillitis"),
    c("9826008", "Conjunctivitis"),
    c("65363002", "Otitis media"),
    c("44465007", "Sprain of ankle"),
    c("37796009", "Migraine"),
    c("271737000", "Anaemia"),
];

/// Problems a hospital records on admission or attendance.
pub const ACUTE_PROBLEMS: &[Code] = &[
    c("233604007", "Pneumonia"),
    c("125605004", "Fracture of bone"),
    c("68566005", "Urinary tract infectious disease"),
    c("29857009", "Chest pain"),
    c("91302008", "Sepsis"),
    c("1912002", "Fall"),
    c("25064002", "Headache"),
    c("21522001", "Abdominal pain"),
];

/// Medicines (dm+d VMPs): code, display, usual dose text, a differently worded or different dose.
#[derive(Debug, Clone, Copy)]
pub struct Med {
    pub code: &'static str,
    pub display: &'static str,
    pub dose: &'static str,
    pub other_dose: &'static str,
}

const fn m(
    code: &'static str,
    display: &'static str,
    dose: &'static str,
    other: &'static str,
) -> Med {
    Med {
        code,
        display,
        dose,
        other_dose: other,
    }
}

pub const MEDS: &[Med] = &[
    m(
        "325278007",
        "Metformin 500mg tablets",
        "One tablet twice a day with meals",
        "Two tablets twice a day with meals",
    ), // 0
    m(
        "319283006",
        "Amlodipine 5mg tablets",
        "One tablet once a day",
        "Two tablets once a day",
    ), // 1
    m(
        "320176004",
        "Salbutamol 100micrograms/dose inhaler CFC free",
        "Two puffs when required",
        "Two puffs four times a day",
    ), // 2
    m(
        "320147002",
        "Beclometasone 100micrograms/dose inhaler CFC free",
        "Two puffs twice a day",
        "One puff twice a day",
    ), // 3
    m(
        "703907002",
        "Apixaban 5mg tablets",
        "One tablet twice a day",
        "One tablet once a day",
    ), // 4
    m(
        "318590006",
        "Bisoprolol 5mg tablets",
        "One tablet each morning",
        "Half a tablet each morning",
    ), // 5
    m(
        "318906001",
        "Ramipril 5mg capsules",
        "One capsule once a day",
        "One capsule twice a day",
    ), // 6
    m(
        "321949006",
        "Sertraline 50mg tablets",
        "One tablet once a day",
        "Two tablets once a day",
    ), // 7
    m(
        "376063004",
        "Levothyroxine sodium 50microgram tablets",
        "One tablet each morning before breakfast",
        "Two tablets each morning",
    ), // 8
    m(
        "322236009",
        "Paracetamol 500mg tablets",
        "Two tablets up to four times a day when required",
        "One tablet four times a day",
    ), // 9
    m(
        "320000009",
        "Atorvastatin 20mg tablets",
        "One tablet at night",
        "Two tablets at night",
    ), // 10
    m(
        "317335002",
        "Omeprazole 20mg gastro-resistant capsules",
        "One capsule once a day",
        "One capsule twice a day",
    ), // 11
    m(
        "322863000",
        "Lamotrigine 100mg tablets",
        "One tablet twice a day",
        "One tablet once a day",
    ), // 12
    m(
        "407773009",
        "Donepezil 5mg tablets",
        "One tablet at night",
        "Two tablets at night",
    ), // 13
    m(
        "329660003",
        "Alendronic acid 70mg tablets",
        "One tablet once a week",
        "One tablet once a day",
    ), // 14
    m(
        "319770000",
        "Aspirin 75mg dispersible tablets",
        "One tablet once a day",
        "Two tablets once a day",
    ), // 15
    m(
        "318135008",
        "Furosemide 40mg tablets",
        "One tablet each morning",
        "Two tablets each morning",
    ), // 16
    m(
        "323509004",
        "Amoxicillin 500mg capsules",
        "One capsule three times a day for 5 days",
        "One capsule three times a day for 7 days",
    ), // 17
    m(
        "324357003",
        "Nitrofurantoin 100mg modified-release capsules",
        "One capsule twice a day for 3 days",
        "One capsule twice a day for 7 days",
    ), // 18
];

/// The medicines (indices into [`MEDS`]) usually prescribed for each chronic condition
/// (same order as [`CHRONIC`]).
pub const MEDS_FOR: &[&[usize]] = &[
    &[0],      // diabetes
    &[1, 6],   // hypertension
    &[2, 3],   // asthma
    &[2],      // COPD
    &[4, 5],   // AF
    &[16, 5],  // heart failure
    &[],       // CKD
    &[7],      // depression
    &[7],      // anxiety
    &[8],      // hypothyroidism
    &[9],      // osteoarthritis
    &[10],     // hyperlipidaemia
    &[11],     // GORD
    &[12],     // epilepsy
    &[13],     // dementia
    &[14],     // osteoporosis
    &[15, 10], // MI
    &[15, 10], // stroke
];

/// Short courses (indices into [`MEDS`]).
pub const COURSES: &[usize] = &[17, 18];

/// An antiretroviral for patients with HIV; always labelled restricted.
pub const ANTIRETROVIRAL: Med = m(
    "42014611000001104",
    "Emtricitabine 200mg / Tenofovir disoproxil 245mg tablets",
    "One tablet once a day",
    "One tablet once a day",
);

/// Codes from the legally restricted / sensitive categories.
pub const SENSITIVE: &[Code] = &[
    c("86406008", "Human immunodeficiency virus infection"),
    c("105629000", "Chlamydial infection"),
    c("15628003", "Gonorrhoea"),
    c("52637005", "In vitro fertilisation"),
    c("386639001", "Termination of pregnancy"),
    c("93461009", "Gender dysphoria"),
];

pub const ALLERGIES: &[Code] = &[
    c("91936005", "Allergy to penicillin"),
    c("294505008", "Allergy to amoxicillin"),
    c("91935009", "Allergy to peanuts"),
    c("300913006", "Shellfish allergy"),
    c("293586001", "Allergy to aspirin"),
    c("300916003", "Latex allergy"),
    c("418689008", "Allergy to grass pollen"),
];

pub const REACTIONS: &[Code] = &[
    c("271807003", "Eruption of skin"),
    c("39579001", "Anaphylaxis"),
    c("267036007", "Dyspnoea"),
    c("418290006", "Itching"),
    c("422587007", "Nausea"),
];

/// An observation kind: LOINC code, display, UCUM unit, category, typical value and spread,
/// and decimals to round to.
#[derive(Debug, Clone, Copy)]
pub struct ObsKind {
    pub code: &'static str,
    pub display: &'static str,
    pub unit: &'static str,
    pub category: &'static str,
    pub mean: f64,
    pub sd: f64,
    pub decimals: i32,
}

const fn o(
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    category: &'static str,
    mean: f64,
    sd: f64,
    decimals: i32,
) -> ObsKind {
    ObsKind {
        code,
        display,
        unit,
        category,
        mean,
        sd,
        decimals,
    }
}

pub const HEART_RATE: ObsKind = o("8867-4", "Heart rate", "/min", "vital-signs", 74.0, 9.0, 0);
pub const WEIGHT: ObsKind = o("29463-7", "Body weight", "kg", "vital-signs", 78.0, 14.0, 1);
pub const BMI: ObsKind = o(
    "39156-5",
    "Body mass index (BMI) [Ratio]",
    "kg/m2",
    "vital-signs",
    27.0,
    4.0,
    1,
);
pub const TEMPERATURE: ObsKind = o(
    "8310-5",
    "Body temperature",
    "Cel",
    "vital-signs",
    36.8,
    0.4,
    1,
);
pub const SPO2: ObsKind = o(
    "59408-5",
    "Oxygen saturation in Arterial blood by Pulse oximetry",
    "%",
    "vital-signs",
    97.0,
    1.5,
    0,
);
pub const HBA1C: ObsKind = o(
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    "mmol/mol",
    "laboratory",
    40.0,
    4.0,
    0,
);
pub const EGFR: ObsKind = o(
    "33914-3",
    "Glomerular filtration rate/1.73 sq M.predicted",
    "mL/min/{1.73_m2}",
    "laboratory",
    82.0,
    12.0,
    0,
);
pub const CHOLESTEROL: ObsKind = o(
    "2093-3",
    "Cholesterol [Moles/volume] in Serum or Plasma",
    "mmol/L",
    "laboratory",
    5.0,
    0.8,
    1,
);
pub const HAEMOGLOBIN: ObsKind = o(
    "718-7",
    "Hemoglobin [Mass/volume] in Blood",
    "g/L",
    "laboratory",
    135.0,
    12.0,
    0,
);
pub const WBC: ObsKind = o(
    "6690-2",
    "Leukocytes [#/volume] in Blood",
    "10*9/L",
    "laboratory",
    7.0,
    2.0,
    1,
);
pub const PLATELETS: ObsKind = o(
    "777-3",
    "Platelets [#/volume] in Blood",
    "10*9/L",
    "laboratory",
    250.0,
    55.0,
    0,
);
pub const SODIUM: ObsKind = o(
    "2951-2",
    "Sodium [Moles/volume] in Serum or Plasma",
    "mmol/L",
    "laboratory",
    139.0,
    3.0,
    0,
);
pub const POTASSIUM: ObsKind = o(
    "2823-3",
    "Potassium [Moles/volume] in Serum or Plasma",
    "mmol/L",
    "laboratory",
    4.3,
    0.4,
    1,
);
pub const CREATININE: ObsKind = o(
    "2160-0",
    "Creatinine [Moles/volume] in Serum or Plasma",
    "umol/L",
    "laboratory",
    84.0,
    18.0,
    0,
);
pub const CRP: ObsKind = o(
    "1988-5",
    "C reactive protein [Mass/volume] in Serum or Plasma",
    "mg/L",
    "laboratory",
    6.0,
    8.0,
    0,
);

pub const BP_PANEL: Code = c("85354-9", "Blood pressure panel with all children optional");
pub const BP_SYSTOLIC: Code = c("8480-6", "Systolic blood pressure");
pub const BP_DIASTOLIC: Code = c("8462-4", "Diastolic blood pressure");

pub const GP_ENCOUNTER_TYPES: &[Code] = &[
    c("185347001", "Encounter for problem"),
    c("185317003", "Telephone encounter"),
    c("390906007", "Follow-up encounter"),
    c("439708006", "Home visit"),
];

pub const GP_FLAGS: &[Code] = &[
    c("129839007", "At risk for falls"),
    c("304253006", "Not for resuscitation"),
    c("105529008", "Lives alone"),
    c("110359009", "Intellectual disability"),
    c("15167005", "Alcohol abuse"),
];

pub const FALLS: Code = c("129839007", "At risk for falls");
pub const CARE_PLAN: Code = c("734163000", "Care plan");
pub const REFERRAL: Code = c("3457005", "Patient referral");
pub const DISCHARGE_SUMMARY: Code = c("373942005", "Discharge summary");
pub const CLINIC_LETTER: Code = c("371531000", "Report of clinical encounter");
pub const ED_VISIT: Code = c("4525004", "Emergency department patient visit");
pub const ADMISSION: Code = c("32485007", "Hospital admission");
pub const OUTPATIENT: Code = c("11429006", "Consultation");
pub const HOME_VISIT: Code = c("439708006", "Home visit");

/// Social care flags (the council's own code system).
pub const SOCIAL_FLAGS: &[Code] = &[
    c("lone-working-risk", "Lone worker risk: visit in pairs"),
    c("key-safe", "Key safe at property"),
    c("safeguarding-adult", "Safeguarding: adult at risk"),
    c("dog-at-property", "Dog at property"),
    c(
        "hearing-impaired",
        "Hearing impaired: use text or interpreter",
    ),
];

pub const SOCIAL_CARE_PLANS: &[&str] = &[
    "Care and support plan",
    "Reablement plan",
    "Carer's support plan",
    "Direct payment support plan",
];

pub const SOCIAL_ASSESSMENTS: &[&str] = &[
    "Care Act needs assessment",
    "Carer's assessment",
    "Financial assessment",
    "Occupational therapy home assessment",
    "Review of care and support plan",
];

pub const COMMUNITY_PLANS: &[&str] = &[
    "District nursing care plan",
    "Diabetes self-management plan",
    "Falls prevention plan",
    "Mental health crisis plan",
    "Wound care plan",
];

pub const COMMUNITY_TEAMS: &[&str] = &[
    "District Nursing Team North Herts",
    "District Nursing Team Dacorum",
    "Community Rehabilitation Team",
    "Adult Community Mental Health Team",
    "Community Diabetes Service",
];

/// Relationship codes (v3 RoleCode) for key contacts.
pub const RELATIONSHIPS: &[Code] = &[
    c("DAU", "daughter"),
    c("SON", "son"),
    c("WIFE", "wife"),
    c("HUSB", "husband"),
    c("SIS", "sister"),
    c("BRO", "brother"),
    c("NBOR", "neighbor"),
    c("FRND", "friend"),
];

/// Legal and end-of-life decisions (SNOMED CT; the gateway recognises them by these codes:
/// `mcr_fhir::END_OF_LIFE_CODES`, where each is cited).
pub const DNACPR: Code = c(
    "450476008",
    "Not for attempted cardiopulmonary resuscitation",
);
pub const ADRT: Code = c(
    "816301000000100",
    "Has advance decision to refuse treatment (Mental Capacity Act 2005)",
);
pub const LPA_HEALTH: Code = c(
    "425393008",
    "Active durable power of attorney for healthcare",
);

/// Vaccines (CVX, the HL7 vaccine code system): what a community nursing team gives at home.
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const FLU_VACCINE: Code = c("141", "Influenza, seasonal, injectable");
pub const PNEUMOCOCCAL_VACCINE: Code = c("33", "Pneumococcal polysaccharide vaccine, 23 valent");

/// Procedures done at the acute trust (SNOMED CT).
pub const PROCEDURES: &[Code] = &[
    c("80146002", "Appendicectomy"),
    c("73761001", "Colonoscopy"),
    c("52734007", "Total hip replacement"),
    c("38102005", "Cholecystectomy"),
    c("174041007", "Laparoscopic cholecystectomy"),
];

/// Outpatient clinics an appointment may be booked in.
pub const CLINICS: &[&str] = &[
    "Cardiology outpatient clinic",
    "Diabetes and endocrinology clinic",
    "Respiratory clinic",
    "Orthopaedic fracture clinic",
    "Falls clinic",
];
