//! Removing a restricted patient's GP practice from resources as sources sent them.

use super::PRACTICE_WITHHELD;
use serde_json::Value;
use std::collections::BTreeSet;

fn names_code(identifier: &Value, codes: &[&str]) -> bool {
    identifier
        .get("value")
        .and_then(Value::as_str)
        .is_some_and(|v| codes.contains(&v.trim()))
}

/// Every reference to an organisation among `codes` (by `identifier`) becomes a
/// reference by display only, "GP practice (withheld: restricted record)"; a resource
/// (contained `Organization`) with such an identifier loses it and its name. The names
/// they carried are added to `names`. True if anything changed.
pub(super) fn references(v: &mut Value, codes: &[&str], names: &mut BTreeSet<String>) -> bool {
    match v {
        Value::Object(map) => {
            let is_reference = map.get("identifier").is_some_and(|i| names_code(i, codes));
            if is_reference {
                if let Some(Value::String(d)) = map.get("display") {
                    names.insert(d.clone());
                }
                let kind = map.remove("type");
                map.clear();
                if let Some(k) = kind {
                    map.insert("type".into(), k);
                }
                map.insert("display".into(), PRACTICE_WITHHELD.into());
                return true;
            }
            let mut changed = false;
            if let Some(Value::Array(ids)) = map.get_mut("identifier") {
                let before = ids.len();
                ids.retain(|i| !names_code(i, codes));
                if ids.len() != before {
                    changed = true;
                    if ids.is_empty() {
                        map.remove("identifier");
                    }
                    if let Some(Value::String(n)) = map.get("name") {
                        names.insert(n.clone());
                        map.insert("name".into(), PRACTICE_WITHHELD.into());
                    }
                }
            }
            for child in map.values_mut() {
                changed |= references(child, codes, names);
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, i| references(i, codes, names) | c),
        _ => false,
    }
}

/// Every string naming one of `names` says "GP practice (withheld: restricted record)"
/// in its place. True if anything changed.
pub(super) fn names(v: &mut Value, names: &BTreeSet<String>) -> bool {
    match v {
        Value::String(s) => {
            let mut changed = false;
            for n in names {
                if s.contains(n.as_str()) {
                    *s = s.replace(n.as_str(), PRACTICE_WITHHELD);
                    changed = true;
                }
            }
            changed
        }
        Value::Object(map) => map
            .values_mut()
            .fold(false, |c, child| self::names(child, names) | c),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, i| self::names(i, names) | c),
        _ => false,
    }
}

/// The longest run of ASCII letters and digits in `name`.
pub(super) fn hint(name: &str) -> &str {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .max_by_key(|w| w.len())
        .unwrap_or(name)
}
