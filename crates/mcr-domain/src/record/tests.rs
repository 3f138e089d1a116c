use super::*;

fn outcome(status: SourceStatus, unsearchable: Vec<UnsearchableForm>) -> SourceOutcome {
    SourceOutcome {
        source: SourceId::parse("acute").expect("id"),
        org_code: OdsCode::parse("RWH").expect("ods"),
        org_name: "East and North Hertfordshire NHS Trust".into(),
        status,
        items: 3,
        withheld: 0,
        untied: 0,
        another_patient: 0,
        elapsed_ms: 1,
        warnings: Vec::new(),
        not_shown: Vec::new(),
        unsearchable,
    }
}

#[test]
fn the_forms_a_search_cannot_find_are_one_line_and_only_for_a_source_that_answered() {
    use UnsearchableForm::{Contained, Identifier, OtherServer};
    assert_eq!(
        outcome(SourceStatus::Ok, vec![Contained]).unsearchable_sentence().as_deref(),
        Some("East and North Hertfordshire NHS Trust's search cannot find items that name the patient inside the item; any such items are not shown.")
    );
    let partial = SourceStatus::Partial(FailureReason::Timeout { after_ms: 3000 });
    assert_eq!(
        outcome(partial.clone(), vec![Identifier, OtherServer, Contained]).unsearchable_sentence().as_deref(),
        Some("East and North Hertfordshire NHS Trust's search cannot find items that name the patient only by NHS number, by an address outside this region's sources or inside the item; any such items are not shown.")
    );
    assert_eq!(
        outcome(partial, vec![OtherServer, Contained]).unsearchable_sentence().as_deref(),
        Some("East and North Hertfordshire NHS Trust's search cannot find items that name the patient by an address outside this region's sources or inside the item; any such items are not shown.")
    );
    assert_eq!(
        outcome(SourceStatus::Ok, Vec::new()).unsearchable_sentence(),
        None
    );
    // A failed source's whole record is missing, and said so: nothing more to say.
    let failed = SourceStatus::Failed(FailureReason::Timeout { after_ms: 3000 });
    assert_eq!(
        outcome(failed, vec![Contained]).unsearchable_sentence(),
        None
    );
    // The operators' page of sources says the same words, from the same place.
    assert_eq!(
        UnsearchableForm::cannot_find(&UnsearchableForm::ALL).as_deref(),
        Some("cannot find items that name the patient only by NHS number, by an address outside this region's sources or inside the item")
    );
    assert_eq!(UnsearchableForm::cannot_find(&[]), None);
    assert_eq!(
        (Identifier.code(), OtherServer.code(), Contained.code()),
        ("identifier", "other-server", "contained")
    );
}
