//! A resource as the gateway reads it: a JSON tree that borrows its strings from the text it
//! was parsed from, where it can.
//!
//! Every resource a source sends is read once, for a few fields (its type, codes, dates,
//! security labels), and then dropped: what the API returns is the text as received. Parsed
//! into `serde_json::Value`, each of its keys and strings is a new allocation and each object
//! a B-tree; the benchmark's profile had that parse and drop as the largest part of the
//! gateway's CPU. A [`Doc`] allocates one vector per object or array and copies only strings
//! with escapes in them. [`Json`] reads either form, so the readers in this crate and in the
//! policy take both.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A parsed JSON value, borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    /// Members in the order sent. A key sent twice keeps both; [`Json::get`] finds the last,
    /// as `serde_json::Value` (and most readers of the returned text) would.
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Doc<'a> {
    /// Parse `text` (already checked JSON, usually).
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl From<&Doc<'_>> for serde_json::Value {
    /// An owned copy (for the few resources kept whole: a patient's demographics, the index
    /// sync). A key sent twice keeps its last, as parsing the text into a `Value` would.
    fn from(d: &Doc<'_>) -> Self {
        match d {
            Doc::Null => Self::Null,
            Doc::Bool(b) => Self::Bool(*b),
            Doc::Number(n) => Self::Number(n.clone()),
            Doc::String(s) => Self::String(s.to_string()),
            Doc::Array(items) => Self::Array(items.iter().map(Self::from).collect()),
            Doc::Object(members) => Self::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), Self::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Reading a JSON tree: what the classifiers and the policy need, for `serde_json::Value`
/// and for [`Doc`].
pub trait Json: Sized {
    /// The member `key` of an object (`None` for anything else).
    fn get(&self, key: &str) -> Option<&Self>;
    fn as_str(&self) -> Option<&str>;
    fn as_array(&self) -> Option<&[Self]>;
    /// The `i`th item of an array (`None` for anything else).
    fn at(&self, i: usize) -> Option<&Self> {
        self.as_array()?.get(i)
    }
    fn is_object(&self) -> bool;
    fn as_f64(&self) -> Option<f64>;
    fn as_i64(&self) -> Option<i64>;
}

impl Json for serde_json::Value {
    fn get(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn as_str(&self) -> Option<&str> {
        serde_json::Value::as_str(self)
    }
    fn as_array(&self) -> Option<&[Self]> {
        serde_json::Value::as_array(self).map(Vec::as_slice)
    }
    fn is_object(&self) -> bool {
        serde_json::Value::is_object(self)
    }
    fn as_f64(&self) -> Option<f64> {
        serde_json::Value::as_f64(self)
    }
    fn as_i64(&self) -> Option<i64> {
        serde_json::Value::as_i64(self)
    }
}

impl Json for Doc<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Doc::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Self]> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Doc::Object(_))
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            Doc::Number(n) => n.as_f64(),
            _ => None,
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self {
            Doc::Number(n) => n.as_i64(),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }
    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Doc<'de>, E> {
        // JSON text never holds a NaN or an infinity, so this is always a number.
        Ok(serde_json::Number::from_f64(v).map_or(Doc::Null, Doc::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value()?));
        }
        Ok(Doc::Object(members))
    }
}

/// An object's key, borrowed from the text unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::{Doc, Json};
    use serde_json::json;
    use std::borrow::Cow;

    #[test]
    fn reads_as_a_value_does() {
        let text = r#"{"resourceType":"Observation","id":"o\"1","valueQuantity":{"value":7.5,"unit":"mmol/L"},
            "count":3,"big":18446744073709551615,"neg":-2,"ok":true,"none":null,
            "code":{"coding":[{"system":"http://snomed.info/sct","code":"1"}],"text":"caf\u00e9"}}"#;
        let doc = Doc::parse(text).expect("parses");
        let value: serde_json::Value = serde_json::from_str(text).expect("parses");
        for key in ["resourceType", "id"] {
            assert_eq!(
                Json::as_str(doc.get(key).expect("doc")),
                value[key].as_str()
            );
        }
        let q = doc.get("valueQuantity").expect("quantity");
        assert!(q.is_object());
        assert_eq!(q.get("value").and_then(Json::as_f64), Some(7.5));
        assert_eq!(doc.get("count").and_then(Json::as_i64), Some(3));
        assert_eq!(doc.get("neg").and_then(Json::as_i64), Some(-2));
        assert_eq!(doc.get("big").and_then(Json::as_i64), None);
        assert_eq!(doc.get("ok"), Some(&Doc::Bool(true)));
        assert_eq!(doc.get("none"), Some(&Doc::Null));
        let code = doc.get("code").expect("code");
        assert_eq!(code.get("text").and_then(Json::as_str), Some("café"));
        let codings = code
            .get("coding")
            .and_then(Json::as_array)
            .expect("codings");
        assert_eq!(codings[0].get("code").and_then(Json::as_str), Some("1"));
        assert_eq!(doc.get("missing"), None);
        assert_eq!(
            Json::get(&value, "code").and_then(|c| Json::get(c, "text")),
            Some(&json!("café"))
        );
    }

    #[test]
    fn converts_to_the_value_the_text_parses_to() {
        let text = r#"{"a":[1,-2,3.5,"x\"y",null,true,{"b":{}}],"k":1,"k":2,"e":"caf\u00e9"}"#;
        let doc = Doc::parse(text).expect("parses");
        let value: serde_json::Value = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::Value::from(&doc), value);
    }

    #[test]
    fn borrows_what_needs_no_unescaping() {
        let text = r#"{"plain":"abc","escaped":"a\nb"}"#;
        let doc = Doc::parse(text).expect("parses");
        assert!(matches!(
            doc.get("plain"),
            Some(Doc::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(doc.get("escaped"), Some(Doc::String(Cow::Owned(s))) if s == "a\nb"));
    }

    #[test]
    fn a_key_sent_twice_reads_as_its_last() {
        // As `serde_json::Value` keeps it: a hostile source must not hide a security label
        // from the policy behind an earlier, harmless copy of the same key.
        let text = r#"{"meta":{},"meta":{"security":[{"code":"R"}]}}"#;
        let doc = Doc::parse(text).expect("parses");
        let value: serde_json::Value = serde_json::from_str(text).expect("parses");
        assert!(doc.get("meta").and_then(|m| m.get("security")).is_some());
        assert!(Json::get(&value, "meta")
            .and_then(|m| Json::get(m, "security"))
            .is_some());
    }

    #[test]
    fn rejects_what_is_not_json_and_nesting_too_deep() {
        assert!(Doc::parse("{\"a\": [1, 2,]}").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            Doc::parse(&deep).is_err(),
            "serde_json's recursion limit applies"
        );
    }
}
