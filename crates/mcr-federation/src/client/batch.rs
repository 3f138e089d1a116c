//! A view's searches and read in one FHIR `batch`, for a source that declares the interaction:
//! the request written out, the `batch-response` read entry by entry, later pages followed.

use futures::future::join_all;
use mcr_domain::FailureReason;
use serde_json::value::RawValue;
use serde_json::Value;

use super::budget::Budget;
use super::http::{add_ms, max_ms, HttpSource};
use super::page::{not_json, patient_from, Page, Seen};
use super::{Digest, Fetched};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;

/// A `batch-response` as read off the wire, in one pass: each search's page is read in place
/// as it comes ([`Page`]: only what the gateway looks at is decoded), and the read's resource
/// kept as its text.
struct BatchAnswer<'a> {
    resource_type: Option<Value>,
    kind: Option<Value>,
    entry: Option<Vec<BatchEntry<'a>>>,
}

/// What one entry of a `batch-response` answers: a search (its first page) or a read (the
/// resource).
#[derive(Debug)]
pub(super) enum Answered<'a> {
    Page(Page<'a>),
    Read(&'a RawValue),
}

struct BatchEntry<'a> {
    resource: Option<Answered<'a>>,
    response: Option<BatchEntryResponse>,
}

#[derive(serde::Deserialize)]
struct BatchEntryResponse {
    status: Option<String>,
}

/// Reads a `batch-response` whose entries answer, in order, searches and reads: `reads[i]`
/// says the `i`th entry answers a read. An entry past those asked is read as a search's
/// (the count is checked afterwards).
struct BatchSeed<'s> {
    reads: &'s [bool],
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = BatchAnswer<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = BatchAnswer<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a batch-response Bundle")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut answer = BatchAnswer {
            resource_type: None,
            kind: None,
            entry: None,
        };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "resourceType" => answer.resource_type = map.next_value()?,
                "type" => answer.kind = map.next_value()?,
                "entry" => {
                    answer.entry =
                        map.next_value_seed(OptionalSeed(EntriesSeed { reads: self.reads }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(answer)
    }
}

/// `null` or what `0` reads.
struct OptionalSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OptionalSeed<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptionalSeed<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

struct EntriesSeed<'s> {
    reads: &'s [bool],
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Vec<BatchEntry<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = Vec<BatchEntry<'de>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of batch entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(self.reads.len());
        loop {
            let read = self.reads.get(entries.len()).copied().unwrap_or(false);
            match seq.next_element_seed(EntrySeed { read })? {
                Some(entry) => entries.push(entry),
                None => return Ok(entries),
            }
        }
    }
}

struct EntrySeed {
    read: bool,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = BatchEntry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = BatchEntry<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a batch entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entry = BatchEntry {
            resource: None,
            response: None,
        };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "resource" if self.read => {
                    entry.resource = map
                        .next_value::<Option<&'de RawValue>>()?
                        .map(Answered::Read);
                }
                "resource" => {
                    entry.resource = map.next_value::<Option<Page<'de>>>()?.map(Answered::Page);
                }
                "response" => entry.response = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(entry)
    }
}

/// What each entry of a `batch-response` answers, in order: `reads[i]` says the `i`th of the
/// requests asked was a read, the others searches. An entry that failed fails the whole
/// answer, as a failed search would.
fn batch_entries<'a>(body: &'a [u8], reads: &[bool]) -> Result<Vec<Answered<'a>>, FailureReason> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let answer = BatchSeed { reads }
        .deserialize(&mut de)
        .and_then(|a| de.end().map(|()| a))
        .map_err(|e| not_json(&e))?;
    let is = |v: &Option<Value>, s: &str| v.as_ref().and_then(Value::as_str) == Some(s);
    if !is(&answer.resource_type, "Bundle") || !is(&answer.kind, "batch-response") {
        return Err(FailureReason::Malformed {
            detail: "a batch was not answered with a batch-response Bundle".into(),
        });
    }
    let entries = answer.entry.unwrap_or_default();
    let asked = reads.len();
    if entries.len() != asked {
        return Err(FailureReason::Malformed {
            detail: format!(
                "a batch of {asked} was answered with {} entries",
                entries.len()
            ),
        });
    }
    entries
        .into_iter()
        .map(|e| {
            let status = e
                .response
                .and_then(|r| r.status)
                .and_then(|s| s.get(..3).and_then(|code| code.parse::<u16>().ok()))
                .ok_or_else(|| FailureReason::Malformed {
                    detail: "a batch entry has no status".into(),
                })?;
            if !(200..300).contains(&status) {
                return Err(FailureReason::HttpStatus { status });
            }
            e.resource.ok_or_else(|| FailureReason::Malformed {
                detail: "a batch entry has no resource".into(),
            })
        })
        .collect()
}

impl HttpSource {
    /// [`HttpSource::ask_url`] relative to the base URL, as a batch entry names it.
    #[cfg(test)]
    fn batch_entry_url(
        &self,
        resource_type: &str,
        local_id: &str,
        count: &str,
    ) -> Result<String, FailureReason> {
        self.relative_to_base(&self.ask_url(resource_type, local_id, count)?)
    }

    /// `url` relative to the base URL, as a batch entry names it.
    fn relative_to_base(&self, url: &url::Url) -> Result<String, FailureReason> {
        let base = self.config.base_url.as_str().trim_end_matches('/');
        url.as_str()
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
            .ok_or_else(|| FailureReason::Malformed {
                detail: "a batch entry is not under the configured base URL".into(),
            })
    }

    /// A view's searches and read in one FHIR `batch`, answered in order by one
    /// `batch-response`; each search's later pages are then followed side by side. The source's
    /// time is the batch's plus the slowest search's later pages.
    pub(super) async fn fetch_batch(
        &self,
        local_id: &str,
        asks: &[(&str, url::Url)],
        budget: &std::sync::Arc<Budget>,
        digest: &Digest<'_>,
    ) -> Result<Fetched, FailureReason> {
        // Written out directly: building it as a `Value` tree cost each source's request
        // tens of microseconds before it could leave, and every view waits for the last.
        let mut batch = String::with_capacity(64 + 96 * asks.len());
        batch.push_str(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
        for (i, (_, url)) in asks.iter().enumerate() {
            if i > 0 {
                batch.push(',');
            }
            let url = Value::String(self.relative_to_base(url)?);
            batch.push_str(r#"{"request":{"method":"GET","url":"#);
            batch.push_str(&url.to_string());
            batch.push_str("}}");
        }
        batch.push_str("]}");
        let request = self
            .client
            .post(self.config.base_url.clone())
            .header(reqwest::header::CONTENT_TYPE, mcr_fhir::FHIR_JSON)
            .body(batch);
        let mut all = Fetched::default();
        let mut more = Vec::new();
        let batch_ms = {
            let Some((answer, ms)) = budget.page(self.body_of(request, budget)).await? else {
                return Ok(all);
            };
            let reads: Vec<bool> = asks.iter().map(|(t, _)| *t == "Patient").collect();
            for ((t, _), answered) in asks.iter().zip(batch_entries(&answer, &reads)?) {
                let page = match answered {
                    Answered::Read(raw) => {
                        all.resources.push(patient_from(raw, local_id, digest)?);
                        continue;
                    }
                    Answered::Page(page) => page,
                };
                let (kept, next, total, sent) = self.read_page(page, t, Some(local_id), digest)?;
                all.resources.extend(kept);
                let mut seen = Seen::default();
                seen.page(total, sent);
                match next {
                    Some(next) => more.push((next, *t, seen)),
                    None => {
                        if let Some(short) = seen.shortfall(t) {
                            budget.short(short);
                        }
                    }
                }
            }
            ms
        };
        let mut slowest: Option<f64> = None;
        let later = more
            .into_iter()
            .map(|(next, t, seen)| self.search_all(next, t, Some(local_id), budget, digest, seen));
        for r in join_all(later).await {
            let (resources, ms) = r?;
            all.resources.extend(resources);
            slowest = max_ms(slowest, ms);
        }
        all.source_ms = add_ms(batch_ms, slowest);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_entries, Answered};
    use crate::client::{HttpSource, SourceConfig};
    use mcr_domain::FailureReason;

    #[test]
    fn a_batch_asks_for_a_read_and_searches_by_relative_url() {
        let source = HttpSource::new(
            SourceConfig {
                id: mcr_domain::SourceId::parse("gp").expect("id"),
                organisation: mcr_domain::Organisation {
                    code: mcr_domain::OdsCode::parse("E82000").expect("ods"),
                    name: "GP".into(),
                    kind: mcr_domain::OrgKind::GpPractice,
                    member: true,
                    suspended: false,
                },
                base_url: url::Url::parse("https://gp.example/fhir/R4/").expect("url"),
                resource_types: vec!["Condition".into()],
                batch: true,
                kind: crate::client::SourceKind::FhirR4,
                gp_connect: None,
                deadline_ms: None,
                feed_timeout_secs: None,
                patient_search: crate::PatientSearch::default(),
                identifier_search: Default::default(),
            },
            reqwest::Client::new(),
            crate::FederationConfig::default(),
        );
        let batch_entry_url = |t: &str, id: &str, count: &str| source.batch_entry_url(t, id, count);
        assert_eq!(
            batch_entry_url("Condition", "GP 1&2", "200").expect("url"),
            "Condition?patient=GP+1%262&_count=200"
        );
        assert_eq!(
            batch_entry_url("Patient", "GP-000181", "200").expect("url"),
            "Patient/GP-000181"
        );
        assert_eq!(
            batch_entry_url("Patient", "a/b?c", "200").expect("url"),
            "Patient/a%2Fb%3Fc"
        );
    }

    #[test]
    fn a_batch_answer_gives_each_entrys_resource_in_order_or_says_what_is_wrong() {
        let ok = r#"{"resourceType":"Bundle","type":"batch-response","entry":[
            {"resource":{"resourceType":"Bundle","type":"searchset"},"response":{"status":"200 OK"}},
            {"resource":{"resourceType":"Patient","id":"p1"},"response":{"status":"200"}}]}"#;
        let got = batch_entries(ok.as_bytes(), &[false, true]).expect("read");
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Answered::Page(_)));
        assert!(matches!(&got[1], Answered::Read(raw) if raw.get().contains("p1")));

        let malformed =
            |body: &str, asked: usize| match batch_entries(body.as_bytes(), &vec![false; asked]) {
                Err(FailureReason::Malformed { detail }) => detail,
                other => panic!("{body}: {other:?}"),
            };
        assert!(malformed(ok, 3).contains("batch of 3 was answered with 2 entries"));
        assert!(malformed(
            r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#,
            0
        )
        .contains("batch-response"));
        assert!(malformed(
            r#"{"resourceType":"Bundle","type":"batch-response","entry":[{"resource":{}}]}"#,
            1
        )
        .contains("no status"));
        assert!(malformed(r#"{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200 OK"}}]}"#, 1)
            .contains("no resource"));
        assert!(malformed("<html>", 1).contains("not JSON"));
        // An entry that failed fails the source, with the entry's status.
        let failed = r#"{"resourceType":"Bundle","type":"batch-response","entry":[
            {"resource":{"resourceType":"Patient","id":"p1"},"response":{"status":"200 OK"}},
            {"response":{"status":"404 Not Found","outcome":{"resourceType":"OperationOutcome"}}}]}"#;
        assert!(matches!(
            batch_entries(failed.as_bytes(), &[true, false]),
            Err(FailureReason::HttpStatus { status: 404 })
        ));
    }
}
