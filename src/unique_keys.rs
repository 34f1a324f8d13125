//! Maps in the configuration files whose keys must be unique.
//!
//! serde fills a `BTreeMap` the way `insert` does, so a key written twice keeps its last value and
//! the first block vanishes without a word: two `cpu:` blocks under `signals:` were one signal,
//! and two `alice:` entries under `basic_auth_users:` silently dropped one of her hashes.
//! serde_yaml_ng refuses duplicates only when it builds its own `Value` (it has no mode for
//! typed maps), and serde's derive already refuses a struct field given twice ("duplicate field
//! `interval`"), so every name-keyed map read from YAML goes through [`deserialize`] or
//! [`deserialize_optional`] to be as strict:
//!
//! ```ignore
//! #[serde(default, deserialize_with = "crate::unique_keys::deserialize")]
//! overrides: BTreeMap<String, Thresholds>,
//! ```
//!
//! The parser prefixes the message with the map's path and adds where the map starts (it gives
//! custom errors no finer position), so the operator reads `signals: duplicate key "cpu" in the
//! map at line 9 column 3`.
//!
//! This is for maps from configuration text, and for the labels and annotations of an
//! Alertmanager webhook (JSON: serde_json keeps the last of a repeated key too). Maps built in
//! code, or decoded from other formats, keep their ordinary last-wins `insert`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A key that appears twice in one map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("duplicate key {0:?} in the map")]
pub(crate) struct DuplicateKey(pub(crate) String);

/// A map whose keys were all distinct in the text it was read from.
struct UniqueKeys<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueKeys<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueKeysVisitor(PhantomData))
    }
}

struct UniqueKeysVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeysVisitor<V> {
    type Value = UniqueKeys<V>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map with unique keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            // Checked before the value is read, so the error points at the repeated key.
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(DuplicateKey(key)));
            }
            let value = access.next_value()?;
            map.insert(key, value);
        }
        Ok(UniqueKeys(map))
    }
}

/// Reads a map, refusing a key that appears twice; for `deserialize_with`.
pub(crate) fn deserialize<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    UniqueKeys::deserialize(deserializer).map(|unique| unique.0)
}

/// [`deserialize`] for an optional map: an explicit null (`signals: ~`) is `None`, as it is
/// without the check.
pub(crate) fn deserialize_optional<'de, D, V>(deserializer: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    Option::<UniqueKeys<V>>::deserialize(deserializer).map(|unique| unique.map(|unique| unique.0))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Document {
        #[serde(default, deserialize_with = "deserialize")]
        required: BTreeMap<String, u32>,
        #[serde(default, deserialize_with = "deserialize_optional")]
        optional: Option<BTreeMap<String, u32>>,
    }

    fn parse(yaml: &str) -> Result<Document, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn distinct_keys_are_kept_in_order() {
        let document = parse("required: {b: 2, a: 1}\noptional: {c: 3}\n").unwrap();
        assert_eq!(document.required, BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]));
        assert_eq!(document.optional, Some(BTreeMap::from([("c".to_owned(), 3)])));
    }

    #[test]
    fn a_repeated_key_is_refused_with_the_path_and_line_of_its_map() {
        let text = parse("optional: {}\nrequired:\n  a: 1\n  a: 2\n").unwrap_err();
        assert_eq!(text, "required: duplicate key \"a\" in the map at line 3 column 3");
        let text = parse("optional: {x: 1, y: 2, x: 3}\n").unwrap_err();
        assert!(text.starts_with("optional: duplicate key \"x\""), "{text}");
    }

    #[test]
    fn absent_null_and_empty_maps_still_parse() {
        let document = parse("{}").unwrap();
        assert!(document.required.is_empty() && document.optional.is_none());
        assert!(parse("optional: ~\n").unwrap().optional.is_none());
        assert_eq!(parse("optional: {}\n").unwrap().optional, Some(BTreeMap::new()));
    }
}
