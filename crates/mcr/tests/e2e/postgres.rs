//! The same product on PostgreSQL, the production store: a throwaway cluster (see
//! mcr-testkit), the demo's sources over HTTP, and the governance and view path end to end.

use crate::helpers::*;

#[tokio::test]
async fn the_record_view_works_on_postgres() {
    let url = mcr_testkit::postgres_url().await;
    let t = start_with(Some(url), 1_500).await;
    assert_eq!(t.demo.gateway.gateway.store().backend(), "postgres");

    let nhs = t.patient("all_four_sources", 0);
    let (status, body) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 403, "{body}");
    t.give_permission("ae.okafor", &nhs).await;
    let (status, bundle) = t.everything("ae.okafor", &nhs).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        provenance_orgs(&bundle).len(),
        4,
        "items from all four sources"
    );

    // The demographic match and the opt-out work the same way.
    let gp_less = t.patient("matched_by_demographics_only", 0);
    let (status, p) = t
        .get("ae.okafor", &format!("/fhir/Patient/{gp_less}"))
        .await;
    assert_eq!(status, 200);
    assert!(p.to_string().contains("\"demographics\""), "{p}");
    let (status, body) = t.everything("ae.okafor", &t.patient("opted_out", 0)).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "opted-out"
    );

    // Everything above was audited in one intact chain.
    match mcr_audit::verify(t.demo.gateway.gateway.store().as_ref())
        .await
        .unwrap()
    {
        mcr_audit::Verification::Intact { records, .. } => assert!(records >= 6, "{records}"),
        broken => panic!("{broken:?}"),
    }
}
