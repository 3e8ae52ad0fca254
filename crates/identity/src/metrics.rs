//! What identity measures (README: Operations): logins and second factors
//! by outcome, and the password-hashing pool. Outcomes are names from the
//! fixed sets below, never ids or addresses.

use tenancy_runtime::Error;
use tenancy_runtime::metrics::{Counter, EncodeLabelSet, Family, Metrics, OutcomeLabel};

use crate::app::sessions::LoginOutcome;
use crate::domain::error::{IdentityError, Invalid};

/// A second factor's outcome and kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MfaLabels {
    factor: &'static str,
    outcome: &'static str,
}

/// Logins and second factors, counted by outcome.
#[derive(Clone)]
pub(crate) struct Outcomes {
    logins: Family<OutcomeLabel, Counter>,
    mfa: Family<MfaLabels, Counter>,
}

/// Every login outcome, counted from 0 (so rates work from the start).
const LOGIN_OUTCOMES: [&str; 9] = [
    "success",
    "mfa_required",
    "wrong_password",
    "unknown_user",
    "throttled",
    "email_not_verified",
    "account_refused",
    "invalid_request",
    "error",
];

/// Every second-factor outcome.
const MFA_OUTCOMES: [&str; 8] = [
    "success",
    "wrong_code",
    "code_reused",
    "challenge_invalid",
    "throttled",
    "account_refused",
    "invalid_request",
    "error",
];

impl Outcomes {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let outcomes = Self::registered(metrics);
        for outcome in LOGIN_OUTCOMES {
            drop(outcomes.logins.get_or_create(&OutcomeLabel { outcome }));
        }
        for factor in ["totp", "recovery_code"] {
            for outcome in MFA_OUTCOMES {
                drop(outcomes.mfa.get_or_create(&MfaLabels { factor, outcome }));
            }
        }
        outcomes
    }

    fn registered(metrics: &Metrics) -> Self {
        Self {
            logins: metrics.counter_family(
                "tenancy_identity_logins",
                "Password logins by outcome: success, mfa_required (a second factor is asked for), wrong_password (a known user), unknown_user, throttled, email_not_verified, account_refused (the account named is not usable), invalid_request, error",
            ),
            mfa: metrics.counter_family(
                "tenancy_identity_mfa",
                "Second factors presented at login (CompleteMfa) by factor (totp, recovery_code, none) and outcome: success, wrong_code, code_reused, challenge_invalid (unknown, expired or used up), throttled, account_refused, invalid_request, error",
            ),
        }
    }

    /// Counts a login that ended with `result`; `known_user` says whether
    /// the email belonged to a user.
    pub(crate) fn login(&self, result: &Result<LoginOutcome, IdentityError>, known_user: bool) {
        let outcome = match result {
            Ok(LoginOutcome::Session(_)) => "success",
            Ok(LoginOutcome::MfaChallenge(_)) => "mfa_required",
            Err(IdentityError::CredentialsInvalid) if known_user => "wrong_password",
            Err(IdentityError::CredentialsInvalid) => "unknown_user",
            Err(IdentityError::EmailNotVerified) => "email_not_verified",
            Err(error) => common(error),
        };
        self.logins.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a second factor (`factor`) that ended with `result`.
    pub(crate) fn mfa<T>(&self, factor: &'static str, result: &Result<T, IdentityError>) {
        let outcome = match result {
            Ok(_) => "success",
            Err(IdentityError::MfaChallengeInvalid) => "challenge_invalid",
            Err(error) => match error.rule() {
                Some(Invalid::SecondFactor) => "wrong_code",
                Some(Invalid::TotpCodeReused) => "code_reused",
                _ => common(error),
            },
        };
        self.mfa.get_or_create(&MfaLabels { factor, outcome }).inc();
    }
}

/// The outcome of a refusal both counters share.
fn common(error: &IdentityError) -> &'static str {
    match Error::from(error.clone()).code() {
        tonic::Code::ResourceExhausted => "throttled",
        tonic::Code::InvalidArgument => "invalid_request",
        tonic::Code::PermissionDenied | tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            "account_refused"
        }
        _ => "error",
    }
}
