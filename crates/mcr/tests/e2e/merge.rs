//! Merge and unmerge of index persons over HTTP, as records staff do it from the matching
//! pages, and what clinicians then see: the retired number's record says where the person is
//! (nothing of either record), the merged person is opted out if either number was (the
//! stricter wins), a full sync while merged keeps the merge, and an unmerge gives each number
//! back its own opt-out and sends a record linked while merged to be checked.

use crate::helpers::*;

#[tokio::test]
async fn merge_then_unmerge_keeps_every_opt_out_and_points_the_retired_number_to_the_survivor() {
    let t = start().await;
    let store = t.demo.gateway.gateway.store().clone();
    let survivor = t.patient("all_four_sources", 0);
    let retired = t.patient("opted_out", 0);
    let nhs = |s: &str| mcr_domain::NhsNumber::parse(s).expect("test step");
    let retired_given = store
        .patient(&nhs(&retired))
        .await
        .expect("test step")
        .expect("the opted-out patient is in the index")
        .given;

    let clinician = sign_in(&t, "ae.okafor").await;
    let (status, html) = clinician.get(&format!("/app/patient/{survivor}")).await;
    assert_eq!(status, 200, "the survivor is not opted out before: {html}");
    let (status, _) = clinician.get(&format!("/app/patient/{retired}")).await;
    assert_eq!(status, 403, "the retired number has opted out");

    // Clinicians do not merge.
    let (status, _) = clinician.get("/app/matching/merges").await;
    assert_eq!(status, 403);
    let (status, _) = clinician
        .post_then(
            "/app/matching/merge",
            &[
                ("retired", &retired),
                ("survivor", &survivor),
                ("reason", "no"),
            ],
        )
        .await;
    assert_eq!(status, 403);

    // Records staff merge only people their own organisation holds a record of: a GP
    // practice's receptionist holds neither of these (the GP system is its own organisation).
    let receptionist = sign_in(&t, "rec.murphy").await;
    let (status, html) = receptionist
        .get(&format!(
            "/app/matching/merge?retired={retired}&survivor={survivor}"
        ))
        .await;
    assert_eq!(status, 403, "{html}");
    assert!(
        html.contains("a privacy officer can merge the others"),
        "{html}"
    );

    let records = sign_in(&t, "rec.obi").await;
    let (status, html) = records.get("/app/matching").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("/app/matching/merges"),
        "the queue links to merges"
    );
    let (status, html) = records.get("/app/matching/merges").await;
    assert_eq!(status, 200, "{html}");
    let (status, html) = records
        .get("/app/matching/merge?retired=123&survivor=")
        .await;
    assert_eq!(status, 400, "bad numbers are the form again with errors");
    assert!(html.contains("nhsuk-error-summary"), "{html}");

    // The confirmation: side by side, and it says the merged person will be opted out.
    let (status, html) = records
        .get(&format!(
            "/app/matching/merge?retired={retired}&survivor={survivor}"
        ))
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Check before you merge"), "{html}");
    assert!(
        html.contains("so the merged record will be opted out"),
        "{html}"
    );
    let (status, html) = records
        .post_then(
            "/app/matching/merge",
            &[
                ("retired", &retired),
                ("survivor", &survivor),
                ("reason", "  "),
            ],
        )
        .await;
    assert_eq!(status, 400, "a reason is required");
    assert!(html.contains("Enter the reason"), "{html}");
    let (status, location) = records
        .post_then(
            "/app/matching/merge",
            &[
                ("retired", &retired),
                ("survivor", &survivor),
                ("reason", "PDS: superseded NHS number"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{location}");
    let merge_id: i64 = location
        .rsplit('=')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("the merge's id in the redirect");

    // The retired number's record: a sentence pointing to the survivor, nothing else.
    let (status, html) = clinician.get(&format!("/app/patient/{retired}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("was merged"), "{html}");
    assert!(
        html.contains(&format!("href=\"/app/patient/{survivor}\"")),
        "{html}"
    );
    assert!(!html.contains(&retired_given), "nothing of the record");
    // Found by its number, it says the same.
    let (status, html) = clinician.get(&format!("/app?nhs={retired}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("was merged"), "{html}");
    let (status, body) = t
        .get("ae.okafor", &format!("/fhir/Patient/{retired}"))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = t.everything("ae.okafor", &retired).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("merged into")),
        "{body}"
    );
    // The stricter wins: the merged person is opted out.
    let (status, html) = clinician.get(&format!("/app/patient/{survivor}")).await;
    assert_eq!(status, 403, "the retired number's opt-out holds: {html}");
    assert!(html.contains("opted out"), "{html}");

    // A full sync while merged does not undo it: the retired number's records stay the
    // survivor's and it is not an index person again.
    let report = t
        .demo
        .gateway
        .gateway
        .indexer()
        .sync(true)
        .await
        .expect("test step");
    assert!(
        report
            .sources
            .iter()
            .map(|s| s.merged_redirected)
            .sum::<usize>()
            > 0,
        "{report:?}"
    );
    assert_eq!(
        store.patient(&nhs(&retired)).await.expect("test step"),
        None
    );
    assert!(store
        .links(&nhs(&retired))
        .await
        .expect("test step")
        .is_empty());
    let (status, _) = clinician.get(&format!("/app/patient/{survivor}")).await;
    assert_eq!(status, 403, "still opted out after the sync");

    // A record that arrives while merged, under the retired number, goes to the survivor.
    let acute = mcr_domain::SourceId::parse("acute").expect("test step");
    let mut late = store.links(&nhs(&survivor)).await.expect("test step")[0].clone();
    late.source = acute.clone();
    late.local_id = "H-LATE".into();
    late.nhs_number = nhs(&retired);
    store.upsert_links(&[late]).await.expect("test step");
    assert_eq!(
        store
            .link_for_local(&acute, "H-LATE")
            .await
            .expect("test step")
            .map(|l| l.nhs_number.to_string()),
        Some(survivor.clone())
    );

    let (status, html) = records.get("/app/matching/merges").await;
    assert_eq!(status, 200);
    assert!(html.contains("PDS: superseded NHS number"), "{html}");
    assert!(html.contains("the opt-out was carried over"), "{html}");
    let (status, html) = records
        .get(&format!("/app/matching/merges/{merge_id}/unmerge"))
        .await;
    assert_eq!(status, 200, "{html}");
    let (status, location) = records
        .post_then(
            &format!("/app/matching/merges/{merge_id}/unmerge"),
            &[(
                "reason",
                "Two people after all: checked with the GP practice",
            )],
        )
        .await;
    assert_eq!(status, 303, "{location}");

    // Each number has its own choice again: the survivor never opted out, the retired did.
    let (status, html) = clinician.get(&format!("/app/patient/{survivor}")).await;
    assert_eq!(status, 200, "{html}");
    let (status, _) = clinician.get(&format!("/app/patient/{retired}")).await;
    assert_eq!(status, 403);
    // The record linked while merged is to be checked against both, not guessed.
    assert_eq!(
        store
            .link_for_local(&acute, "H-LATE")
            .await
            .expect("test step"),
        None
    );
    let (_, html) = records.get("/app/matching").await;
    assert!(
        html.contains("H-LATE") && html.contains("Merge undone"),
        "{html}"
    );
    let (_, html) = records.get("/app/matching/merges").await;
    assert!(html.contains("Two people after all"), "{html}");
    assert!(html.contains("sent to be checked"), "{html}");

    let trail = store.audit_rows(0, 100_000).await.expect("test step");
    let of = |action: &str| {
        trail
            .iter()
            .filter(|r| r.record.action == action)
            .map(|r| (r.record.outcome.clone(), r.record.payload.clone()))
            .collect::<Vec<_>>()
    };
    let merges = of("merge-patients");
    assert!(
        merges
            .iter()
            .any(|(o, p)| o == "recorded" && p.contains("PDS: superseded NHS number")),
        "{merges:?}"
    );
    assert!(
        merges.iter().any(|(o, _)| o == "deny"),
        "the clinician's refusal is audited: {merges:?}"
    );
    assert!(of("unmerge-patients")
        .iter()
        .any(|(o, p)| o == "recorded" && p.contains("sent to review")));
    assert!(!of("read-merges").is_empty(), "reads are audited too");
}
