//! The crate's one error type. [`From<IdentityError>`] for
//! [`tenancy_runtime::Error`] below is the one place that picks the reason
//! (and so the gRPC code), the message, the field violations and the retry
//! delay clients see.

use std::time::Duration;

use tenancy_runtime::{Error, Reason};

/// Why an identity operation was refused (or failed).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum IdentityError {
    /// No such user (or one the caller may not name).
    #[error("user not found")]
    UserNotFound,
    /// No such session of the caller.
    #[error("no such session")]
    SessionNotFound,
    /// No such API token in the caller's account (or not theirs to see).
    #[error("no such API token")]
    ApiTokenNotFound,
    /// `member_id` names no API member of the caller's account.
    #[error("no such API member in this account")]
    ApiMemberNotFound,
    /// The API member `member_id` names is suspended in the account.
    #[error("the API member is suspended; reactivate it first")]
    ApiMemberSuspended,
    /// The API member `member_id` names was revoked from the account.
    #[error("the API member was revoked")]
    ApiMemberRevoked,
    /// No such SSH key in the selected account.
    #[error("no such SSH key")]
    SshKeyNotFound,
    /// An API-token secret identity never issued (or malformed).
    #[error("unknown API token")]
    ApiTokenInvalid,
    /// The API token was revoked (revocation wins over expiry).
    #[error("this API token was revoked")]
    TokenRevoked,
    /// The API token has expired.
    #[error("this API token has expired")]
    TokenExpired,
    /// Wrong email or password (never says which).
    #[error("wrong email or password")]
    CredentialsInvalid,
    /// The refresh token is unknown, expired or its session ended.
    #[error("log in again")]
    RefreshTokenInvalid,
    /// A rotated refresh token came back: its session was ended.
    #[error("this refresh token was already used; the session was ended")]
    RefreshTokenReused,
    /// The MFA challenge is unknown, expired, used or out of attempts.
    #[error("log in again")]
    MfaChallengeInvalid,
    /// The email address is not verified yet; a new link was sent.
    #[error("verify your email address first; a new link was sent")]
    EmailNotVerified,
    /// The caller's session has ended.
    #[error("the session has ended")]
    SessionEnded,
    /// The method needs a portal session (not an API token); says what.
    #[error("{0}")]
    PortalSessionRequired(&'static str),
    /// The phone code is wrong, spent, expired, or for another user or
    /// number (one answer for all).
    #[error("the code is wrong or no longer valid; ask for a new one")]
    PhoneCodeInvalid,
    /// The session's last authentication is too old for this change.
    #[error("confirm your password again (Reauthenticate), then retry")]
    ReauthRequired,
    /// The user is not an ACTIVE member (with portal access) of the account.
    #[error("you are not an active member of this account")]
    NotAMember,
    /// TOTP is on already.
    #[error("2FA is already on")]
    TotpAlreadyEnabled,
    /// TOTP is not on.
    #[error("2FA is not on")]
    TotpNotEnabled,
    /// ConfirmTotpEnrollment without a pending enrolment.
    #[error("start the enrolment first")]
    TotpEnrollmentNotStarted,
    /// SetInitialPassword for a user who has one.
    #[error("the user already has a password")]
    PasswordAlreadySet,
    /// The new address was registered by another user meanwhile.
    #[error("the address was registered by another user meanwhile")]
    EmailTaken,
    /// A published next signing key is not active yet.
    #[error("a published next key is not active yet; use revoke_current to force")]
    RotationInProgress,
    /// The account has its maximum of SSH keys.
    #[error("at most {limit} SSH keys per account")]
    SshKeyLimitReached {
        /// The limit.
        limit: i64,
    },
    /// The key (by fingerprint) is registered in the account already.
    #[error("this key is already registered in the account")]
    SshKeyExists,
    /// The user has their maximum of active API tokens in the account.
    #[error("at most {limit} active API tokens per user and account")]
    ApiTokenLimitReached {
        /// The limit.
        limit: i64,
    },
    /// Only owners see other members' API tokens.
    #[error("managers only see their own tokens")]
    OthersTokensNeedOwner,
    /// A token state filter names no known state.
    #[error("states may list ACTIVE, EXPIRED and REVOKED")]
    ApiTokenStateInvalid,
    /// No passkey registration begun in this session, or it lapsed.
    #[error("begin the passkey registration again")]
    PasskeyChallengeInvalid,
    /// The passkey credential is registered already.
    #[error("this passkey is registered already")]
    PasskeyExists,
    /// The user has their maximum of passkeys.
    #[error("at most {limit} passkeys per user")]
    PasskeyLimitReached {
        /// The limit.
        limit: i64,
    },
    /// No such passkey of the caller.
    #[error("no such passkey")]
    PasskeyNotFound,
    /// The passkey's signature counter went backwards: refused.
    #[error(
        "this passkey looks cloned (its signature counter went backwards) and is refused; delete it"
    )]
    PasskeySuspect,
    /// The change would remove the last second factor under enforced 2FA.
    #[error("this is your last second factor and the account requires 2FA; add another first")]
    LastFactorRequired,
    /// Too many failed attempts of a login, second factor or proof.
    #[error("too many attempts")]
    Throttled {
        /// When the client may retry.
        retry_after: Duration,
    },
    /// Too many failed code-word checks for the user this hour.
    #[error("too many code word checks")]
    CodeWordChecksExceeded {
        /// When the next check may happen.
        retry_after: Duration,
    },
    /// One invalid request field.
    #[error("{field}: {description}")]
    Invalid {
        /// Which rule it breaks.
        rule: Invalid,
        /// The field path.
        field: String,
        /// What is wrong, for a developer.
        description: String,
    },
    /// Several invalid fields at once (the first one's rule names them all).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<IdentityError>),
    /// Not a rule's refusal: the database, a peer service or the hasher
    /// failed (or a caller's principal lacks what the method needs); passed
    /// on as it is.
    #[error(transparent)]
    Service(#[from] Error),
}

/// The rules an invalid field breaks (each one catalogue reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not an email address.
    Email,
    /// A name or label out of bounds.
    Name,
    /// A password over the byte limit.
    PasswordTooLong,
    /// A password under the length minimum.
    PasswordTooShort,
    /// A common password, or one containing the email.
    PasswordTooCommon,
    /// The current password is wrong.
    PasswordIncorrect,
    /// The new password is the current one.
    PasswordUnchanged,
    /// A code word out of bounds.
    CodeWord,
    /// A wrong TOTP or recovery code.
    SecondFactor,
    /// No second factor given.
    SecondFactorRequired,
    /// A TOTP code whose time step was spent.
    TotpCodeReused,
    /// Neither password nor TOTP code given.
    ProofRequired,
    /// An unknown or used verification token.
    EmailToken,
    /// An expired verification token.
    EmailTokenExpired,
    /// An unknown or used reset token.
    ResetToken,
    /// An expired reset token.
    ResetTokenExpired,
    /// An expiry not in the future.
    ExpireTime,
    /// A start after the end.
    TimeRange,
    /// Too many entries.
    ListTooLong,
    /// A malformed or missing user id.
    UserId,
    /// Not an E.164 phone number.
    Phone,
    /// A malformed account id.
    AccountId,
    /// A revocation reason that does not fit.
    Reason,
    /// No staff user named.
    StaffUserIdRequired,
    /// A negative revocation-log position.
    Position,
    /// Not an OpenSSH public key.
    SshKeyMalformed,
    /// A private key pasted.
    SshKeyIsPrivate,
    /// A key type we refuse.
    SshKeyAlgorithmUnsupported,
    /// A key too short.
    SshKeyTooWeak,
    /// A malformed passkey credential, or one a WebAuthn check refused.
    Passkey,
}

impl Invalid {
    /// The catalogue reason of the rule.
    fn reason(self) -> Reason {
        match self {
            Invalid::Email => Reason::EmailInvalid,
            Invalid::Name => Reason::NameInvalid,
            Invalid::PasswordTooLong => Reason::PasswordTooLong,
            Invalid::PasswordTooShort => Reason::PasswordTooShort,
            Invalid::PasswordTooCommon => Reason::PasswordTooCommon,
            Invalid::PasswordIncorrect => Reason::PasswordIncorrect,
            Invalid::PasswordUnchanged => Reason::PasswordUnchanged,
            Invalid::CodeWord => Reason::CodeWordInvalid,
            Invalid::SecondFactor => Reason::SecondFactorInvalid,
            Invalid::SecondFactorRequired => Reason::SecondFactorRequired,
            Invalid::TotpCodeReused => Reason::TotpCodeReused,
            Invalid::ProofRequired => Reason::ProofRequired,
            Invalid::EmailToken => Reason::EmailTokenInvalid,
            Invalid::EmailTokenExpired => Reason::EmailTokenExpired,
            Invalid::ResetToken => Reason::ResetTokenInvalid,
            Invalid::ResetTokenExpired => Reason::ResetTokenExpired,
            Invalid::ExpireTime => Reason::ExpireTimeInvalid,
            Invalid::TimeRange => Reason::TimeRangeInvalid,
            Invalid::ListTooLong => Reason::ListTooLong,
            Invalid::UserId => Reason::UserIdInvalid,
            Invalid::Phone => Reason::PhoneInvalid,
            Invalid::AccountId => Reason::AccountIdInvalid,
            Invalid::Reason => Reason::ReasonInvalid,
            Invalid::StaffUserIdRequired => Reason::StaffUserIdRequired,
            Invalid::Position => Reason::PositionInvalid,
            Invalid::SshKeyMalformed => Reason::SshKeyMalformed,
            Invalid::SshKeyIsPrivate => Reason::SshKeyIsPrivate,
            Invalid::SshKeyAlgorithmUnsupported => Reason::SshKeyAlgorithmUnsupported,
            Invalid::SshKeyTooWeak => Reason::SshKeyTooWeak,
            Invalid::Passkey => Reason::PasskeyInvalid,
        }
    }
}

impl IdentityError {
    /// One invalid field breaking `rule`.
    pub(crate) fn invalid(
        rule: Invalid,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            rule,
            field: field.into(),
            description: description.into(),
        }
    }

    /// A typed id's parse failure (FIELD_INVALID, naming the field) as the
    /// more specific `rule` (e.g. USER_ID_INVALID).
    pub(crate) fn bad_id(rule: Invalid, error: Error) -> Self {
        if let Some(v) = error.violations.first() {
            return Self::invalid(rule, v.field.clone(), v.description.clone());
        }
        Self::Service(error)
    }

    /// The rule an invalid field breaks (`None` for other refusals).
    pub(crate) fn rule(&self) -> Option<Invalid> {
        match self {
            Self::Invalid { rule, .. } => Some(*rule),
            Self::Several(all) => all.first().and_then(Self::rule),
            _ => None,
        }
    }

    /// Several refusals as one: none is `Ok`-like, one stays itself.
    pub(crate) fn several(mut errors: Vec<IdentityError>) -> Self {
        if errors.len() == 1
            && let Some(one) = errors.pop()
        {
            return one;
        }
        Self::Several(errors)
    }
}

impl From<IdentityError> for Error {
    fn from(error: IdentityError) -> Self {
        let message = error.to_string();
        match error {
            IdentityError::UserNotFound => Error::new(Reason::UserNotFound, message),
            IdentityError::SessionNotFound => Error::new(Reason::SessionNotFound, message),
            IdentityError::ApiTokenNotFound => Error::new(Reason::ApiTokenNotFound, message),
            IdentityError::ApiMemberNotFound => Error::new(Reason::MemberNotFound, message),
            IdentityError::ApiMemberSuspended => Error::new(Reason::ApiMemberSuspended, message),
            IdentityError::ApiMemberRevoked => Error::new(Reason::MemberRevoked, message),
            IdentityError::SshKeyNotFound => Error::new(Reason::SshKeyNotFound, message),
            IdentityError::ApiTokenInvalid => Error::new(Reason::ApiTokenInvalid, message),
            IdentityError::TokenRevoked => Error::new(Reason::TokenRevoked, message),
            IdentityError::TokenExpired => Error::new(Reason::TokenExpired, message),
            IdentityError::CredentialsInvalid => Error::new(Reason::CredentialsInvalid, message),
            IdentityError::RefreshTokenInvalid => Error::new(Reason::RefreshTokenInvalid, message),
            IdentityError::RefreshTokenReused => Error::new(Reason::RefreshTokenReused, message),
            IdentityError::MfaChallengeInvalid => Error::new(Reason::MfaChallengeInvalid, message),
            IdentityError::EmailNotVerified => Error::new(Reason::EmailNotVerified, message),
            IdentityError::SessionEnded => Error::new(Reason::SessionEnded, message),
            IdentityError::PortalSessionRequired(_) => {
                Error::new(Reason::PortalSessionRequired, message)
            }
            IdentityError::ReauthRequired => Error::new(Reason::ReauthRequired, message),
            IdentityError::PhoneCodeInvalid => {
                Error::new(Reason::PhoneCodeInvalid, message.clone()).with_field("code", message)
            }
            IdentityError::NotAMember => Error::new(Reason::NotAMember, message),
            IdentityError::TotpAlreadyEnabled => Error::new(Reason::TotpAlreadyEnabled, message),
            IdentityError::TotpNotEnabled => Error::new(Reason::TotpNotEnabled, message),
            IdentityError::TotpEnrollmentNotStarted => {
                Error::new(Reason::TotpEnrollmentNotStarted, message)
            }
            IdentityError::PasswordAlreadySet => Error::new(Reason::PasswordAlreadySet, message),
            IdentityError::EmailTaken => Error::new(Reason::EmailTaken, message),
            IdentityError::RotationInProgress => Error::new(Reason::RotationInProgress, message),
            IdentityError::SshKeyLimitReached { .. } => {
                Error::new(Reason::SshKeyLimitReached, message)
            }
            IdentityError::SshKeyExists => Error::new(Reason::SshKeyExists, message)
                .with_field("public_key", "same SHA256 fingerprint as an existing key"),
            IdentityError::ApiTokenLimitReached { .. } => {
                Error::new(Reason::ApiTokenLimitReached, message)
            }
            IdentityError::OthersTokensNeedOwner => {
                Error::role_too_low(tenancy_proto::auth::Role::Owner, message)
            }
            IdentityError::ApiTokenStateInvalid => {
                Error::new(Reason::ApiTokenStateInvalid, message)
                    .with_field("states", "unknown or unspecified state")
            }
            IdentityError::PasskeyChallengeInvalid => {
                Error::new(Reason::PasskeyChallengeInvalid, message)
            }
            IdentityError::PasskeyExists => Error::new(Reason::PasskeyExists, message),
            IdentityError::PasskeyLimitReached { .. } => {
                Error::new(Reason::PasskeyLimitReached, message)
            }
            IdentityError::PasskeyNotFound => Error::new(Reason::PasskeyNotFound, message),
            IdentityError::PasskeySuspect => Error::new(Reason::PasskeySuspect, message),
            IdentityError::LastFactorRequired => Error::new(Reason::LastFactorRequired, message),
            IdentityError::Throttled { retry_after } => {
                Error::throttled(Reason::AttemptsExceeded, retry_after)
            }
            IdentityError::CodeWordChecksExceeded { retry_after } => {
                Error::throttled(Reason::CodeWordAttemptsExceeded, retry_after)
            }
            IdentityError::Invalid {
                rule,
                field,
                description,
            } => Error::invalid(rule.reason(), field, description),
            IdentityError::Several(all) => merge(all.into_iter().map(Error::from).collect()),
            IdentityError::Service(error) => error,
        }
    }
}

/// Several INVALID_ARGUMENT errors as one: the first one's reason, every
/// field violation, the message listing them all.
fn merge(errors: Vec<Error>) -> Error {
    let mut iter = errors.into_iter();
    let Some(mut first) = iter.next() else {
        return Error::internal("no error to merge");
    };
    for e in iter {
        first.violations.extend(e.violations);
    }
    first.message = first
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    first
}

impl From<IdentityError> for tonic::Status {
    fn from(error: IdentityError) -> Self {
        Error::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_wrong_credentials_are_one_answer() {
        let error = Error::from(IdentityError::CredentialsInvalid);
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(error.reason, Reason::CredentialsInvalid);
        assert_eq!(error.message, "wrong email or password");
    }

    #[test]
    fn invalid_fields_name_the_field_and_the_rule() {
        let error = Error::from(IdentityError::invalid(
            Invalid::PasswordTooShort,
            "new_password",
            "at least 12 characters",
        ));
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert_eq!(error.reason, Reason::PasswordTooShort);
        assert_eq!(error.violations.len(), 1);
        assert_eq!(error.violations[0].field, "new_password");
        assert_eq!(error.violations[0].description, "at least 12 characters");
    }

    #[test]
    fn several_invalid_fields_keep_the_first_reason_and_every_field() {
        let error = Error::from(IdentityError::several(vec![
            IdentityError::invalid(Invalid::Email, "email", "missing @"),
            IdentityError::invalid(Invalid::Name, "name", "must be 1–200 characters"),
        ]));
        assert_eq!(error.reason, Reason::EmailInvalid);
        let fields: Vec<_> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["email", "name"]);
        assert_eq!(
            error.message,
            "email: missing @; name: must be 1–200 characters"
        );
    }

    #[test]
    fn throttling_says_when_to_retry() {
        let error = Error::from(IdentityError::Throttled {
            retry_after: Duration::from_secs(30),
        });
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        assert_eq!(error.reason, Reason::AttemptsExceeded);
        assert_eq!(error.retry_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_duplicate_ssh_key_names_the_field() {
        let error = Error::from(IdentityError::SshKeyExists);
        assert_eq!(error.reason, Reason::SshKeyExists);
        assert_eq!(error.violations[0].field, "public_key");
    }

    #[test]
    fn other_members_tokens_need_the_owner_role() {
        let error = Error::from(IdentityError::OthersTokensNeedOwner);
        assert_eq!(error.reason, Reason::RoleTooLow);
        assert_eq!(error.metadata["required_role"], "ROLE_OWNER");
    }

    #[test]
    fn tokens_for_an_inactive_api_member_are_a_failed_precondition() {
        let error = Error::from(IdentityError::ApiMemberSuspended);
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error.reason, Reason::ApiMemberSuspended);
        let error = Error::from(IdentityError::ApiMemberRevoked);
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error.reason, Reason::MemberRevoked);
    }

    #[test]
    fn service_failures_pass_through_unchanged() {
        let inner = Error::unavailable("account is not available");
        assert_eq!(Error::from(IdentityError::Service(inner.clone())), inner);
    }
}
