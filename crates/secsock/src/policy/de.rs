//! Reads the policy file's TOML into the serde types of [`super::file`] in one parse, with
//! errors that state their facts: where (the span and the key path) and what (a key this
//! version does not know, with the keys allowed there; a required key that is missing; a
//! value of the wrong type; a value a type refused).
//!
//! toml's own deserializer turns those facts into English sentences (serde's default
//! messages), so the key had to be recovered by parsing the file a second time and
//! reading the words. Here toml parses the text once into its spanned document tree
//! ([`DeTable`]), and this module walks that tree as a serde `Deserializer` whose error
//! type keeps the facts: serde hands them over through [`de::Error::unknown_field`],
//! [`de::Error::missing_field`] and [`de::Error::invalid_type`].
//!
//! Not here: what the values mean ([`super::build`]) or the files the policy names.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde_spanned::de::{is_spanned, SpannedDeserializer};
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

/// Why the file could not be read as the policy's structure.
#[derive(Debug)]
pub(super) struct FileError {
    pub(super) kind: FileErrorKind,
    /// The bytes of the text concerned, when known.
    pub(super) span: Option<Range<usize>>,
    /// The keys from the top of the document down to the table (or value) concerned.
    pub(super) path: Vec<String>,
}

/// What is wrong, as serde or the TOML parser found it.
#[derive(Debug)]
pub(super) enum FileErrorKind {
    /// Not TOML (the parser's message).
    Syntax(String),
    /// A key the table's type does not have.
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    /// A key the table's type requires.
    MissingKey(&'static str),
    /// A value of the wrong type, or one its type refused.
    Invalid(String),
}

impl FileError {
    fn new(kind: FileErrorKind) -> FileError {
        FileError {
            kind,
            span: None,
            path: Vec::new(),
        }
    }

    /// Places an error that does not know where it is at `span`.
    fn at(mut self, span: Range<usize>) -> FileError {
        self.span.get_or_insert(span);
        self
    }

    /// Records that the error is inside the value of `key`.
    fn under(mut self, key: &str) -> FileError {
        self.path.insert(0, key.to_owned());
        self
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FileErrorKind::Syntax(message) | FileErrorKind::Invalid(message) => {
                f.write_str(message)
            }
            FileErrorKind::UnknownKey { key, .. } => write!(f, "unknown key `{key}`"),
            FileErrorKind::MissingKey(key) => write!(f, "missing key `{key}`"),
        }
    }
}

impl std::error::Error for FileError {}

impl de::Error for FileError {
    fn custom<T: fmt::Display>(message: T) -> FileError {
        FileError::new(FileErrorKind::Invalid(message.to_string()))
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn de::Expected) -> FileError {
        FileError::new(FileErrorKind::Invalid(format!(
            "invalid type: {found}, expected {expected}"
        )))
    }

    fn unknown_field(key: &str, expected: &'static [&'static str]) -> FileError {
        FileError::new(FileErrorKind::UnknownKey {
            key: key.to_owned(),
            expected,
        })
    }

    fn missing_field(key: &'static str) -> FileError {
        FileError::new(FileErrorKind::MissingKey(key))
    }
}

/// Parses `text` once and reads it as a `T`.
pub(super) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, FileError> {
    let document = DeTable::parse(text).map_err(|e| FileError {
        kind: FileErrorKind::Syntax(e.message().trim_end().to_owned()),
        span: e.span(),
        path: Vec::new(),
    })?;
    let span = document.span();
    T::deserialize(Value {
        value: DeValue::Table(document.into_inner()),
        span,
    })
}

/// One value of the document and where it is.
struct Value<'i> {
    value: DeValue<'i>,
    span: Range<usize>,
}

impl<'i> Value<'i> {
    fn from_spanned(spanned: Spanned<DeValue<'i>>) -> Value<'i> {
        let span = spanned.span();
        Value {
            value: spanned.into_inner(),
            span,
        }
    }

    /// The value as serde's messages name it, in the file's words (array, table).
    fn unexpected(&self) -> Unexpected<'_> {
        match &self.value {
            DeValue::String(text) => Unexpected::Str(text),
            DeValue::Integer(integer) => i64::from_str_radix(integer.as_str(), integer.radix())
                .map_or(Unexpected::Other("integer"), Unexpected::Signed),
            DeValue::Float(float) => float
                .as_str()
                .parse()
                .map_or(Unexpected::Other("floating point"), Unexpected::Float),
            DeValue::Boolean(value) => Unexpected::Bool(*value),
            DeValue::Datetime(_) => Unexpected::Other("date-time"),
            DeValue::Array(_) => Unexpected::Other("array"),
            DeValue::Table(_) => Unexpected::Other("table"),
        }
    }

    /// An error unless the value is a table (`is_table`) or an array: what serde's
    /// visitors would call "a map" or "a sequence" is named as the file writes it.
    fn expect(&self, is_table: bool) -> Result<(), FileError> {
        let expected = if is_table { "a table" } else { "an array" };
        match (&self.value, is_table) {
            (DeValue::Table(_), true) | (DeValue::Array(_), false) => Ok(()),
            _ => Err(de::Error::invalid_type(self.unexpected(), &expected)),
        }
    }
}

impl<'de> de::Deserializer<'de> for Value<'de> {
    type Error = FileError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        let span = self.span.clone();
        let result = match self.value {
            DeValue::String(Cow::Borrowed(text)) => visitor.visit_borrowed_str(text),
            DeValue::String(Cow::Owned(text)) => visitor.visit_string(text),
            DeValue::Integer(integer) => {
                let (digits, radix) = (integer.as_str(), integer.radix());
                match (
                    i64::from_str_radix(digits, radix),
                    u64::from_str_radix(digits, radix),
                ) {
                    (Ok(value), _) => visitor.visit_i64(value),
                    (_, Ok(value)) => visitor.visit_u64(value),
                    _ => Err(de::Error::custom("integer number overflowed")),
                }
            }
            DeValue::Boolean(value) => visitor.visit_bool(value),
            DeValue::Array(array) => visitor.visit_seq(Seq::new(array)),
            DeValue::Table(table) => visitor.visit_map(Map::new(table)),
            // No key of the policy takes these; say so in the visitor's words.
            DeValue::Float(_) | DeValue::Datetime(_) => {
                Err(de::Error::invalid_type(self.unexpected(), &visitor))
            }
        };
        result.map_err(|e| e.at(span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        // A key that is present has a value.
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        self.expect(false).map_err(|e| e.at(self.span.clone()))?;
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        self.expect(true).map_err(|e| e.at(self.span.clone()))?;
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FileError> {
        if is_spanned(name) {
            let span = self.span.clone();
            return visitor.visit_map(SpannedDeserializer::new(self, span));
        }
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FileError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, FileError> for Value<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// The elements of an array.
struct Seq<'i> {
    elements: <DeArray<'i> as IntoIterator>::IntoIter,
}

impl<'i> Seq<'i> {
    fn new(array: DeArray<'i>) -> Seq<'i> {
        Seq {
            elements: array.into_iter(),
        }
    }
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = FileError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FileError> {
        let Some(element) = self.elements.next() else {
            return Ok(None);
        };
        let value = Value::from_spanned(element);
        let span = value.span.clone();
        seed.deserialize(value).map(Some).map_err(|e| e.at(span))
    }
}

/// The entries of a table; the value of the key last read waits in `pending`.
struct Map<'i> {
    entries: <DeTable<'i> as IntoIterator>::IntoIter,
    pending: Option<(String, Spanned<DeValue<'i>>)>,
}

impl<'i> Map<'i> {
    fn new(table: DeTable<'i>) -> Map<'i> {
        Map {
            entries: table.into_iter(),
            pending: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = FileError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FileError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let span = key.span();
        let key = key.into_inner().into_owned();
        self.pending = Some((key.clone(), value));
        // An unknown key is reported at the key, in the table that has it.
        seed.deserialize(Key {
            key,
            span: span.clone(),
        })
        .map(Some)
        .map_err(|e| e.at(span))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FileError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let value = Value::from_spanned(value);
        let span = value.span.clone();
        seed.deserialize(value).map_err(|e| e.at(span).under(&key))
    }
}

/// A table's key: a string, or a [`Spanned`] string (the names of `[crypto.NAME]`).
struct Key {
    key: String,
    span: Range<usize>,
}

impl<'de> de::Deserializer<'de> for Key {
    type Error = FileError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FileError> {
        visitor.visit_string(self.key)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FileError> {
        if is_spanned(name) {
            let span = self.span.clone();
            return visitor.visit_map(SpannedDeserializer::new(self.key, span));
        }
        let _ = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Top {
        section: Option<Section>,
        named: Option<BTreeMap<Spanned<String>, Spanned<Section>>>,
        list: Option<Vec<Spanned<String>>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        required: Spanned<String>,
        count: Option<i64>,
        flag: Option<bool>,
    }

    fn error(text: &str) -> FileError {
        match from_str::<Top>(text) {
            Ok(top) => panic!("accepted: {top:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_carry_their_facts_not_sentences_to_parse() {
        let e = error("[section]\nrequired = \"x\"\ncuont = 1\n");
        assert!(matches!(
            &e.kind,
            FileErrorKind::UnknownKey { key, expected } if key == "cuont" && *expected == ["required", "count", "flag"]
        ));
        assert_eq!(e.path, ["section"]);
        assert_eq!(e.span, Some(25..30), "the key's bytes");

        let e = error("[named.\"a b\"]\ncount = 1\n");
        assert!(matches!(e.kind, FileErrorKind::MissingKey("required")));
        assert_eq!(e.path, ["named", "a b"]);

        let e = error("[section]\nrequired = \"x\"\ncount = \"1\"\n");
        assert!(
            matches!(&e.kind, FileErrorKind::Invalid(m) if m == "invalid type: string \"1\", expected i64"),
            "{e}"
        );
        assert_eq!(e.path, ["section", "count"]);
        assert_eq!(e.span, Some(33..36), "the value's bytes");

        let e = error("list = \"one\"\n");
        assert!(
            matches!(&e.kind, FileErrorKind::Invalid(m) if m == "invalid type: string \"one\", expected an array")
        );
        let e = error("list = [\"a\", 2]\n");
        assert_eq!(e.path, ["list"]);
        assert_eq!(e.span, Some(13..14), "the element's bytes");
        let e = error("section = 1\n");
        assert!(
            matches!(&e.kind, FileErrorKind::Invalid(m) if m == "invalid type: integer `1`, expected a table")
        );
        let e = error("[section]\nrequired = \"x\"\nflag = 2024-01-01\n");
        assert!(matches!(&e.kind, FileErrorKind::Invalid(m) if m.contains("date-time")));
        let e = error("[section]\nrequired = \"x\"\ncount = 99999999999999999999\n");
        assert!(matches!(&e.kind, FileErrorKind::Invalid(m) if m == "integer number overflowed"));

        let e = error("[section\n");
        assert!(matches!(e.kind, FileErrorKind::Syntax(_)));
        assert!(e.span.is_some());
    }

    #[test]
    fn spans_and_values_come_through() {
        let text = "list = [\"a\", \"b\"]\n[named.fast]\nrequired = \"r\"\ncount = 0x10\n";
        let top: Top = from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let list = top.list.unwrap_or_default();
        assert_eq!(&text[list[1].span()], "\"b\"");
        let named = top.named.unwrap_or_default();
        let (name, section) = named.iter().next().unwrap_or_else(|| panic!("no entry"));
        assert_eq!(&text[name.span()], "fast");
        assert_eq!(section.get_ref().count, Some(16));
        assert_eq!(&text[section.get_ref().required.span()], "\"r\"");
    }
}
