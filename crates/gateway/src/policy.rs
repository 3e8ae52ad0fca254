//! The decision: may this credential call this method, now, from here?
//!
//! A pure function of the method's rule, the verified credential, the live
//! state and the client address, so it is unit-tested exhaustively and
//! benchmarked alone. The order of checks is the order a client should fix
//! things in: credentials, revocation, token kind, membership, role, network,
//! second factor.

use std::net::IpAddr;

use tenancy_proto::auth::{AccessRule, Audience, TokenKind};
use tenancy_runtime::principal::role_at_least;
use tenancy_runtime::{Error, Principal, Reason};

use crate::id::{Id, id_string};
use crate::jwt::PortalToken;
use crate::state::{LiveState, Membership};

/// A resolved Public API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Token id.
    pub id: Id,
    /// Owner.
    pub user_id: Id,
    /// The account it is bound to.
    pub account_id: Id,
    /// Restricted to read methods.
    pub read_only: bool,
    /// Expiry (Unix ms), if any.
    pub expire_ms: Option<i64>,
    /// Whether its user had 2FA when it was introspected (MFA_CHANGED
    /// events override it: [`Revocations::user_has_mfa`]).
    ///
    /// [`Revocations::user_has_mfa`]: crate::state::Revocations::user_has_mfa
    pub mfa: bool,
    /// Whether this call comes from outside the token's own source
    /// allowlist (set per call by the authenticator, which keeps the list).
    pub outside_source_allowlist: bool,
}

/// A verified credential.
#[derive(Clone, Copy, Debug)]
pub enum Credential {
    /// A portal session's access token.
    Portal(PortalToken),
    /// A Public API token.
    Api(ApiToken),
}

impl Credential {
    /// The user it authenticates.
    pub fn user(&self) -> Id {
        match self {
            Self::Portal(token) => token.user,
            Self::Api(token) => token.user_id,
        }
    }

    /// The account it selects (a portal token's selected account, an API
    /// token's account).
    pub fn account(&self) -> Option<Id> {
        match self {
            Self::Portal(token) => token.account,
            Self::Api(token) => Some(token.account_id),
        }
    }
}

/// What the gateway knows of a method besides its rule.
#[derive(Clone, Debug)]
pub struct MethodPolicy {
    /// The declared rule.
    pub rule: AccessRule,
    /// Whether the method only reads (Get…, List…, Watch…, Check…): the only
    /// methods a read-only API token may call.
    pub read_only: bool,
}

impl MethodPolicy {
    /// The policy of the method named `method` with `rule`.
    pub fn new(method: &str, rule: AccessRule) -> Self {
        Self {
            rule,
            read_only: tenancy_runtime::rules::is_read_only(method),
        }
    }
}

/// A refusal about the caller's standing in `account`: PERMISSION_DENIED,
/// naming the account in the message and in ErrorInfo metadata
/// `account_id`, so a portal can say which account it concerns.
fn account_denied(account: Id, error: impl FnOnce(&str) -> Error) -> Error {
    let account = id_string(account);
    error(&account).with_metadata("account_id", account)
}

/// The refusal of a revoked API token (cached or not: one answer).
pub fn api_token_revoked() -> Error {
    Error::new(Reason::TokenRevoked, "this API token was revoked")
}

/// The refusal of an expired API token (cached or not: one answer).
pub fn api_token_expired() -> Error {
    Error::new(Reason::TokenExpired, "this API token has expired")
}

/// The refusal under enforced 2FA once the member's deadline has passed.
fn mfa_required(account: Id, deadline_ms: i64, portal: bool) -> Error {
    let what = if portal {
        "enrol with BeginTotpEnrollment"
    } else {
        "the token's owner must turn on two-factor authentication in the portal"
    };
    account_denied(account, |account| {
        Error::new(
            Reason::MfaEnrollmentRequired,
            format!("account {account} requires two-factor authentication: {what}"),
        )
    })
    .with_metadata(
        "mfa_deadline",
        tenancy_runtime::Timestamp(deadline_ms)
            .to_proto()
            .to_string(),
    )
}

/// The refusal of an API token used from outside a source allowlist
/// (`which`: the token's own or its API member's).
fn source_refused(account: Id, client_ip: IpAddr, which: &'static str) -> Error {
    account_denied(account, |a| {
        Error::new(
            Reason::SourceIpNotAllowed,
            format!(
                "this API token may not be used from {client_ip}: the {which}'s source allowlist \
                 (in account {a}) does not contain it"
            ),
        )
    })
    .with_metadata("client_ip", client_ip.to_string())
    .with_metadata("allowlist", which)
}

/// Decides a call. `Ok` carries the principal to forward (without request id
/// and user agent, which the proxy adds).
pub fn decide(
    method: &MethodPolicy,
    credential: Option<&Credential>,
    state: &LiveState,
    client_ip: IpAddr,
    now_ms: i64,
) -> Result<Principal, Error> {
    let rule = &method.rule;
    let audience = rule.audience();
    match audience {
        Audience::Public => {
            return Ok(Principal {
                client_ip: Some(client_ip),
                ..Principal::default()
            });
        }
        Audience::Unspecified | Audience::Internal => {
            return Err(Error::new(
                Reason::MethodNotRoutable,
                "this method is not callable from outside",
            ));
        }
        Audience::User | Audience::Account | Audience::Staff => {}
    }
    let Some(credential) = credential else {
        return Err(Error::new(
            Reason::CredentialsMissing,
            "send `authorization: Bearer <access token or API token>`",
        ));
    };
    if !state.is_ready() {
        return Err(Error::new(
            Reason::GatewayNotReady,
            "the gateway is synchronising its state; retry shortly",
        ));
    }

    let mut principal = Principal {
        client_ip: Some(client_ip),
        ..Principal::default()
    };
    let (user, account, portal) = match credential {
        Credential::Portal(token) => {
            if state.revocations.read().portal_token_revoked(token) {
                return Err(Error::new(Reason::TokenRevoked, "this session has ended"));
            }
            principal.token_kind = TokenKind::Portal;
            principal.session_id = Some(id_string(token.session));
            principal.amr = token.amr.names().map(str::to_owned).collect();
            principal.staff = token.staff;
            principal.auth_time = Some(token.auth_time);
            (token.user, token.account, Some(token))
        }
        Credential::Api(token) => {
            // The token's own state first, as for an uncached token (whose
            // introspection says revoked or expired whatever the method).
            if state.revocations.read().api_tokens.contains(&token.id) {
                return Err(api_token_revoked());
            }
            if token.expire_ms.is_some_and(|expire| expire <= now_ms) {
                return Err(api_token_expired());
            }
            if token.outside_source_allowlist {
                return Err(source_refused(token.account_id, client_ip, "token"));
            }
            if !rule.api_tokens_allowed {
                return Err(Error::new(
                    Reason::ApiTokenNotAllowed,
                    "this method needs a portal session",
                ));
            }
            if token.read_only && !method.read_only {
                return Err(Error::new(
                    Reason::ApiTokenReadOnly,
                    "this API token may only read",
                ));
            }
            principal.token_kind = TokenKind::Api;
            principal.api_token_id = Some(id_string(token.id));
            principal.read_only = token.read_only;
            (token.user_id, Some(token.account_id), None)
        }
    };
    principal.user_id = Some(id_string(user));

    if audience == Audience::Staff {
        return if principal.staff {
            principal.account_id = account.map(id_string);
            Ok(principal)
        } else {
            Err(Error::new(
                Reason::StaffRequired,
                "only the support team may call this method",
            ))
        };
    }
    if audience == Audience::Account && rule.staff_allowed && principal.staff {
        // Support staff act on accounts that granted them access; the
        // service checks the grant for the resource they touch.
        principal.account_id = account.map(id_string);
        return Ok(principal);
    }

    let policies = state.policies.read();
    // Two lookups keyed by the token alone: independent, so they overlap.
    let membership = account.and_then(|a| policies.member(a, user));
    let settings = account.and_then(|a| policies.settings.get(&a));
    // An API member has no portal access, yet its API tokens may use the
    // account (it never has a portal session).
    let may_use = |m: &Membership| m.portal_access || (m.api_member && portal.is_none());
    let usable = membership.filter(|m| m.active && may_use(m));

    if audience == Audience::Account {
        let Some(account_id) = account else {
            return Err(Error::new(
                Reason::AccountRequired,
                "select an account first (SwitchAccount)",
            ));
        };
        let Some(member) = membership else {
            return Err(account_denied(account_id, |a| {
                Error::new(
                    Reason::NotAMember,
                    format!("you are not a member of account {a}"),
                )
            }));
        };
        if !member.active {
            return Err(account_denied(account_id, |a| {
                Error::new(
                    Reason::MemberSuspended,
                    format!("your membership of account {a} is suspended"),
                )
            }));
        }
        if !may_use(member) {
            return Err(account_denied(account_id, |a| {
                Error::new(
                    Reason::PortalAccessDisabled,
                    format!("you have no access to account {a}"),
                )
            }));
        }
        if !role_at_least(member.role, rule.min_role()) {
            return Err(account_denied(account_id, |a| {
                Error::role_too_low(
                    rule.min_role(),
                    format!("your role in account {a} does not allow this"),
                )
            }));
        }
        if portal.is_some() && settings.is_some_and(|s| !s.admits(client_ip)) {
            return Err(account_denied(account_id, |a| {
                Error::new(
                    Reason::IpNotAllowed,
                    format!("account {a} only allows portal access from its IP allowlist"),
                )
            })
            .with_metadata("client_ip", client_ip.to_string()));
        }
        principal.account_id = Some(id_string(account_id));
    } else if usable.is_some() {
        // USER methods: pass the selected account on only while the caller
        // may still use it.
        principal.account_id = account.map(id_string);
    }
    if let Some(member) = usable {
        principal.role = member.role;
    }
    // An API member's own source allowlist, for its tokens (the network
    // step, like the portal allowlist above).
    if let (Some(member), Some(account_id), None) = (usable, account, portal)
        && !member.admits_source(client_ip)
    {
        return Err(source_refused(account_id, client_ip, "member"));
    }

    // Enforced 2FA: once the member's deadline passed, a portal session
    // without a second factor, or an API token of a user without 2FA, may
    // only call what enrolment needs.
    if let (Some(member), Some(settings), Some(account_id)) = (usable, settings, account)
        && !member.api_member
        && settings.enforce_mfa
        && !rule.allowed_during_mfa_enrollment
        && !portal.is_some_and(PortalToken::has_second_factor)
    {
        let deadline_ms = member.mfa_deadline_ms(settings);
        if now_ms >= deadline_ms {
            // What identity pushed since: a user who enrolled meanwhile is
            // let through at once (a session's next token records it); one
            // who turned 2FA off has no older portal token left (that
            // revoked them) and their API tokens follow the pushed state.
            let revocations = state.revocations.read();
            let has_second_factor = match credential {
                Credential::Portal(token) => revocations.user_has_mfa(token.user, false),
                Credential::Api(token) => revocations.user_has_mfa(token.user_id, token.mfa),
            };
            drop(revocations);
            if !has_second_factor {
                return Err(mfa_required(account_id, deadline_ms, portal.is_some()));
            }
        }
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::jwt::Amr;
    use crate::state::{Membership, Settings};
    use tenancy_proto::auth::Role;

    const NOW: i64 = 1_800_000_000_000;

    fn rule(audience: Audience, min_role: Role) -> AccessRule {
        AccessRule {
            audience: audience as i32,
            min_role: min_role as i32,
            ..AccessRule::default()
        }
    }

    fn account_method(min_role: Role) -> MethodPolicy {
        MethodPolicy::new("ListMembers", rule(Audience::Account, min_role))
    }

    /// A stable id per name, so tests read as names.
    fn id(name: &str) -> Id {
        Id::from_u128(name.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u128, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0100_0000_01b3)
        }))
    }

    fn claims(user: &str, account: Option<&str>) -> Credential {
        Credential::Portal(PortalToken {
            user: id(user),
            session: id(&format!("s-{user}")),
            account: account.map(id),
            rev: 10,
            expire_ms: NOW + 540_000,
            auth_time: NOW / 1000 - 60,
            amr: Amr::from_names(["pwd"]),
            mfa: false,
            staff: false,
        })
    }

    fn ready_state() -> LiveState {
        let state = LiveState::default();
        state.revocations_ready.store(true, Ordering::Release);
        state.policies_ready.store(true, Ordering::Release);
        let mut policies = state.policies.write();
        for (user, role, active) in [
            ("owner", Role::Owner, true),
            ("manager", Role::Manager, true),
            ("suspended", Role::Owner, false),
        ] {
            policies.upsert_member(
                id("acc"),
                id(user),
                Membership {
                    role,
                    active,
                    portal_access: true,
                    join_time_ms: NOW - 86_400_000,
                    mfa_deadline_ms: None,
                    api_member: false,
                    source_allowlist: None,
                },
            );
        }
        drop(policies);
        state
    }

    /// Changes `user`'s membership of "acc" in place, as an event would.
    fn change_member(state: &LiveState, user: &str, change: impl FnOnce(&mut Membership)) {
        let mut policies = state.policies.write();
        let member = policies.members.get_mut(&(id("acc"), id(user))).unwrap();
        change(member);
    }

    fn ip() -> IpAddr {
        "203.0.113.7".parse().unwrap()
    }

    fn reason(result: Result<Principal, Error>) -> Reason {
        result.unwrap_err().reason
    }

    #[test]
    fn public_methods_need_no_credentials() {
        let method = MethodPolicy::new("Login", rule(Audience::Public, Role::Unspecified));
        let principal = decide(&method, None, &LiveState::default(), ip(), NOW).unwrap();
        assert_eq!(principal.user_id, None);
        assert_eq!(principal.client_ip, Some(ip()));
    }

    #[test]
    fn missing_credentials_are_unauthenticated() {
        let error = decide(
            &account_method(Role::Manager),
            None,
            &ready_state(),
            ip(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        assert_eq!(error.reason, Reason::CredentialsMissing);
    }

    #[test]
    fn nothing_authenticated_passes_before_the_first_sync() {
        let state = LiveState::default();
        let error = decide(
            &account_method(Role::Manager),
            Some(&claims("owner", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn role_comes_from_the_membership_and_must_reach_the_minimum() {
        let state = ready_state();
        let owner = decide(
            &account_method(Role::Owner),
            Some(&claims("owner", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap();
        assert_eq!(owner.role, Role::Owner);
        assert_eq!(owner.account_id, Some(id_string(id("acc"))));
        assert_eq!(
            reason(decide(
                &account_method(Role::Owner),
                Some(&claims("manager", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::RoleTooLow
        );
        let manager = decide(
            &account_method(Role::Manager),
            Some(&claims("manager", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap();
        assert_eq!(manager.role, Role::Manager);
    }

    #[test]
    fn suspended_members_and_strangers_are_refused() {
        let state = ready_state();
        let method = account_method(Role::Manager);
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("suspended", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::MemberSuspended
        );
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("stranger", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::NotAMember
        );
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("owner", None)),
                &state,
                ip(),
                NOW
            )),
            Reason::AccountRequired
        );
    }

    #[test]
    fn revoked_sessions_and_users_are_refused() {
        let state = ready_state();
        let method = account_method(Role::Manager);
        state
            .revocations
            .write()
            .sessions
            .insert(id("s-owner"), NOW + 1000);
        let error = decide(
            &method,
            Some(&claims("owner", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            (error.code(), error.reason),
            (tonic::Code::Unauthenticated, Reason::TokenRevoked)
        );
        // The manager's token was issued at position 10: a cut-off at 10 was
        // committed before it and spares it, one at 11 ends it.
        let cut = |position| crate::state::CutOff {
            position,
            expire_ms: NOW + 600_000,
        };
        let manager = claims("manager", Some("acc"));
        state
            .revocations
            .write()
            .cut_off_user(id("manager"), cut(10));
        assert!(decide(&method, Some(&manager), &state, ip(), NOW).is_ok());
        state
            .revocations
            .write()
            .cut_off_user(id("manager"), cut(11));
        assert_eq!(
            reason(decide(&method, Some(&manager), &state, ip(), NOW)),
            Reason::TokenRevoked
        );
    }

    #[test]
    fn the_allowlist_limits_portal_tokens_but_not_api_tokens() {
        let state = ready_state();
        state.policies.write().set_settings(
            id("acc"),
            Settings {
                ip_allowlist: Some(vec!["198.51.100.0/24".parse().unwrap()]),
                ..Settings::default()
            },
        );
        let mut method = account_method(Role::Manager);
        method.rule.api_tokens_allowed = true;
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("owner", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::IpNotAllowed
        );
        let inside: IpAddr = "198.51.100.20".parse().unwrap();
        assert!(
            decide(
                &method,
                Some(&claims("owner", Some("acc"))),
                &state,
                inside,
                NOW
            )
            .is_ok()
        );
        let api = api_token_of(false, None, false);
        let principal = decide(&method, Some(&api), &state, ip(), NOW).unwrap();
        assert_eq!(principal.token_kind, TokenKind::Api);
    }

    #[test]
    fn api_tokens_only_where_allowed_unexpired_unrevoked_and_read_only_reads() {
        let state = ready_state();
        let token = |read_only, expire_ms| api_token_of(read_only, expire_ms, false);
        let portal_only = account_method(Role::Manager);
        assert_eq!(
            reason(decide(
                &portal_only,
                Some(&token(false, None)),
                &state,
                ip(),
                NOW
            )),
            Reason::ApiTokenNotAllowed
        );
        let mut write = MethodPolicy::new("CreateContact", rule(Audience::Account, Role::Manager));
        write.rule.api_tokens_allowed = true;
        let mut read = MethodPolicy::new("ListContacts", rule(Audience::Account, Role::Manager));
        read.rule.api_tokens_allowed = true;
        assert_eq!(
            reason(decide(&write, Some(&token(true, None)), &state, ip(), NOW)),
            Reason::ApiTokenReadOnly
        );
        assert!(decide(&read, Some(&token(true, None)), &state, ip(), NOW).is_ok());
        assert_eq!(
            reason(decide(
                &read,
                Some(&token(false, Some(NOW))),
                &state,
                ip(),
                NOW
            )),
            Reason::TokenExpired
        );
        state.revocations.write().api_tokens.insert(id("t1"));
        assert_eq!(
            reason(decide(&read, Some(&token(false, None)), &state, ip(), NOW)),
            Reason::TokenRevoked
        );
    }

    #[test]
    fn enforced_2fa_allows_only_enrolment_after_the_grace_period() {
        let state = ready_state();
        state.policies.write().set_settings(
            id("acc"),
            Settings {
                enforce_mfa: true,
                enforce_mfa_time_ms: NOW - 1000,
                mfa_grace_ms: 10_000,
                ip_allowlist: None,
            },
        );
        let method = account_method(Role::Manager);
        let caller = claims("owner", Some("acc"));
        assert!(
            decide(&method, Some(&caller), &state, ip(), NOW).is_ok(),
            "within grace"
        );
        let later = NOW + 9_000;
        assert_eq!(
            reason(decide(&method, Some(&caller), &state, ip(), later)),
            Reason::MfaEnrollmentRequired
        );
        let mut enrol = MethodPolicy::new(
            "BeginTotpEnrollment",
            rule(Audience::User, Role::Unspecified),
        );
        enrol.rule.allowed_during_mfa_enrollment = true;
        assert!(decide(&enrol, Some(&caller), &state, ip(), later).is_ok());
        let user_method =
            MethodPolicy::new("ChangePassword", rule(Audience::User, Role::Unspecified));
        assert_eq!(
            reason(decide(&user_method, Some(&caller), &state, ip(), later)),
            Reason::MfaEnrollmentRequired
        );
        // Enrolled in another session: pushed by identity, let through.
        state.revocations.write().set_mfa(id("owner"), true);
        assert!(decide(&method, Some(&caller), &state, ip(), later).is_ok());
        state.revocations.write().mfa.clear();
        let Credential::Portal(c) = &caller else {
            unreachable!()
        };
        let mut with_otp = *c;
        with_otp.amr.insert("otp");
        assert!(
            decide(
                &method,
                Some(&Credential::Portal(with_otp)),
                &state,
                ip(),
                later
            )
            .is_ok()
        );
    }

    #[test]
    fn open_streams_end_when_the_state_no_longer_allows_them_and_only_then() {
        let state = ready_state();
        let method = account_method(Role::Manager);
        let (_, mut owner_stream) =
            state
                .streams
                .open(method.clone(), claims("owner", Some("acc")), ip());
        let (manager_id, mut manager_stream) =
            state
                .streams
                .open(method.clone(), claims("manager", Some("acc")), ip());
        state.recheck_streams(NOW);
        assert!(owner_stream.try_recv().is_err(), "still allowed: kept");
        assert_eq!(state.streams.len(), 2);

        // Out of sync: nothing is known, nothing is ended.
        state.revocations_ready.store(false, Ordering::Release);
        state
            .revocations
            .write()
            .sessions
            .insert(id("s-owner"), NOW + 1);
        state.recheck_streams(NOW);
        assert!(owner_stream.try_recv().is_err());

        state.revocations_ready.store(true, Ordering::Release);
        state.recheck_streams(NOW);
        assert_eq!(
            owner_stream.try_recv().unwrap().reason,
            Reason::TokenRevoked
        );
        assert!(manager_stream.try_recv().is_err());
        assert_eq!(state.streams.len(), 1);

        change_member(&state, "manager", |m| m.active = false);
        state.recheck_streams(NOW);
        assert!(manager_stream.try_recv().is_ok(), "suspended: ended");
        state.streams.close(manager_id);
        assert!(state.streams.is_empty());
    }

    #[test]
    fn the_personal_2fa_deadline_wins_over_a_lengthened_grace_period() {
        let state = ready_state();
        // Enforced with a 10 s grace, then lengthened to a day: the member's
        // personal deadline (NOW + 9 s) stays.
        state.policies.write().set_settings(
            id("acc"),
            Settings {
                enforce_mfa: true,
                enforce_mfa_time_ms: NOW - 1000,
                mfa_grace_ms: 86_400_000,
                ip_allowlist: None,
            },
        );
        change_member(&state, "owner", |m| m.mfa_deadline_ms = Some(NOW + 9_000));
        let method = account_method(Role::Manager);
        let caller = claims("owner", Some("acc"));
        assert!(decide(&method, Some(&caller), &state, ip(), NOW + 8_999).is_ok());
        assert_eq!(
            reason(decide(&method, Some(&caller), &state, ip(), NOW + 9_000)),
            Reason::MfaEnrollmentRequired
        );
    }

    #[test]
    fn staff_methods_need_staff_and_staff_may_use_staff_allowed_account_methods() {
        let state = ready_state();
        let staff_method = MethodPolicy::new("ListQueue", rule(Audience::Staff, Role::Unspecified));
        assert_eq!(
            reason(decide(
                &staff_method,
                Some(&claims("owner", None)),
                &state,
                ip(),
                NOW
            )),
            Reason::StaffRequired
        );
        let Credential::Portal(c) = claims("agent", None) else {
            unreachable!()
        };
        let mut staff = c;
        staff.staff = true;
        let staff = Credential::Portal(staff);
        assert!(decide(&staff_method, Some(&staff), &state, ip(), NOW).is_ok());
        let mut shared = account_method(Role::Manager);
        assert_eq!(
            reason(decide(&shared, Some(&staff), &state, ip(), NOW)),
            Reason::AccountRequired
        );
        shared.rule.staff_allowed = true;
        assert!(decide(&shared, Some(&staff), &state, ip(), NOW).is_ok());
    }

    /// An API member "bot" of "acc": no portal access, its own token.
    fn api_member_state(allowlist: Option<&str>) -> (LiveState, Credential) {
        let state = ready_state();
        state.policies.write().upsert_member(
            id("acc"),
            id("bot"),
            Membership {
                role: Role::Manager,
                active: true,
                portal_access: false,
                join_time_ms: NOW - 86_400_000,
                mfa_deadline_ms: None,
                api_member: true,
                source_allowlist: allowlist.map(|a| vec![a.parse().unwrap()].into_boxed_slice()),
            },
        );
        let Credential::Api(mut token) = api_token_of(false, None, false) else {
            unreachable!()
        };
        token.user_id = id("bot");
        (state, Credential::Api(token))
    }

    #[test]
    fn an_api_members_tokens_work_without_portal_access_and_without_2fa() {
        let (state, token) = api_member_state(None);
        let mut method = account_method(Role::Manager);
        method.rule.api_tokens_allowed = true;
        let principal = decide(&method, Some(&token), &state, ip(), NOW).unwrap();
        assert_eq!(principal.role, Role::Manager);
        // Enforced 2FA, the deadline long past: not for an API member.
        state.policies.write().set_settings(
            id("acc"),
            Settings {
                enforce_mfa: true,
                enforce_mfa_time_ms: NOW - 100_000,
                mfa_grace_ms: 1_000,
                // The portal allowlist never applies to API tokens.
                ip_allowlist: Some(vec!["198.51.100.0/24".parse().unwrap()]),
            },
        );
        assert!(decide(&method, Some(&token), &state, ip(), NOW).is_ok());
        // Its role still counts, and suspension refuses at once.
        let mut owners_only = account_method(Role::Owner);
        owners_only.rule.api_tokens_allowed = true;
        assert_eq!(
            reason(decide(&owners_only, Some(&token), &state, ip(), NOW)),
            Reason::RoleTooLow
        );
        change_member(&state, "bot", |m| m.active = false);
        assert_eq!(
            reason(decide(&method, Some(&token), &state, ip(), NOW)),
            Reason::MemberSuspended
        );
        // A portal token naming it (it never has a session) is refused.
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("bot", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::MemberSuspended
        );
        change_member(&state, "bot", |m| m.active = true);
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("bot", Some("acc"))),
                &state,
                ip(),
                NOW
            )),
            Reason::PortalAccessDisabled
        );
        // A person without portal access still has every token refused.
        change_member(&state, "manager", |m| m.portal_access = false);
        let Credential::Api(mut person) = api_token_of(false, None, false) else {
            unreachable!()
        };
        person.user_id = id("manager");
        assert_eq!(
            reason(decide(
                &method,
                Some(&Credential::Api(person)),
                &state,
                ip(),
                NOW
            )),
            Reason::PortalAccessDisabled
        );
    }

    #[test]
    fn source_allowlists_of_api_members_and_tokens_refuse_other_addresses() {
        let (state, token) = api_member_state(Some("203.0.113.0/24"));
        let mut method = account_method(Role::Manager);
        method.rule.api_tokens_allowed = true;
        assert!(decide(&method, Some(&token), &state, ip(), NOW).is_ok());
        let outside: IpAddr = "2001:db8::1".parse().unwrap();
        let error = decide(&method, Some(&token), &state, outside, NOW).unwrap_err();
        assert_eq!(error.reason, Reason::SourceIpNotAllowed);
        assert_eq!(error.code(), tonic::Code::PermissionDenied);
        assert_eq!(error.metadata["allowlist"], "member");
        assert_eq!(error.metadata["client_ip"], "2001:db8::1");
        // The token's own list, whoever holds it (here a person's token).
        let Credential::Api(mut own) = api_token_of(false, None, false) else {
            unreachable!()
        };
        own.outside_source_allowlist = true;
        let error = decide(&method, Some(&Credential::Api(own)), &state, ip(), NOW).unwrap_err();
        assert_eq!(error.reason, Reason::SourceIpNotAllowed);
        assert_eq!(error.metadata["allowlist"], "token");
    }

    #[test]
    fn internal_methods_are_never_allowed() {
        let method = MethodPolicy::new("EnsureUser", rule(Audience::Internal, Role::Unspecified));
        assert_eq!(
            reason(decide(
                &method,
                Some(&claims("owner", Some("acc"))),
                &ready_state(),
                ip(),
                NOW
            )),
            Reason::MethodNotRoutable
        );
    }

    /// The owner's API token "t1" for "acc".
    fn api_token_of(read_only: bool, expire_ms: Option<i64>, mfa: bool) -> Credential {
        Credential::Api(ApiToken {
            id: id("t1"),
            user_id: id("owner"),
            account_id: id("acc"),
            read_only,
            expire_ms,
            mfa,
            outside_source_allowlist: false,
        })
    }

    fn api_token(expire_ms: Option<i64>, mfa: bool) -> Credential {
        api_token_of(false, expire_ms, mfa)
    }

    #[test]
    fn a_dead_api_token_gets_one_answer_whatever_the_method() {
        let state = ready_state();
        // A portal-only method: the token's state is still what is said
        // (an uncached token is refused as revoked or expired before any
        // method is looked at, so a cached one must be too).
        let portal_only = account_method(Role::Manager);
        assert_eq!(
            reason(decide(
                &portal_only,
                Some(&api_token(Some(NOW), false)),
                &state,
                ip(),
                NOW
            )),
            Reason::TokenExpired
        );
        state.revocations.write().api_tokens.insert(id("t1"));
        let error = decide(
            &portal_only,
            Some(&api_token(Some(NOW), false)),
            &state,
            ip(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            (error.code(), error.reason),
            (tonic::Code::Unauthenticated, Reason::TokenRevoked),
            "revocation wins over expiry, as identity answers"
        );
        assert_eq!(error, api_token_revoked());
        assert_eq!(api_token_expired().reason, Reason::TokenExpired);
    }

    #[test]
    fn account_refusals_name_the_account() {
        let state = ready_state();
        let method = account_method(Role::Owner);
        let account = id_string(id("acc"));
        for (user, expected) in [
            ("suspended", Reason::MemberSuspended),
            ("stranger", Reason::NotAMember),
            ("manager", Reason::RoleTooLow),
        ] {
            let error =
                decide(&method, Some(&claims(user, Some("acc"))), &state, ip(), NOW).unwrap_err();
            assert_eq!(
                (error.code(), error.reason),
                (tonic::Code::PermissionDenied, expected)
            );
            assert_eq!(
                error.metadata.get("account_id"),
                Some(&account),
                "{expected}"
            );
            assert!(error.message.contains(&account), "{}", error.message);
        }
        change_member(&state, "manager", |m| m.portal_access = false);
        let error = decide(
            &account_method(Role::Manager),
            Some(&claims("manager", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(error.reason, Reason::PortalAccessDisabled);
        assert_eq!(error.metadata.get("account_id"), Some(&account));
    }

    #[test]
    fn a_suspended_member_keeps_user_methods_without_the_account() {
        let state = ready_state();
        let me = MethodPolicy::new("GetMe", rule(Audience::User, Role::Unspecified));
        let principal = decide(
            &me,
            Some(&claims("suspended", Some("acc"))),
            &state,
            ip(),
            NOW,
        )
        .unwrap();
        assert_eq!(principal.user_id, Some(id_string(id("suspended"))));
        assert_eq!(
            principal.account_id, None,
            "the suspended account is not passed on"
        );
        assert_eq!(principal.role, Role::Unspecified);
    }

    #[test]
    fn enforced_2fa_refuses_api_tokens_of_users_without_it_after_their_deadline() {
        let state = ready_state();
        state.policies.write().set_settings(
            id("acc"),
            Settings {
                enforce_mfa: true,
                enforce_mfa_time_ms: NOW - 1000,
                mfa_grace_ms: 10_000,
                ip_allowlist: None,
            },
        );
        let mut method = account_method(Role::Manager);
        method.rule.api_tokens_allowed = true;
        let deadline = NOW + 9_000;
        assert!(
            decide(
                &method,
                Some(&api_token(None, false)),
                &state,
                ip(),
                deadline - 1
            )
            .is_ok(),
            "before the deadline"
        );
        let error = decide(
            &method,
            Some(&api_token(None, false)),
            &state,
            ip(),
            deadline,
        )
        .unwrap_err();
        assert_eq!(
            (error.code(), error.reason),
            (tonic::Code::PermissionDenied, Reason::MfaEnrollmentRequired)
        );
        assert_eq!(
            error.metadata.get("account_id"),
            Some(&id_string(id("acc")))
        );
        assert_eq!(
            error.metadata.get("mfa_deadline").map(String::as_str),
            Some("2027-01-15T08:00:09Z")
        );
        assert!(
            decide(
                &method,
                Some(&api_token(None, true)),
                &state,
                ip(),
                deadline
            )
            .is_ok(),
            "introspected with 2FA"
        );
        // Pushed changes win over the introspection, both ways.
        state.revocations.write().set_mfa(id("owner"), true);
        assert!(
            decide(
                &method,
                Some(&api_token(None, false)),
                &state,
                ip(),
                deadline
            )
            .is_ok()
        );
        state.revocations.write().set_mfa(id("owner"), false);
        assert_eq!(
            reason(decide(
                &method,
                Some(&api_token(None, true)),
                &state,
                ip(),
                deadline
            )),
            Reason::MfaEnrollmentRequired
        );
        // Accounts that do not enforce 2FA do not care.
        state.policies.write().settings.clear();
        assert!(
            decide(
                &method,
                Some(&api_token(None, false)),
                &state,
                ip(),
                deadline
            )
            .is_ok()
        );
    }
}
