//! The few fields the results part reads from a resource's text, read in one pass without
//! building the resource's tree: a record of thousands of results would otherwise parse each
//! one whole (every key, every string allocated) to read one number. Each reader gives what
//! `serde_json::Value`'s `get` would: the last of a repeated key, nothing where a field is of
//! another type, nothing at all for text that is not JSON.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A result's measurement: `valueQuantity.value` (any JSON number) and `valueQuantity.unit`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Quantity {
    pub value: Option<f64>,
    pub unit: Option<String>,
}

/// `valueQuantity`'s value and unit in a resource's JSON text.
pub(super) fn quantity(json: &str) -> Quantity {
    read_field(json, "valueQuantity", QuantitySeed).unwrap_or_default()
}

/// The first 200 entries of a report's `result` (elements without a string `reference`
/// count towards the 200 and give nothing), as their references.
pub(super) fn result_references(json: &str) -> Vec<String> {
    read_field(json, "result", ReferencesSeed).unwrap_or_default()
}

/// The value of top-level key `field` of the object `json` holds, as `seed` reads it (`None`
/// when absent or of another type, when the text is not an object, or not JSON).
fn read_field<'de, T, S>(json: &'de str, field: &'static str, seed: S) -> Option<T>
where
    S: DeserializeSeed<'de, Value = Option<T>> + Copy,
{
    struct Object<S>(&'static str, S);
    impl<'de, S> Visitor<'de> for Object<S>
    where
        S: DeserializeSeed<'de> + Copy,
    {
        type Value = Option<S::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a resource")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(is) = map.next_key_seed(KeyIs(self.0))? {
                if is {
                    found = Some(map.next_value_seed(self.1)?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Object(field, seed))
        .ok()
        .flatten()
        .flatten()
}

/// A map key: whether it is the one wanted.
#[derive(Clone, Copy)]
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A JSON value of any type, kept only if it is a number or a string.
enum Scalar {
    Number(f64),
    Text(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads `valueQuantity`: an object's `value` and `unit`; nothing for any other type.
#[derive(Clone, Copy)]
struct QuantitySeed;

impl<'de> DeserializeSeed<'de> for QuantitySeed {
    type Value = Option<Quantity>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for QuantitySeed {
    type Value = Option<Quantity>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Quantity")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut q = Quantity::default();
        while let Some(key) = map.next_key_seed(Which(&["value", "unit"]))? {
            let scalar = map.next_value::<Scalar>()?;
            match key {
                Some(0) => {
                    q.value = match scalar {
                        Scalar::Number(n) => Some(n),
                        _ => None,
                    }
                }
                Some(_) => {
                    q.unit = match scalar {
                        Scalar::Text(t) => Some(t),
                        _ => None,
                    }
                }
                None => {}
            }
        }
        Ok(Some(q))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A map key: its place among the names wanted, if it is one.
#[derive(Clone, Copy)]
struct Which(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Which {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Which {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// How many of a report's `result` entries are read.
const MAX_RESULTS: usize = 200;

/// Reads `result`: the references of its first [`MAX_RESULTS`] entries; nothing for any other
/// type.
#[derive(Clone, Copy)]
struct ReferencesSeed;

impl<'de> DeserializeSeed<'de> for ReferencesSeed {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReferencesSeed {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of references")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut read = 0;
        while read < MAX_RESULTS {
            let Some(entry) = seq.next_element::<Reference>()? else {
                return Ok(Some(out));
            };
            read += 1;
            out.extend(entry.0);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// One entry of `result`: its `reference` when that is a string.
struct Reference(Option<String>);

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Reference;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Reference")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reference, A::Error> {
                let mut reference = None;
                while let Some(is) = map.next_key_seed(KeyIs("reference"))? {
                    if is {
                        reference = match map.next_value::<Scalar>()? {
                            Scalar::Text(t) => Some(t),
                            _ => None,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Reference(reference))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Reference, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Reference(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Reference, E> {
                Ok(Reference(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Reference, E> {
                Ok(Reference(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Reference, E> {
                Ok(Reference(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Reference, E> {
                Ok(Reference(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Reference, E> {
                Ok(Reference(None))
            }
            fn visit_unit<E>(self) -> Result<Reference, E> {
                Ok(Reference(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What `serde_json::Value` reads: the readers must agree with it on every case.
    fn by_value(json: &str) -> (Quantity, Vec<String>) {
        let v: Option<Value> = serde_json::from_str(json).ok();
        let q = v.as_ref().and_then(|v| v.get("valueQuantity"));
        let quantity = Quantity {
            value: q.and_then(|q| q.get("value")?.as_f64()),
            unit: q.and_then(|q| q.get("unit")?.as_str().map(str::to_owned)),
        };
        let references = v
            .as_ref()
            .and_then(|v| {
                v.get("result")?.as_array().map(|rs| {
                    rs.iter()
                        .take(MAX_RESULTS)
                        .filter_map(|r| r.get("reference")?.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        (quantity, references)
    }

    #[test]
    fn the_readers_read_what_a_parsed_value_would() {
        let many: Vec<String> = (0..250)
            .map(|i| format!(r#"{{"reference":"Observation/{i}"}}"#))
            .collect();
        let many = format!(r#"{{"result":[{}]}}"#, many.join(","));
        let cases = [
            r#"{"resourceType":"Observation","valueQuantity":{"value":5.4,"unit":"mmol/L"}}"#,
            r#"{"valueQuantity":{"value":140,"unit":"mmol/L","system":"http://unitsofmeasure.org"}}"#,
            r#"{"valueQuantity":{"value":-3,"unit":"\u006dg"}}"#,
            r#"{"valueQuantity":{"value":"5.4","unit":7}}"#,
            r#"{"valueQuantity":{"value":{"x":1},"unit":["a"]}}"#,
            r#"{"valueQuantity":[1,2]}"#,
            r#"{"valueQuantity":null}"#,
            r#"{"valueQuantity":{"value":1,"unit":"a"},"valueQuantity":{"value":2}}"#,
            r#"{"valueQuantity":{"value":1,"value":null,"unit":"a","unit":"b"}}"#,
            r#"{"value\u0051uantity":{"value":1e3}}"#,
            r#"{"code":{"text":"no value"}}"#,
            r#"{"result":[{"reference":"Observation/a"},{"display":"no reference"},3,{"reference":7},{"reference":"Observation/b","reference":"Observation/c"}]}"#,
            r#"{"result":{"reference":"Observation/a"}}"#,
            r#"{"result":[{"reference":"Observation/a"}],"result":"gone"}"#,
            &many,
            r#"[1,2,3]"#,
            r#""text""#,
            "not json",
        ];
        for json in cases {
            let (q, refs) = by_value(json);
            assert_eq!(quantity(json), q, "{json}");
            assert_eq!(result_references(json), refs, "{json}");
        }
        assert_eq!(result_references(&many).len(), MAX_RESULTS);
        assert_eq!(quantity(cases[0]).value, Some(5.4));
    }
}
