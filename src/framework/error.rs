//! The one error type of request handlers, and how each kind reaches the HTTP client.

use crate::proto::pb;

/// Go's `logical.ErrReadOnly` text. The server forwards a request from a standby to the active
/// node only when the backend's error carries exactly this text.
pub const READ_ONLY_MESSAGE: &str = "cannot write to readonly storage";

/// An error returned by a request handler. Each variant documents the HTTP status the client
/// sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// 400: the caller's input is wrong, or the request cannot be done as asked. The message
    /// says what was wrong and what is accepted.
    #[error("{0}")]
    BadRequest(String),
    /// Any other HTTP status (429 rate limited, 502 upstream failure, 503 …) with a message.
    #[error("{message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// What happened and what to do.
        message: String,
    },
    /// 404: no such path in this backend.
    #[error("unsupported path")]
    UnsupportedPath,
    /// 405: the path exists but not with this operation.
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// 403.
    #[error("permission denied")]
    PermissionDenied,
    /// Storage refused a write because this node is a standby; the server forwards the request
    /// to the active node when it sees this exact text.
    #[error("{READ_ONLY_MESSAGE}")]
    ReadOnly,
    /// 500: a fault of the plugin or of the server's storage.
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    /// A 400 error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// A 400 error about one field.
    pub fn field(name: &str, problem: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("invalid value for field {name:?}: {problem}"))
    }

    /// An error with an explicit HTTP status.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
        }
    }

    /// Whether this is the standby's read-only storage error.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::ReadOnly)
    }

    /// The wire form: a 400 travels as Go's `logical.ErrorResponse` (`data = {"error": …}`),
    /// which the server shows as a clean `errors: [msg]`; the others as a typed `ProtoError`.
    pub(crate) fn into_reply(self) -> pb::HandleRequestReply {
        let err = |err_type: u32, err_msg: String, err_code: i64| pb::HandleRequestReply {
            response: None,
            err: Some(pb::ProtoError {
                err_type,
                err_msg,
                err_code,
            }),
        };
        match self {
            Self::BadRequest(message) => pb::HandleRequestReply {
                response: Some(pb::Response {
                    data: serde_json::json!({ "error": message }).to_string(),
                    ..Default::default()
                }),
                err: None,
            },
            Self::Status { status, message } => err(3, message, i64::from(status)),
            Self::UnsupportedPath => err(6, String::new(), 0),
            Self::UnsupportedOperation => err(5, String::new(), 0),
            Self::PermissionDenied => err(8, String::new(), 0),
            Self::ReadOnly => err(0, READ_ONLY_MESSAGE.to_string(), 0),
            Self::Internal(message) => err(2, message, 0),
        }
    }

    /// The wire form for replies that carry only a `ProtoError` (existence check, initialize).
    pub(crate) fn into_proto_error(self) -> pb::ProtoError {
        match self {
            Self::BadRequest(message) => pb::ProtoError {
                err_type: 4,
                err_msg: message,
                err_code: 400,
            },
            other => other.into_reply().err.unwrap_or_default(),
        }
    }
}

impl From<super::storage::StorageError> for RequestError {
    fn from(error: super::storage::StorageError) -> Self {
        match error {
            super::storage::StorageError::ReadOnly => Self::ReadOnly,
            other => Self::Internal(other.to_string()),
        }
    }
}
