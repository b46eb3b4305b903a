//! Declared request fields, and the typed, validated values parsed from a request's data.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::error::RequestError;
use crate::duration::{ACCEPTED_FORMS, KeyDuration};

/// The type of a field, which decides how its value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A short single-line string (at most 1,024 characters).
    String,
    /// A long text such as a PEM bundle (at most 256 KiB).
    Text,
    /// A boolean: JSON `true`/`false`, or the strings Go's `strconv.ParseBool` takes.
    Bool,
    /// A whole number: a JSON number, or a string of digits (the CLI sends strings).
    Int,
    /// A duration in any of the forms [`crate::duration`] accepts; echoed back in ISO 8601.
    Duration,
    /// A list of strings (response fields only, e.g. the `keys` of a list).
    StringList,
    /// A JSON object (response fields only, e.g. `last_rotation`).
    Object,
}

impl FieldKind {
    /// The OpenAPI type name.
    pub fn openapi_type(self) -> &'static str {
        match self {
            Self::String | Self::Text | Self::Duration => "string",
            Self::Bool => "boolean",
            Self::Int => "integer",
            Self::StringList => "array",
            Self::Object => "object",
        }
    }

    fn max_len(self) -> usize {
        match self {
            Self::Text => 256 * 1024,
            _ => 1024,
        }
    }
}

/// A field of a path: its name, type and documentation.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// The name in request data (or the `{name}` segment of the path).
    pub name: &'static str,
    /// The type.
    pub kind: FieldKind,
    /// What the field means, for `path-help` and OpenAPI.
    pub description: &'static str,
    /// Required when the operation is `create`.
    pub required: bool,
    /// The default, as documentation (the handler applies it).
    pub default: Option<&'static str>,
    /// Write-only: never returned, parsed into a [`SecretString`].
    pub sensitive: bool,
    /// Taken from the request path (`roles/{name}`), not from the body.
    pub in_path: bool,
    /// A duration that also takes `0` or an empty string, meaning "remove the setting" (back to
    /// its default; [`FieldData::is_cleared`]).
    pub zero_clears: bool,
}

impl FieldSpec {
    /// A field of `kind` with a description; refine with the builder methods.
    pub const fn new(name: &'static str, kind: FieldKind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            description,
            required: false,
            default: None,
            sensitive: false,
            in_path: false,
            zero_clears: false,
        }
    }

    /// A duration for which `0` (or an empty string) removes the setting (as Vault's `TypeDurationSecond` fields).
    pub const fn zero_clears(mut self) -> Self {
        self.zero_clears = true;
        self
    }

    /// Required on create.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Documented default.
    pub const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }

    /// Write-only secret.
    pub const fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// A segment of the path.
    pub const fn in_path(mut self) -> Self {
        self.in_path = true;
        self
    }
}

/// A parsed field value.
#[derive(Debug)]
pub enum FieldValue {
    /// A string or text.
    String(String),
    /// A sensitive string.
    Secret(SecretString),
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A duration.
    Duration(KeyDuration),
    /// A list of strings (a JSON array of strings, or one comma-separated string as the CLI
    /// sends `name=a,b`); empty items dropped.
    List(Vec<String>),
    /// `0` or an empty string given for a [`FieldSpec::zero_clears`] duration: remove the setting.
    Cleared,
}

/// The validated fields of one request.
#[derive(Debug, Default)]
pub struct FieldData {
    values: BTreeMap<&'static str, FieldValue>,
}

impl FieldData {
    /// Parses `data` against `fields`: unknown fields, wrong types, over-long values, and
    /// missing required fields (on create) are 400 errors that name the field.
    pub fn parse(
        fields: &'static [FieldSpec],
        path_params: &[(&'static str, String)],
        data: &Map<String, Value>,
        creating: bool,
    ) -> Result<Self, RequestError> {
        let mut values = BTreeMap::new();
        for (name, value) in path_params {
            values.insert(*name, FieldValue::String(value.clone()));
        }
        let body_fields = || fields.iter().filter(|f| !f.in_path);
        for (name, value) in data {
            let Some(spec) = body_fields().find(|f| f.name == name) else {
                let accepted: Vec<&str> = body_fields().map(|f| f.name).collect();
                let name: String = name.chars().take(64).collect();
                return Err(RequestError::bad_request(if accepted.is_empty() {
                    format!("unknown field {name:?}: this path takes no fields")
                } else {
                    format!(
                        "unknown field {name:?}; accepted fields: {}",
                        accepted.join(", ")
                    )
                }));
            };
            if value.is_null() {
                continue;
            }
            values.insert(spec.name, parse_value(spec, value)?);
        }
        if creating
            && let Some(missing) =
                body_fields().find(|f| f.required && !values.contains_key(f.name))
        {
            return Err(RequestError::bad_request(format!(
                "missing required field {:?}: {}",
                missing.name, missing.description
            )));
        }
        Ok(Self { values })
    }

    /// Whether the request set `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A string field (or path parameter).
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(FieldValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Takes a sensitive field out of the data.
    pub fn take_secret(&mut self, name: &str) -> Option<SecretString> {
        if !matches!(self.values.get(name), Some(FieldValue::Secret(_))) {
            return None;
        }
        match self.values.remove(name) {
            Some(FieldValue::Secret(secret)) => Some(secret),
            _ => None,
        }
    }

    /// A boolean field.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name) {
            Some(FieldValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// An integer field.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(FieldValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// Whether a [`FieldSpec::zero_clears`] duration was given as `0` or an empty string.
    pub fn is_cleared(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(FieldValue::Cleared))
    }

    /// A list field's items.
    pub fn list(&self, name: &str) -> Option<&[String]> {
        match self.values.get(name) {
            Some(FieldValue::List(items)) => Some(items),
            _ => None,
        }
    }

    /// A duration field's value (`None` also when it was given as `0` to clear it).
    pub fn duration(&self, name: &str) -> Option<KeyDuration> {
        match self.values.get(name) {
            Some(FieldValue::Duration(d)) => Some(*d),
            _ => None,
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_value(spec: &FieldSpec, value: &Value) -> Result<FieldValue, RequestError> {
    let wrong_type = |expected: &str| {
        RequestError::field(
            spec.name,
            format!("expected {expected}, got {}", type_name(value)),
        )
    };
    match spec.kind {
        FieldKind::String | FieldKind::Text => {
            let Value::String(s) = value else {
                return Err(wrong_type("a string"));
            };
            // A secret read from a file (`api_key=@key.txt`) or stdin usually ends with a
            // newline; a token never has surrounding whitespace, so it is dropped.
            let s = if spec.sensitive {
                s.trim().to_string()
            } else {
                s.clone()
            };
            if s.chars().count() > spec.kind.max_len() {
                return Err(RequestError::field(
                    spec.name,
                    format!("longer than {} characters", spec.kind.max_len()),
                ));
            }
            if spec.kind == FieldKind::String && s.chars().any(char::is_control) {
                return Err(RequestError::field(
                    spec.name,
                    "control characters (such as newlines) are not allowed",
                ));
            }
            Ok(if spec.sensitive {
                FieldValue::Secret(SecretString::from(s))
            } else {
                FieldValue::String(s)
            })
        }
        FieldKind::Bool => match value {
            Value::Bool(b) => Ok(FieldValue::Bool(*b)),
            Value::String(s) => match s.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(FieldValue::Bool(true)),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(FieldValue::Bool(false)),
                _ => Err(RequestError::field(
                    spec.name,
                    "expected a boolean: true or false",
                )),
            },
            _ => Err(wrong_type("a boolean (true or false)")),
        },
        FieldKind::Int => {
            let parsed = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) if s.len() <= 20 => s.trim().parse::<i64>().ok(),
                Value::String(_) => None,
                _ => return Err(wrong_type("a whole number")),
            };
            parsed
                .map(FieldValue::Int)
                .ok_or_else(|| RequestError::field(spec.name, "expected a whole number"))
        }
        FieldKind::Duration => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_u64() => n.to_string(),
                Value::Number(_) => {
                    return Err(RequestError::field(
                        spec.name,
                        format!(
                            "a number must be a positive whole number of seconds; expected {ACCEPTED_FORMS}"
                        ),
                    ));
                }
                _ => return Err(wrong_type("a duration string")),
            };
            // `0` as Vault's duration fields take it, and an empty string; `0s` or `PT0S` stay
            // what they are everywhere else: a zero duration, refused.
            if spec.zero_clears && matches!(text.trim(), "" | "0") {
                return Ok(FieldValue::Cleared);
            }
            KeyDuration::parse(&text)
                .map(FieldValue::Duration)
                .map_err(|e| RequestError::field(spec.name, e))
        }
        FieldKind::StringList => {
            let items: Vec<String> = match value {
                Value::String(s) => s.split(',').map(|i| i.trim().to_string()).collect(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.trim().to_string()),
                        _ => Err(wrong_type("a list of strings or a comma-separated string")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(wrong_type("a list of strings or a comma-separated string")),
            };
            Ok(FieldValue::List(
                items.into_iter().filter(|i| !i.is_empty()).collect(),
            ))
        }
        FieldKind::Object => Err(RequestError::field(
            spec.name,
            "is returned by the engine, never accepted as input",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static FIELDS: &[FieldSpec] = &[
        FieldSpec::new("name", FieldKind::String, "role name").in_path(),
        FieldSpec::new("url", FieldKind::String, "where").required(),
        FieldSpec::new("key", FieldKind::String, "secret").sensitive(),
        FieldSpec::new("on", FieldKind::Bool, "switch"),
        FieldSpec::new("n", FieldKind::Int, "count"),
        FieldSpec::new("ttl", FieldKind::Duration, "how long"),
    ];

    fn parse(data: Value, creating: bool) -> Result<FieldData, RequestError> {
        let Value::Object(map) = data else {
            panic!("object")
        };
        FieldData::parse(FIELDS, &[("name", "app".into())], &map, creating)
    }

    fn message(r: Result<FieldData, RequestError>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn strings_from_the_cli_become_typed_values() {
        let mut d = parse(
            json!({"url": "https://x", "key": "s3cret", "on": "false", "n": "4", "ttl": "PT2H"}),
            true,
        )
        .expect("valid");
        assert_eq!(d.str("name"), Some("app"));
        assert_eq!(d.bool("on"), Some(false));
        assert_eq!(d.int("n"), Some(4));
        assert_eq!(d.duration("ttl").map(|t| t.as_secs()), Some(7200));
        let key = d.take_secret("key").expect("secret");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&key), "s3cret");
        assert!(!format!("{d:?}").contains("s3cret"));
    }

    #[test]
    fn a_secret_read_from_a_file_loses_its_trailing_newline_only() {
        let mut d = parse(json!({"url": "u", "key": "  s3cret\n"}), true).expect("valid");
        let key = d.take_secret("key").expect("secret");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&key), "s3cret");
        let m = message(parse(json!({"url": "u\n"}), true));
        assert!(
            m.contains("\"url\"") && m.contains("control characters"),
            "{m}"
        );
        let m = message(parse(json!({"url": "u", "key": "s3\ncret"}), true));
        assert!(
            m.contains("\"key\"") && m.contains("control characters"),
            "{m}"
        );
    }

    #[test]
    fn json_types_are_accepted_too() {
        let d = parse(json!({"url": "u", "on": true, "n": 7, "ttl": 60}), true).expect("valid");
        assert_eq!(d.bool("on"), Some(true));
        assert_eq!(d.int("n"), Some(7));
        assert_eq!(d.duration("ttl").map(|t| t.as_secs()), Some(60));
    }

    #[test]
    fn errors_name_the_field_and_the_accepted_forms() {
        let m = message(parse(json!({"url": "u", "bogus": 1}), false));
        assert!(
            m.contains("\"bogus\"") && m.contains("accepted fields: url, key, on, n, ttl"),
            "{m}"
        );
        let m = message(parse(json!({"ttl": "P1M"}), false));
        assert!(m.contains("\"ttl\"") && m.contains("PT12H"), "{m}");
        let m = message(parse(json!({"on": "maybe"}), false));
        assert!(m.contains("\"on\"") && m.contains("true or false"), "{m}");
        let m = message(parse(json!({"n": 1.5}), false));
        assert!(m.contains("\"n\""), "{m}");
        let m = message(parse(json!({"url": 5}), false));
        assert!(
            m.contains("\"url\"") && m.contains("expected a string, got a number"),
            "{m}"
        );
        let m = message(parse(json!({"url": "a".repeat(2000)}), false));
        assert!(m.contains("longer than 1024"), "{m}");
        let m = message(parse(json!({"ttl": -5}), false));
        assert!(m.contains("\"ttl\""), "{m}");
        let m = message(parse(json!({}), true));
        assert!(m.contains("missing required field \"url\""), "{m}");
        // The path parameter is not a body field.
        let m = message(parse(json!({"name": "x"}), false));
        assert!(m.contains("unknown field \"name\""), "{m}");
    }
}
