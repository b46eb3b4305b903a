//! Paths: patterns, operations, and matching a request path to its declaration.

use super::field::FieldSpec;

/// A request operation a path can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GET.
    Read,
    /// POST/PUT when the existence check says the item does not exist.
    Create,
    /// POST/PUT otherwise.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// LIST (or GET with `?list=true`).
    List,
}

impl Operation {
    /// From the protocol's operation name.
    pub fn from_wire(name: &str) -> Option<Self> {
        Some(match name {
            "read" => Self::Read,
            "create" => Self::Create,
            "update" => Self::Update,
            "patch" => Self::Patch,
            "delete" => Self::Delete,
            "list" => Self::List,
            _ => return None,
        })
    }

    /// The protocol's operation name.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::List => "list",
        }
    }
}

/// One operation of a path, with its documentation.
#[derive(Debug, Clone, Copy)]
pub struct OperationSpec {
    /// The operation.
    pub op: Operation,
    /// One line for `path-help` and the OpenAPI summary.
    pub summary: &'static str,
    /// The fields of a successful response's `data`.
    pub response: &'static [FieldSpec],
    /// Whether a successful response is a lease.
    pub lease: bool,
}

impl OperationSpec {
    /// An operation with a summary.
    pub const fn new(op: Operation, summary: &'static str) -> Self {
        Self {
            op,
            summary,
            response: &[],
            lease: false,
        }
    }

    /// Documents the response fields.
    pub const fn returns(mut self, response: &'static [FieldSpec]) -> Self {
        self.response = response;
        self
    }

    /// The response is a lease.
    pub const fn leased(mut self) -> Self {
        self.lease = true;
        self
    }
}

/// A path the backend serves. `R` names it for the backend's dispatcher.
#[derive(Debug)]
pub struct PathSpec<R: 'static> {
    /// The route this path dispatches to.
    pub route: R,
    /// `config`, `roles/{name}`, or `roles/` (a list path ends with `/`).
    pub pattern: &'static str,
    /// The fields it takes (path parameters included, marked `in_path`).
    pub fields: &'static [FieldSpec],
    /// The operations it serves.
    pub operations: &'static [OperationSpec],
    /// Whether create and update are told apart (the existence check is answered).
    pub existence_check: bool,
    /// One line of help.
    pub synopsis: &'static str,
    /// Longer help, markdown.
    pub description: &'static str,
}

/// Path parameters are one segment of these characters.
fn is_param_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The longest path parameter.
const MAX_PARAM_LEN: usize = 128;

impl<R> PathSpec<R> {
    /// The path parameters if `path` matches this pattern.
    pub fn matches(&self, path: &str) -> Option<Vec<(&'static str, String)>> {
        let mut params = Vec::new();
        let mut pattern = self.pattern.split('/');
        let mut actual = path.split('/');
        loop {
            match (pattern.next(), actual.next()) {
                (None, None) => return Some(params),
                (Some(p), Some(a)) => {
                    if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                        let ok = !a.is_empty()
                            && a.len() <= MAX_PARAM_LEN
                            && a.chars().all(is_param_char)
                            && a != "."
                            && a != "..";
                        if !ok {
                            return None;
                        }
                        // The name lives in the static pattern.
                        let name = self
                            .fields
                            .iter()
                            .find(|f| f.name == name)
                            .map(|f| f.name)?;
                        params.push((name, a.to_string()));
                    } else if p != a {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// The operation spec for `op`, if served.
    pub fn operation(&self, op: Operation) -> Option<&OperationSpec> {
        self.operations.iter().find(|o| o.op == op)
    }

    /// Whether this is a list path (`roles/`).
    pub fn is_list(&self) -> bool {
        self.pattern.ends_with('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::field::FieldKind;

    static NAME: &[FieldSpec] = &[FieldSpec::new("name", FieldKind::String, "n").in_path()];

    fn spec(pattern: &'static str) -> PathSpec<()> {
        PathSpec {
            route: (),
            pattern,
            fields: NAME,
            operations: &[],
            existence_check: false,
            synopsis: "",
            description: "",
        }
    }

    #[test]
    fn patterns_match_literal_and_parameter_segments() {
        assert_eq!(spec("config").matches("config"), Some(vec![]));
        assert_eq!(spec("config").matches("config/x"), None);
        assert_eq!(spec("roles/").matches("roles/"), Some(vec![]));
        assert_eq!(spec("roles/").matches("roles"), None);
        assert_eq!(
            spec("roles/{name}").matches("roles/app-1.x_y"),
            Some(vec![("name", "app-1.x_y".to_string())])
        );
        for bad in ["roles/", "roles/a/b", "roles/a b", "roles/..", "roles/é"] {
            assert_eq!(spec("roles/{name}").matches(bad), None, "{bad}");
        }
        assert_eq!(
            spec("roles/{name}").matches(&format!("roles/{}", "a".repeat(129))),
            None
        );
    }
}
