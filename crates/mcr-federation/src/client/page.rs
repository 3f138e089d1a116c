//! Reading a search's pages: each page read in place (only what the gateway looks at is
//! decoded, each resource kept as its text), the resources of the wanted type kept, and the
//! `next` links followed on the same server, page after page.

use mcr_domain::FailureReason;
use mcr_fhir::Doc;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
use url::Url;

use super::budget::Budget;
use super::http::{add_ms, read_body, HttpSource};
use super::{Digest, Received};
use crate::merge::Digested;

/// Read one resource's text. The page's parser has already checked it is JSON; this fails
/// only for nesting past serde_json's limit.
fn read_resource(raw: &RawValue) -> Result<Doc<'_>, FailureReason> {
    Doc::parse(raw.get()).map_err(|_| FailureReason::Malformed {
        detail: "a resource could not be read".into(),
    })
}

/// A search result page as read off the wire: only what the gateway looks at is decoded;
/// each resource is kept as its text.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Page<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<Value>,
    /// How many resources the search matched in all (optional in R4).
    total: Option<Value>,
    link: Option<Value>,
    #[serde(borrow)]
    entry: Option<Vec<PageEntry<'a>>>,
}

/// Where a search's pages go: gathered into one list, or handed over one by one.
pub(super) enum Pages<'a, T> {
    Collect(&'a mut Vec<T>),
    Send(&'a tokio::sync::mpsc::Sender<Vec<T>>),
}

/// One page read: what was kept, the next page, the search's total if the page says it, and
/// how many resources of the type asked for the page sent.
pub(super) type PageRead<T> = (Vec<T>, Option<Url>, Option<u64>, u64);

/// What a search has seen so far: pages read, the total its first page said it matched
/// (`Bundle.total`), and the resources of the type asked for sent so far. A search whose
/// pages end with fewer sent than its total said is a shortfall
/// ([`FailureReason::Unpaged`]), never silence.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    pages: u32,
    total: Option<u64>,
    sent: u64,
}

impl Seen {
    /// One more page: its total (the first page's counts) and how many it sent.
    pub(super) fn page(&mut self, total: Option<u64>, sent: u64) {
        self.pages += 1;
        self.total = self.total.or(total);
        self.sent += sent;
    }

    /// The search ended (no next page): the shortfall, if the source sent fewer than it said.
    pub(super) fn shortfall(&self, want: &str) -> Option<FailureReason> {
        let held = self.total?;
        (held > self.sent).then(|| FailureReason::Unpaged {
            resource_type: want.to_owned(),
            held,
            sent: self.sent,
        })
    }
}

/// One `Bundle.entry`: its resource as text, borrowed from the page. An entry that is not an object, or has no
/// resource, is junk and is skipped (as a `Value` reader would). Read in one pass, keeping
/// the last `resource` key as a `Value` reader would.
#[derive(Debug)]
struct PageEntry<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for PageEntry<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct EntryVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EntryVisitor<'a> {
            type Value = PageEntry<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Bundle entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageEntry<'a>, A::Error> {
                let mut resource = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "resource" {
                        resource = Some(map.next_value::<&'de RawValue>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PageEntry(resource.filter(|r| r.get() != "null")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PageEntry<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PageEntry(None))
            }
            fn visit_unit<E>(self) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<PageEntry<'a>, E> {
                Ok(PageEntry(None))
            }
        }
        d.deserialize_any(EntryVisitor(std::marker::PhantomData))
    }
}

/// Why an answer could not be read: not JSON at all, or JSON of the wrong shape.
pub(super) fn not_json(e: &serde_json::Error) -> FailureReason {
    let what = if e.is_data() {
        "not a FHIR resource of the expected shape"
    } else {
        "not JSON"
    };
    FailureReason::Malformed {
        detail: format!("{what} at line {} column {}", e.line(), e.column()),
    }
}

/// A `Patient` read's answer, if it is the one asked for.
pub(super) fn patient_from(
    raw: &RawValue,
    local_id: &str,
    digest: &Digest<'_>,
) -> Result<Digested, FailureReason> {
    let doc = read_resource(raw)?;
    if mcr_fhir::resource_type(&doc) != Some("Patient")
        || mcr_fhir::resource_id(&doc) != Some(local_id)
    {
        return Err(FailureReason::Malformed {
            detail: "a Patient read returned something else".into(),
        });
    }
    Ok(digest(Received { doc: &doc, raw }))
}

/// One page asked for: its request and answer run as a task of their own, so that the page
/// before it can be read meanwhile. Dropped, it is called off (the search ended or failed,
/// or its caller gave up).
struct Asked(tokio::task::JoinHandle<Result<Option<Answer>, FailureReason>>);

/// A page's body and the source's own time for it.
type Answer = (Vec<u8>, Option<f64>);

impl Asked {
    /// Ask `source` for the page at `url`, within `budget` (its deadline and bytes).
    fn ask(source: &HttpSource, url: Url, budget: &Arc<Budget>) -> Self {
        let request = source.client.get(url);
        let budget = Arc::clone(budget);
        Self(tokio::spawn(async move {
            budget.page(read_body(request, &budget)).await
        }))
    }

    /// The page's body and the source's time for it; `None` if the deadline or the byte
    /// budget stopped it (recorded in the budget).
    async fn answer(mut self) -> Result<Option<Answer>, FailureReason> {
        match (&mut self.0).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(FailureReason::Unreachable {
                detail: "the request was called off".into(),
            }),
        }
    }
}

impl Drop for Asked {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `next` link of a search page, read before the page is: only the Bundle's top-level
/// keys up to `link` are looked at (servers write `link` before `entry`; where one does not,
/// the entries are skipped over, not built). The same link the page's reading finds, for any
/// page that reads: the first `link` key (a page with two is refused by that reading).
fn next_link_ahead(body: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, Error, IgnoredAny, MapAccess, Visitor};
    struct Links<'s>(&'s mut Option<Value>);
    impl<'de> Visitor<'de> for Links<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Bundle")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "link" {
                    *self.0 = Some(map.next_value::<Value>()?);
                    // Found: the rest of the page is not looked at.
                    return Err(A::Error::custom("found"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut links = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    // Its error is how the read stops at `link`, or a body that is not a Bundle: either way
    // nothing is asked ahead, and the page's full reading below says what is wrong with it.
    let _ = de.deserialize_map(Links(&mut links));
    mcr_fhir::next_link_in(&links?).map(str::to_owned)
}

impl HttpSource {
    /// Follow a search through all its pages, keeping the resources of type `want`.
    /// `budget` is the byte allowance left for this source in this view.
    /// `seen` says what was read of it already (the first page, in a batch).
    pub(super) async fn search_all<T: Send>(
        &self,
        first: Url,
        want: &str,
        patient: Option<&str>,
        budget: &Arc<Budget>,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
        seen: Seen,
    ) -> Result<(Vec<T>, Option<f64>), FailureReason> {
        let mut out = Vec::new();
        let ms = self
            .search_pages(
                first,
                want,
                patient,
                budget,
                keep,
                Pages::Collect(&mut out),
                seen,
            )
            .await?;
        Ok((out, ms))
    }

    /// [`HttpSource::search_all`], handing over each page as it is read (to `pages_out`), so that
    /// a reader of millions of records never holds more than a few pages.
    #[expect(
        clippy::too_many_arguments,
        reason = "one search's whole state; a struct for it would be built at each call"
    )]
    pub(super) async fn search_pages<T: Send>(
        &self,
        first: Url,
        want: &str,
        patient: Option<&str>,
        budget: &Arc<Budget>,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
        mut pages_out: Pages<'_, T>,
        mut seen: Seen,
    ) -> Result<Option<f64>, FailureReason> {
        if seen.pages >= self.limits.max_pages {
            return Err(self.too_many_pages());
        }
        let mut source_ms: Option<f64> = None;
        let mut asked = Some(Asked::ask(self, first, budget));
        while let Some(page) = asked.take() {
            // A page that fails after earlier ones arrived: a view keeps those, cut short.
            let answered = match page.answer().await {
                Err(reason) if seen.pages > 0 => {
                    return budget.stop_short(reason).map(|()| source_ms)
                }
                answered => answered?,
            };
            let Some((body, ms)) = answered else {
                // Cut short by the deadline or the byte budget: said as that.
                return Ok(source_ms);
            };
            source_ms = add_ms(source_ms, ms);
            // The next page is asked for as soon as this one has arrived, and this one is read
            // while it comes: one request of the search outstanding at a time, as before, but
            // the source's time and ours overlap. Only a link that would be followed is asked
            // for: one within the page limit, on the same server. Reading the page below
            // decides, as it always has; whatever it refuses, the early ask is dropped with it.
            let ahead = match next_link_ahead(&body) {
                Some(link) if seen.pages + 1 < self.limits.max_pages => self
                    .same_origin(&link)
                    .ok()
                    .map(|url| (url.clone(), Asked::ask(self, url, budget))),
                _ => None,
            };
            if ahead.is_some() {
                // Lets the ask leave before this page is read (a task spawned here waits
                // behind this one on its worker otherwise).
                tokio::task::yield_now().await;
            }
            let (out, after, total, sent) = match self.take_page(&body, want, patient, keep) {
                Err(reason) if seen.pages > 0 => {
                    return budget.stop_short(reason).map(|()| source_ms)
                }
                read => read?,
            };
            drop(body);
            seen.page(total, sent);
            match &mut pages_out {
                Pages::Collect(all) => all.extend(out),
                Pages::Send(tx) => tx.send(out).await.map_err(|_| FailureReason::Unreachable {
                    detail: "the reader of this feed stopped".into(),
                })?,
            }
            let Some(after) = after else { continue };
            if seen.pages >= self.limits.max_pages {
                return Err(self.too_many_pages());
            }
            // The early ask is the page's own link (an ask for any other is dropped first).
            let early = ahead.and_then(|(url, early)| (url == after).then_some(early));
            asked = Some(early.unwrap_or_else(|| Asked::ask(self, after, budget)));
        }
        if let Some(short) = seen.shortfall(want) {
            budget.short(short);
        }
        Ok(source_ms)
    }

    fn too_many_pages(&self) -> FailureReason {
        FailureReason::Malformed {
            detail: format!("more than {} pages", self.limits.max_pages),
        }
    }

    /// One page of a search: the resources of type `want` (about `patient`, when given) as
    /// `keep` keeps them, and the next page's URL.
    pub(super) fn take_page<T>(
        &self,
        body: &[u8],
        want: &str,
        patient: Option<&str>,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
    ) -> Result<PageRead<T>, FailureReason> {
        // The page's resources are read in place: nothing is copied but what is kept.
        let page: Page<'_> = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
        self.read_page(page, want, patient, keep)
    }

    /// [`HttpSource::take_page`] for a page already read off the wire (a batch's entry).
    pub(super) fn read_page<T>(
        &self,
        page: Page<'_>,
        want: &str,
        patient: Option<&str>,
        keep: &(dyn Fn(Received<'_>) -> T + Send + Sync + '_),
    ) -> Result<PageRead<T>, FailureReason> {
        if page.resource_type.as_ref().and_then(Value::as_str) != Some("Bundle") {
            return Err(FailureReason::Malformed {
                detail: "a search did not return a Bundle".into(),
            });
        }
        let next = match page.link.as_ref().and_then(|l| mcr_fhir::next_link_in(l)) {
            Some(link) => Some(self.same_origin(link)?),
            None => None,
        };
        let total = page.total.as_ref().and_then(Value::as_u64);
        let mut out = Vec::new();
        let mut sent = 0;
        for PageEntry(raw) in page.entry.unwrap_or_default() {
            let Some(raw) = raw else { continue };
            let doc = read_resource(raw)?;
            if mcr_fhir::resource_type(&doc) == Some(want) {
                sent += 1;
            }
            if mcr_fhir::resource_type(&doc) != Some(want) || mcr_fhir::resource_id(&doc).is_none()
            {
                // Included resources (e.g. OperationOutcome) or junk: not part of the record.
                continue;
            }
            if let Some(p) = patient {
                // A source that answers with another patient's data is wrong; never show it
                // as this patient's. A Patient is checked here; every other resource is
                // tied to the patient (in any form of reference) as it is digested, and
                // what cannot be tied is counted there and said in the view.
                if want == "Patient" && mcr_fhir::resource_id(&doc) != Some(p) {
                    continue;
                }
            }
            out.push(keep(Received { doc: &doc, raw }));
        }
        Ok((out, next, total, sent))
    }
    /// A `next` link must point back at the same server: a hostile source must not be able
    /// to send the gateway elsewhere.
    fn same_origin(&self, link: &str) -> Result<Url, FailureReason> {
        let url = self
            .config
            .base_url
            .join(link)
            .map_err(|_| FailureReason::Malformed {
                detail: "a paging link is not a URL".into(),
            })?;
        if url.origin() != self.config.base_url.origin() {
            return Err(FailureReason::Malformed {
                detail: "a paging link points to another server".into(),
            });
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::{not_json, Page, PageEntry, Received};
    use mcr_domain::FailureReason;

    fn page(json: &str) -> Result<Vec<Option<String>>, FailureReason> {
        let p: Page = serde_json::from_str(json).map_err(|e| not_json(&e))?;
        Ok(p.entry
            .unwrap_or_default()
            .into_iter()
            .map(|PageEntry(r)| r.map(|r| r.get().to_owned()))
            .collect())
    }

    #[test]
    fn a_page_keeps_each_resource_as_sent_and_skips_junk_entries() {
        let got = page(
            r#"{"resourceType":"Bundle","entry":[
                {"fullUrl":"x","resource":{"resourceType":"Condition","id":"c1","note":[{"text":"caf\u00e9 <b>"}]}},
                7, "text", null, [1,2], {"search":{"mode":"match"}}, {"resource":null},
                {"resource":{"id":"first"},"resource":{"id":"last"}}
            ]}"#,
        )
        .expect("reads");
        assert_eq!(
            got,
            [
                Some(
                    r#"{"resourceType":"Condition","id":"c1","note":[{"text":"caf\u00e9 <b>"}]}"#
                        .to_owned()
                ),
                None,
                None,
                None,
                None,
                None,
                None,
                // As a Value reader would: the last of a repeated key wins.
                Some(r#"{"id":"last"}"#.to_owned()),
            ]
        );
        // Read for the merge, text unchanged for the API.
        let text = got[0].clone().expect("kept");
        let raw: &serde_json::value::RawValue = serde_json::from_str(&text).expect("raw");
        let doc = super::read_resource(raw).expect("reads");
        let r = Received { doc: &doc, raw };
        assert_eq!(r.value()["note"][0]["text"], "café <b>");
        assert!(r.json().json().contains(r"caf\u00e9"));
    }

    #[test]
    fn the_next_link_read_ahead_is_the_one_the_page_gives() {
        use super::next_link_ahead;
        let next = r#"[{"relation":"self","url":"s"},{"relation":"next","url":"n?page=2"}]"#;
        // Before the entries, after them (skipped over), or none; an entry's own `link` is not
        // the page's.
        assert_eq!(
            next_link_ahead(
                format!(r#"{{"resourceType":"Bundle","link":{next},"entry":[{{"#).as_bytes()
            ),
            Some("n?page=2".to_owned()),
            "read before the entries, whatever follows"
        );
        assert_eq!(
            next_link_ahead(
                format!(
                    r#"{{"entry":[{{"link":[{{"relation":"next","url":"x"}}]}}],"link":{next}}}"#
                )
                .as_bytes()
            ),
            Some("n?page=2".to_owned())
        );
        assert_eq!(
            next_link_ahead(br#"{"resourceType":"Bundle","link":[{"relation":"self","url":"s"}]}"#),
            None
        );
        assert_eq!(
            next_link_ahead(br#"{"resourceType":"Bundle","entry":[]}"#),
            None
        );
        assert_eq!(next_link_ahead(b"[1]"), None);
        assert_eq!(next_link_ahead(br#"{"entry":[{"#), None);
    }

    #[test]
    fn a_page_of_the_wrong_shape_or_not_json_says_which() {
        let shape = page(r#"{"resourceType":"Bundle","entry":{"resource":{}}}"#).unwrap_err();
        assert!(
            matches!(&shape, FailureReason::Malformed { detail } if detail.starts_with("not a FHIR resource of the expected shape")),
            "{shape:?}"
        );
        let garbage = page(r#"{"resourceType":"Bundle","entry":[{"#).unwrap_err();
        assert!(
            matches!(&garbage, FailureReason::Malformed { detail } if detail.starts_with("not JSON at line 1")),
            "{garbage:?}"
        );
        assert_eq!(
            page(r#"{"resourceType":"Bundle","entry":null}"#).expect("empty"),
            []
        );
    }
}
