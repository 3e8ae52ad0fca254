//! The one mapping from domain errors to `tonic::Status`.
//!
//! Every service crate has its own error type; each converts into [`Error`],
//! whose [`ErrorCode`] is deliberately small. [`Error`] becomes a
//! `tonic::Status` here and nowhere else, always with a `google.rpc.ErrorInfo`
//! carrying a stable `reason` clients can switch on, plus `BadRequest` field
//! violations for invalid input and `RetryInfo` for throttling.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Tenancy error.
pub const ERROR_DOMAIN: &str = "tenancy.dev";

/// The few kinds of failure a client needs to tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; field violations say where.
    InvalidArgument,
    /// Credentials are missing or invalid.
    Unauthenticated,
    /// A known caller without the right to do this.
    PermissionDenied,
    /// The resource does not exist, or the caller may not know it exists.
    NotFound,
    /// The resource already exists.
    AlreadyExists,
    /// A rule forbids this in the current state (e.g. last active owner).
    FailedPrecondition,
    /// Throttled or over a quota; retry later.
    ResourceExhausted,
    /// A concurrent change won; retry the whole operation.
    Aborted,
    /// A dependency is not reachable; retry later.
    Unavailable,
    /// Not implemented yet.
    Unimplemented,
    /// A bug or an unexpected failure; details are only in the server log.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code.
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Aborted => tonic::Code::Aborted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Unimplemented => tonic::Code::Unimplemented,
            Self::Internal => tonic::Code::Internal,
        }
    }
}

/// One invalid request field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `settings.ip_allowlist[3]`.
    pub field: String,
    /// What is wrong with it, for a developer.
    pub description: String,
}

/// A failure as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub code: ErrorCode,
    /// Stable UPPER_SNAKE reason for `ErrorInfo`.
    pub reason: &'static str,
    /// A human-readable message (never a secret).
    pub message: String,
    /// Invalid fields, for [`ErrorCode::InvalidArgument`].
    pub violations: Vec<FieldViolation>,
    /// When the client may retry, for throttling.
    pub retry_after: Option<Duration>,
    /// Extra `ErrorInfo.metadata`, e.g. the account a refusal concerns.
    pub metadata: HashMap<String, String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The reason's name, as `ErrorInfo.reason` carries it: a name from a
    /// fixed set, so fit for a metric label.
    pub fn reason_name(&self) -> &'static str {
        self.reason
    }

    /// An error of `code` with a stable `reason`.
    pub fn new(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            retry_after: None,
            metadata: HashMap::new(),
        }
    }

    /// Adds a `BadRequest` field violation.
    pub fn with_field(mut self, field: impl Into<String>, description: impl Into<String>) -> Self {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
        self
    }

    /// Adds an `ErrorInfo.metadata` entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// One invalid field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::default();
        violations.add(field, description);
        violations.into_error()
    }

    /// Something the caller may not see, or that does not exist.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    /// Missing or invalid credentials.
    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, reason, message)
    }

    /// A known caller without the right.
    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, reason, message)
    }

    /// A rule forbids the change.
    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, reason, message)
    }

    /// The resource exists already.
    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, reason, message)
    }

    /// Throttled: retry after `retry_after`.
    pub fn throttled(reason: &'static str, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::ResourceExhausted,
                reason,
                format!(
                    "too many attempts; retry in {} s",
                    retry_after.as_secs_f64().ceil()
                ),
            )
        }
    }

    /// An unexpected failure. The cause is logged here and hidden from the
    /// client, which only learns that something went wrong.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "INTERNAL", "internal error")
    }

    /// A dependency is unreachable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, "UNAVAILABLE", message)
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(error.reason, ERROR_DOMAIN, error.metadata);
        for v in &error.violations {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
        if let Some(after) = error.retry_after {
            details.set_retry_info(Some(after));
        }
        tonic::Status::with_error_details(error.code.grpc(), error.message, details)
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::internal(format_args!("database: {error}"))
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(error: sea_orm::TransactionError<Error>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

/// Collects every invalid field of a request, so the client learns all of
/// them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records an invalid field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records `field` as invalid unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) {
        if !ok {
            self.add(field, description);
        }
    }

    /// Takes the result of parsing one field, recording its error.
    pub fn take<T, E: fmt::Display>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Whether no field was invalid.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when no field was invalid, else an INVALID_ARGUMENT error.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    fn into_error(self) -> Error {
        let message = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Error {
            violations: self.0,
            ..Error::new(ErrorCode::InvalidArgument, "INVALID_ARGUMENT", message)
        }
    }
}

/// Reads the `ErrorInfo` reason of a status, if it has one: for clients and
/// tests that switch on reasons.
pub fn reason_of(status: &tonic::Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// Reads the `BadRequest` field names of a status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_grpc_code_with_reason_and_domain() {
        let cases = [
            (ErrorCode::InvalidArgument, tonic::Code::InvalidArgument),
            (ErrorCode::Unauthenticated, tonic::Code::Unauthenticated),
            (ErrorCode::PermissionDenied, tonic::Code::PermissionDenied),
            (ErrorCode::NotFound, tonic::Code::NotFound),
            (ErrorCode::AlreadyExists, tonic::Code::AlreadyExists),
            (
                ErrorCode::FailedPrecondition,
                tonic::Code::FailedPrecondition,
            ),
            (ErrorCode::ResourceExhausted, tonic::Code::ResourceExhausted),
            (ErrorCode::Aborted, tonic::Code::Aborted),
            (ErrorCode::Unavailable, tonic::Code::Unavailable),
            (ErrorCode::Unimplemented, tonic::Code::Unimplemented),
            (ErrorCode::Internal, tonic::Code::Internal),
        ];
        for (code, grpc) in cases {
            let status = tonic::Status::from(Error::new(code, "SOME_REASON", "m"));
            assert_eq!(status.code(), grpc);
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(info.reason, "SOME_REASON");
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn violations_become_bad_request_details() {
        let mut v = Violations::default();
        v.add("email", "not an email address");
        v.check(false, "name", "required");
        v.check(true, "phone", "never shown");
        let status = tonic::Status::from(v.finish().unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["email", "name"]);
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_ARGUMENT"));
    }

    #[test]
    fn throttling_carries_retry_info() {
        let status =
            tonic::Status::from(Error::throttled("LOGIN_THROTTLED", Duration::from_secs(8)));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let retry = status.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(8)));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = tonic::Status::from(Error::internal("connection string postgres://secret@db"));
        assert_eq!(status.message(), "internal error");
    }
}
