//! The one mapping from domain errors to `tonic::Status`.
//!
//! Every service crate has its own error type; each converts into [`Error`],
//! whose [`Reason`] comes from the catalogue in
//! `proto/tenancy/errors/v1/reason.proto`. The reason decides the gRPC code,
//! so an error can neither carry a reason outside the catalogue nor another
//! code than the catalogue's. [`Error`] becomes a `tonic::Status` here and
//! nowhere else (clippy's `disallowed-methods` bans building one by hand),
//! always with a `google.rpc.ErrorInfo` carrying the reason clients switch
//! on, plus `BadRequest` field violations for invalid input and `RetryInfo`
//! for throttling.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tenancy_proto::auth::Role;
pub use tenancy_proto::errors::Reason;
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Tenancy error.
pub const ERROR_DOMAIN: &str = "tenancy.dev";

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
    /// The catalogue reason; it decides the gRPC code.
    pub reason: Reason,
    /// A human-readable message (never a secret).
    pub message: String,
    /// Invalid fields, for INVALID_ARGUMENT reasons.
    pub violations: Vec<FieldViolation>,
    /// When the client may retry, for throttling.
    pub retry_after: Option<Duration>,
    /// Extra `ErrorInfo.metadata`, e.g. the account a refusal concerns.
    pub metadata: HashMap<String, String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.code(), self.reason, self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error with `reason` (and so the reason's gRPC code).
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            violations: Vec::new(),
            retry_after: None,
            metadata: HashMap::new(),
        }
    }

    /// The gRPC status code, as the catalogue declares it for the reason.
    pub fn code(&self) -> tonic::Code {
        self.reason.code()
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

    /// One invalid field (reason FIELD_INVALID).
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid(Reason::FieldInvalid, field, description)
    }

    /// One invalid field with a specific INVALID_ARGUMENT `reason`.
    pub fn invalid(
        reason: Reason,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let mut violations = Violations::default();
        violations.add(field, description);
        Error {
            reason,
            ..violations.into_error()
        }
    }

    /// The caller's role is below `required` (ROLE_TOO_LOW, metadata
    /// `required_role`).
    pub fn role_too_low(required: Role, message: impl Into<String>) -> Self {
        Self::new(Reason::RoleTooLow, message)
            .with_metadata("required_role", required.as_str_name())
    }

    /// Throttled: retry after `retry_after`.
    pub fn throttled(reason: Reason, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
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
        Self::new(Reason::InternalError, "internal error")
    }

    /// A dependency is unreachable (SERVICE_UNAVAILABLE).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Reason::ServiceUnavailable, message)
    }

    /// A peer service's refusal as our own error: its reason, message,
    /// field violations, metadata and retry delay carried over unchanged.
    /// `None` when the status carries no catalogue reason with the
    /// catalogue's code (a transport failure, tonic's own errors): callers
    /// treat the peer as unavailable or broken then.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        let details = status.get_error_details();
        let info = details.error_info()?;
        let reason = Reason::from_str_name(&info.reason)
            .filter(|r| info.domain == ERROR_DOMAIN && r.code() == status.code())?;
        let mut error = Self::new(reason, status.message());
        error.metadata = info.metadata.clone();
        if let Some(bad) = details.bad_request() {
            for v in &bad.field_violations {
                error = error.with_field(v.field.clone(), v.description.clone());
            }
        }
        error.retry_after = details.retry_info().and_then(|r| r.retry_delay);
        Some(error)
    }

    /// What a failed call to the peer `service` means to our caller, the one
    /// mapping every service uses: a catalogue refusal whose code is one of
    /// `pass` reaches our caller as the peer gave it (reason, message, field
    /// violations); anything else (transport failure, deadline, a refusal we
    /// did not expect) is logged and answered SERVICE_UNAVAILABLE naming the
    /// peer, never INTERNAL: the caller may retry.
    pub fn from_peer(service: &str, status: &tonic::Status, pass: &[tonic::Code]) -> Self {
        Self::from_status(status)
            .filter(|e| pass.contains(&e.code()))
            .unwrap_or_else(|| {
                tracing::warn!(
                    service,
                    code = ?status.code(),
                    message = status.message(),
                    "peer call failed"
                );
                Self::unavailable(format!("{service} is not available"))
                    .with_metadata("service", service)
            })
    }

    /// The status clients receive.
    fn status(self) -> tonic::Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(self.reason.as_str(), ERROR_DOMAIN, self.metadata);
        for v in self.violations {
            details.add_bad_request_violation(v.field, v.description);
        }
        if let Some(after) = self.retry_after {
            details.set_retry_info(Some(after));
        }
        // The one place a Status is built: every other goes through here.
        #[allow(clippy::disallowed_methods)]
        tonic::Status::with_error_details(self.reason.code(), self.message, details)
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        error.status()
    }
}

/// PostgreSQL's SQLSTATEs of a transaction that lost a race with another
/// and succeeds when simply run again: `deadlock_detected` and
/// `serialization_failure`.
const TRANSIENT_SQLSTATES: [&str; 2] = ["40P01", "40001"];

/// When a client may retry a call whose transaction lost such a race.
const CONTENTION_RETRY: Duration = Duration::from_millis(100);

/// The driver's error inside `error`, when the driver raised it.
fn sqlx_error(error: &sea_orm::DbErr) -> Option<&sea_orm::SqlxError> {
    use sea_orm::{DbErr, RuntimeErr};
    let (DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = error
    else {
        return None;
    };
    Some(e)
}

/// Whether `error` is a transaction that lost a race ([`TRANSIENT_SQLSTATES`]).
fn transient(error: &sea_orm::DbErr) -> bool {
    sqlx_error(error)
        .and_then(|e| e.as_database_error())
        .and_then(|db| db.code())
        .is_some_and(|code| TRANSIENT_SQLSTATES.contains(&code.as_ref()))
}

/// PostgreSQL's SQLSTATEs of a server that cannot serve the connection
/// now: class 08 (connection exception) is matched by prefix; these are
/// `admin_shutdown`, `crash_shutdown` and `cannot_connect_now`.
const UNREACHABLE_SQLSTATES: [&str; 3] = ["57P01", "57P02", "57P03"];

/// When a client may retry a call the database could not serve.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);

/// Whether `error` says the database could not be reached: no connection
/// from the pool in time, a connection refused or cut (the server killed
/// or restarting). The call may succeed once it is back.
fn unreachable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, SqlxError};
    if matches!(error, DbErr::ConnectionAcquire(_)) {
        return true;
    }
    let Some(e) = sqlx_error(error) else {
        return false;
    };
    match e {
        SqlxError::Io(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || UNREACHABLE_SQLSTATES.contains(&code.as_ref())
        }),
        _ => false,
    }
}

/// A database failure: a transaction that lost a race (deadlock,
/// serialization failure) or a database that cannot be reached (connection
/// refused or cut, pool exhausted, server shutting down) is UNAVAILABLE
/// SERVICE_UNAVAILABLE (metadata `service` = `database`) with a RetryInfo
/// delay, as the call may succeed when repeated; anything else is
/// INTERNAL, its cause only logged.
impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        if unreachable(&error) {
            tracing::warn!(%error, "database unreachable; the client may retry");
            return Self {
                retry_after: Some(UNREACHABLE_RETRY),
                ..Self::unavailable("the database is unreachable; retry shortly")
                    .with_metadata("service", "database")
            };
        }
        if transient(&error) {
            tracing::warn!(%error, "database contention; the client may retry");
            return Self {
                retry_after: Some(CONTENTION_RETRY),
                ..Self::unavailable("the database is busy; retry shortly")
                    .with_metadata("service", "database")
            };
        }
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

/// What parsing one field found wrong, for [`Violations::take`]: a
/// description of the problem, or an [`Error`] whose own violations are
/// taken over (never its `Display`, which would repeat the field name).
pub trait FieldProblem {
    /// Records the problem as violations of `field`.
    fn record(self, field: &str, violations: &mut Violations);
}

impl FieldProblem for String {
    fn record(self, field: &str, violations: &mut Violations) {
        violations.add(field, self);
    }
}

impl FieldProblem for &str {
    fn record(self, field: &str, violations: &mut Violations) {
        violations.add(field, self);
    }
}

impl FieldProblem for Error {
    fn record(self, field: &str, violations: &mut Violations) {
        if self.violations.is_empty() {
            violations.push(self.reason, field.to_owned(), self.message);
            return;
        }
        for v in self.violations {
            // Keep a more precise path (`field.sub`, `field[3]`), else name
            // the field as the caller knows it.
            let precise = v
                .field
                .strip_prefix(field)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            let name = if precise { v.field } else { field.to_owned() };
            violations.push(self.reason, name, v.description);
        }
    }
}

/// Collects every invalid field of a request, so the client learns all of
/// them at once.
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<FieldViolation>,
    /// The reason each violation came with (FIELD_INVALID for plain ones).
    reasons: Vec<Reason>,
}

impl Violations {
    fn push(&mut self, reason: Reason, field: String, description: String) {
        self.list.push(FieldViolation { field, description });
        self.reasons.push(reason);
    }

    /// Records an invalid field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.push(Reason::FieldInvalid, field.into(), description.into());
    }

    /// Records `field` as invalid unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) {
        if !ok {
            self.add(field, description);
        }
    }

    /// Takes the result of parsing one field, recording its problem.
    pub fn take<T, E: FieldProblem>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                e.record(field, self);
                None
            }
        }
    }

    /// Checks the length of a repeated request field: more than `max`
    /// entries is recorded as LIST_TOO_LONG naming the field and the limit.
    /// Returns whether the list is within the limit, so the caller looks at
    /// its entries only then (a list far over it costs no per-entry work).
    pub fn at_most(&mut self, field: &str, len: usize, max: usize) -> bool {
        let ok = len <= max;
        if !ok {
            self.push(Reason::ListTooLong, field.to_owned(), too_many(len, max));
        }
        ok
    }

    /// Whether no field was invalid.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok` when no field was invalid, else an INVALID_ARGUMENT error.
    pub fn finish(self) -> Result<(), Error> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// The error: the violations' common specific reason if they share
    /// one (e.g. EMAIL_INVALID), else FIELD_INVALID. The message lists
    /// each field once: `email: not an email address; name: required`.
    fn into_error(self) -> Error {
        let reason = match self.reasons.split_first() {
            Some((first, rest)) if rest.iter().all(|r| r == first) => *first,
            _ => Reason::FieldInvalid,
        };
        let message = self
            .list
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Error {
            violations: self.list,
            ..Error::new(reason, message)
        }
    }
}

fn too_many(len: usize, max: usize) -> String {
    format!("at most {max} entries (got {len})")
}

/// Refuses a repeated request `field` with more than `max` entries as
/// INVALID_ARGUMENT LIST_TOO_LONG naming the field and the limit; for
/// handlers that stop at the first invalid field ([`Violations::at_most`]
/// collects instead). Checked before any entry is looked at, so an
/// oversized list costs nothing but its decoding.
pub fn at_most(field: &str, len: usize, max: usize) -> Result<(), Error> {
    if len <= max {
        Ok(())
    } else {
        Err(Error::invalid(
            Reason::ListTooLong,
            field,
            too_many(len, max),
        ))
    }
}

/// Reads the `ErrorInfo` reason of a status, if it has one from the
/// catalogue: for clients and tests that switch on reasons.
pub fn reason_of(status: &tonic::Status) -> Option<Reason> {
    status
        .get_details_error_info()
        .and_then(|info| Reason::from_str_name(&info.reason))
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

    /// A real error with SQLSTATE `code`, raised by PostgreSQL (at
    /// `TENANCY_TEST_DATABASE_URL`), or `None` when no PostgreSQL is
    /// configured.
    async fn postgres_error(code: &str) -> Option<sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        let url = std::env::var("TENANCY_TEST_DATABASE_URL").ok()?;
        let db = sea_orm::Database::connect(&url).await.unwrap();
        let raised = db
            .execute_unprepared(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'lost a race' USING ERRCODE = '{code}'; END $$"
            ))
            .await;
        db.close().await.unwrap();
        Some(raised.unwrap_err())
    }

    /// Deadlocks and serialization failures are answered UNAVAILABLE with
    /// a retry delay; other database errors stay INTERNAL (without their
    /// cause). SQLite's own errors (a real one here) are INTERNAL; the
    /// PostgreSQL codes are raised by a real server when one is configured
    /// (`TENANCY_TEST_DATABASE_URL`, as CI runs it).
    #[tokio::test]
    async fn lost_races_in_the_database_are_unavailable_with_a_retry_delay() {
        let sqlite = crate::db::connect("sqlite::memory:", "test").await.unwrap();
        let broken = crate::db::exec(&sqlite, "SELECT * FROM missing", vec![])
            .await
            .unwrap_err();
        let status = tonic::Status::from(Error::from(broken));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("missing"), "{status:?}");
        assert!(status.get_details_retry_info().is_none());
        if !std::env::var("TENANCY_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            return;
        }
        for code in ["40P01", "40001"] {
            let error = postgres_error(code).await.unwrap();
            let status = tonic::Status::from(Error::from(error));
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "{code}: {status:?}"
            );
            assert_eq!(reason_of(&status), Some(Reason::ServiceUnavailable));
            let info = status.get_details_error_info().unwrap();
            assert_eq!(
                info.metadata.get("service").map(String::as_str),
                Some("database")
            );
            let retry = status.get_details_retry_info().expect("retry info");
            assert_eq!(retry.retry_delay, Some(CONTENTION_RETRY));
        }
        // Another PostgreSQL error (unique violation) stays INTERNAL.
        let error = postgres_error("23505").await.unwrap();
        let status = tonic::Status::from(Error::from(error));
        assert_eq!(status.code(), tonic::Code::Internal);
    }

    /// UNAVAILABLE with the database named and a retry delay.
    fn assert_unreachable(status: &tonic::Status, what: &str) {
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{what}: {status:?}"
        );
        assert_eq!(
            reason_of(status),
            Some(Reason::ServiceUnavailable),
            "{what}"
        );
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            info.metadata.get("service").map(String::as_str),
            Some("database"),
            "{what}"
        );
        let retry = status.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(UNREACHABLE_RETRY), "{what}");
    }

    /// A database nobody answers at (a real refused connection), a pool
    /// with no connection to give, and PostgreSQL shutting down or cutting
    /// the connection (raised by a real server when one is configured) are
    /// UNAVAILABLE: the fault suite saw a killed PostgreSQL answered
    /// INTERNAL before.
    #[tokio::test]
    async fn an_unreachable_database_is_unavailable_with_a_retry_delay() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut options = sea_orm::ConnectOptions::new(format!(
            "postgres://nobody:nothing@127.0.0.1:{port}/none"
        ));
        options
            .connect_timeout(Duration::from_secs(2))
            .acquire_timeout(Duration::from_secs(2));
        let refused = sea_orm::Database::connect(options).await.unwrap_err();
        assert_unreachable(&tonic::Status::from(Error::from(refused)), "refused");
        let exhausted = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert_unreachable(&tonic::Status::from(Error::from(exhausted)), "pool");
        if !std::env::var("TENANCY_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            return;
        }
        for code in ["57P01", "57P03", "08006"] {
            let error = postgres_error(code).await.unwrap();
            assert_unreachable(&tonic::Status::from(Error::from(error)), code);
        }
    }

    #[test]
    fn every_reason_becomes_its_catalogue_code_with_reason_and_domain() {
        for &reason in Reason::ALL {
            let status = tonic::Status::from(Error::new(reason, "m"));
            assert_eq!(status.code(), reason.code(), "{reason}");
            let info = status.get_details_error_info().expect("error info");
            assert_eq!(info.reason, reason.as_str());
            assert_eq!(info.domain, ERROR_DOMAIN);
            assert_eq!(reason_of(&status), Some(reason));
        }
        assert_eq!(
            Reason::PageTokenInvalid.code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(Reason::TokenRevoked.code(), tonic::Code::Unauthenticated);
        assert_eq!(Reason::RoleTooLow.as_str(), "ROLE_TOO_LOW");
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
        assert_eq!(reason_of(&status), Some(Reason::FieldInvalid));
        assert_eq!(
            status.message(),
            "email: not an email address; name: required"
        );
    }

    #[test]
    fn a_parse_error_taken_as_a_field_problem_names_its_field_once() {
        // An Error whose message already says "account_id: …" must not be
        // recorded as "account_id: account_id: …".
        let mut v = Violations::default();
        let parsed: Result<(), Error> = Err(Error::invalid_field("account_id", "must be a UUID"));
        assert!(v.take("account_id", parsed).is_none());
        let error = v.finish().unwrap_err();
        assert_eq!(error.message, "account_id: must be a UUID");
        assert_eq!(
            error.violations,
            [FieldViolation {
                field: "account_id".into(),
                description: "must be a UUID".into()
            }]
        );
        // A specific reason survives when every violation shares it.
        let mut v = Violations::default();
        let parsed: Result<(), Error> = Err(Error::invalid(
            Reason::EmailInvalid,
            "address",
            "not an email address",
        ));
        v.take("to.email", parsed);
        let error = v.finish().unwrap_err();
        assert_eq!(error.reason, Reason::EmailInvalid);
        assert_eq!(error.violations[0].field, "to.email");
        assert_eq!(error.message, "to.email: not an email address");
        // Mixed with a plain violation it is FIELD_INVALID.
        let mut v = Violations::default();
        v.take::<(), _>(
            "email",
            Err(Error::invalid(Reason::EmailInvalid, "email", "bad")),
        );
        v.add("name", "required");
        assert_eq!(v.finish().unwrap_err().reason, Reason::FieldInvalid);
    }

    #[test]
    fn a_peers_refusal_comes_back_whole() {
        let sent = Error::invalid(
            Reason::PasswordTooShort,
            "password",
            "must be at least 12 characters",
        )
        .with_metadata("min", "12");
        let received = Error::from_status(&tonic::Status::from(sent.clone())).unwrap();
        assert_eq!(received, sent);
        assert_eq!(received.message, "password: must be at least 12 characters");
        let throttled = Error::throttled(Reason::AttemptsExceeded, Duration::from_secs(8));
        let received = Error::from_status(&tonic::Status::from(throttled)).unwrap();
        assert_eq!(received.retry_after, Some(Duration::from_secs(8)));
        // Not ours: no reason, an unknown one, or one with another code.
        #[allow(clippy::disallowed_methods)]
        let foreign = [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::with_error_details(
                tonic::Code::NotFound,
                "m",
                ErrorDetails::with_error_info("NO_SUCH_REASON", ERROR_DOMAIN, HashMap::new()),
            ),
            tonic::Status::with_error_details(
                tonic::Code::Internal,
                "m",
                ErrorDetails::with_error_info("PAGE_TOKEN_INVALID", ERROR_DOMAIN, HashMap::new()),
            ),
        ];
        for status in foreign {
            assert_eq!(Error::from_status(&status), None, "{status:?}");
        }
    }

    #[test]
    fn a_peers_failure_passes_only_the_refusals_named_else_unavailable() {
        let not_found = Error::new(Reason::UserNotFound, "no such user");
        let status = tonic::Status::from(not_found.clone());
        assert_eq!(
            Error::from_peer("identity", &status, &[tonic::Code::NotFound]),
            not_found
        );
        // A refusal the caller did not list, a transport failure, tonic's
        // own errors: the peer is unavailable, named, never INTERNAL.
        #[allow(clippy::disallowed_methods)]
        let others = [
            status,
            tonic::Status::unknown("h2 protocol error"),
            tonic::Status::deadline_exceeded("timeout"),
            tonic::Status::internal("boom"),
        ];
        for status in others {
            let error = Error::from_peer("identity", &status, &[tonic::Code::InvalidArgument]);
            assert_eq!(error.reason, Reason::ServiceUnavailable, "{status:?}");
            assert_eq!(error.metadata["service"], "identity");
        }
    }

    #[test]
    fn role_refusals_name_the_role_needed() {
        let error = Error::role_too_low(Role::Owner, "owners only");
        assert_eq!(error.code(), tonic::Code::PermissionDenied);
        assert_eq!(error.metadata["required_role"], "ROLE_OWNER");
    }

    #[test]
    fn throttling_carries_retry_info() {
        let status = tonic::Status::from(Error::throttled(
            Reason::AttemptsExceeded,
            Duration::from_secs(8),
        ));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let retry = status.get_details_retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(8)));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = tonic::Status::from(Error::internal("connection string postgres://secret@db"));
        assert_eq!(status.message(), "internal error");
        assert_eq!(reason_of(&status), Some(Reason::InternalError));
    }
}
