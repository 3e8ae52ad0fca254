//! Keeps [`LiveState`] in step with identity and account.
//!
//! Each stream resumes from the last position applied after a reconnect, so
//! nothing is missed. While a stream is down, and until it has caught up
//! again, the gateway is not ready: authenticated calls get UNAVAILABLE and
//! health says NOT_SERVING. Failing closed is the only way to guarantee that
//! a revocation made meanwhile is never ignored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt as _;
use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::watch_policies_response::Event as PolicyEvent;
use tenancy_proto::account::{
    MemberStatus, MembershipState, SecuritySettings, WatchPoliciesRequest,
};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::revocation_event::Kind as RevocationKind;
use tenancy_proto::identity::watch_revocations_response::Item as RevocationItem;
use tenancy_proto::identity::{RevocationEvent, WatchRevocationsRequest};
use tenancy_runtime::Channel;
use tenancy_runtime::Timestamp;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::shutdown::Shutdown;
use tonic::service::interceptor::InterceptedService;

use crate::credentials::Authenticator;
use crate::id::{Id, parse_id};
use crate::metrics::Watch;
use crate::state::{CutOff, LiveState, Membership, Policies, Revocations, Settings};

/// Longest silence on a stream (servers send heartbeats every 15 s) before
/// the gateway reconnects.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// Called whenever readiness may have changed (to update health).
pub type ReadinessHook = Arc<dyn Fn(bool) + Send + Sync>;

/// An id of an event. Our services issue UUIDs; an event naming anything
/// else concerns no token the gateway accepts (those carry UUIDs only), so
/// it is logged and skipped.
fn event_id(text: &str, what: &'static str) -> Option<Id> {
    let id = parse_id(text);
    if id.is_none() {
        tracing::warn!(what, "event with an id that is not a UUID skipped");
    }
    id
}

fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| Timestamp::from_proto(t).millis()).unwrap_or(0)
}

async fn backoff(attempt: &mut u32, shutdown: &Shutdown) -> bool {
    let delay = Duration::from_millis(50u64 << (*attempt).min(5)); // 50 ms … 1.6 s
    *attempt += 1;
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.clone().wait() => false,
    }
}

/// Follows identity's revocation log until shutdown.
pub async fn follow_revocations(
    state: Arc<LiveState>,
    clock: SharedClock,
    authenticator: Arc<Authenticator>,
    identity: IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
    ready: ReadinessHook,
    watch: Watch,
    shutdown: Shutdown,
) {
    let mut attempt = 0;
    loop {
        let from = state.revocations_position.load(Ordering::Acquire);
        watch.resumed_from(from);
        let mut client = identity.clone();
        let request = WatchRevocationsRequest {
            from_position: from,
            watcher: "gateway".to_owned(),
            batched_catch_up: true,
        };
        match client.watch_revocations(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        next = tokio::time::timeout(SILENCE_LIMIT, stream.next()) => next,
                        () = shutdown.clone().wait() => return,
                    };
                    let item = match next {
                        Ok(Some(Ok(message))) => message.item,
                        Ok(Some(Err(status))) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "revocation stream failed");
                            break;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!("revocation stream silent; reconnecting");
                            break;
                        }
                    };
                    attempt = 0;
                    watch.message();
                    match item {
                        Some(RevocationItem::Event(event)) => {
                            apply_revocations(&state, &authenticator, &[event], &clock, &watch)
                                .await;
                        }
                        Some(RevocationItem::Batch(batch)) => {
                            apply_revocations(
                                &state,
                                &authenticator,
                                &batch.events,
                                &clock,
                                &watch,
                            )
                            .await;
                        }
                        Some(RevocationItem::CaughtUp(caught_up)) => {
                            watch.head(caught_up.head_position);
                            // A rebuild skips the entries that no longer
                            // matter: resume from the head it covered, not
                            // the last entry applied.
                            state
                                .revocations_position
                                .fetch_max(caught_up.head_position, Ordering::AcqRel);
                            watch.caught_up(true);
                            state.revocations_ready.store(true, Ordering::Release);
                            ready(state.is_ready());
                            state.recheck_streams(clock.now().millis());
                            tracing::info!(
                                position = state.revocations_position.load(Ordering::Acquire),
                                "revocations in sync"
                            );
                        }
                        Some(RevocationItem::Reset(_)) => {
                            // What follows rebuilds the state (the gateway
                            // fell behind the log's retention, or the log is
                            // new): nothing is decided until it has caught up
                            // again. Introspections cached before, and keys
                            // or tokens a pruned withdrawal would have
                            // dropped, may be older than what it says.
                            state.revocations_ready.store(false, Ordering::Release);
                            ready(false);
                            watch.caught_up(false);
                            *state.revocations.write() = Default::default();
                            authenticator.forget_api_tokens();
                            authenticator.signing_keys_changed(&[]).await;
                            state.revocations_position.store(0, Ordering::Release);
                            watch.resumed_from(0);
                            tracing::warn!(
                                "revocation log reset: rebuilding from the entries kept"
                            );
                        }
                        Some(RevocationItem::Heartbeat(heartbeat)) => {
                            watch.head(heartbeat.head_position);
                        }
                        None => {}
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), "cannot open the revocation stream");
            }
        }
        state.revocations_ready.store(false, Ordering::Release);
        ready(false);
        watch.reconnect();
        if !backoff(&mut attempt, &shutdown).await {
            return;
        }
    }
}

/// Applies `events` in order (one event, or a batch of the catch-up), each
/// exactly as if alone, then moves the position to the last one. The
/// revocations' write lock is taken once for each run of events between
/// key changes, not once per event.
async fn apply_revocations(
    state: &LiveState,
    authenticator: &Authenticator,
    events: &[RevocationEvent],
    clock: &SharedClock,
    watch: &Watch,
) {
    let now = clock.now().millis();
    let mut rest = events;
    while !rest.is_empty() {
        let keys = rest
            .iter()
            .position(|e| matches!(e.kind, Some(RevocationKind::SigningKeysChanged(_))));
        let (run, next) = rest.split_at(keys.unwrap_or(rest.len()));
        let mut drop_api_tokens = false;
        if !run.is_empty() {
            let mut revocations = state.revocations.write();
            for event in run {
                drop_api_tokens |= !apply_revocation(&mut revocations, event);
                watch.applied(event.position, millis(event.create_time.as_ref()), now);
            }
        }
        if drop_api_tokens {
            tracing::warn!("too many users' 2FA states; cached API tokens dropped");
            authenticator.forget_api_tokens();
        }
        rest = match next.split_first() {
            Some((keys, next)) => {
                if let Some(RevocationKind::SigningKeysChanged(changed)) = &keys.kind {
                    authenticator
                        .signing_keys_changed(&changed.withdrawn_kids)
                        .await;
                }
                watch.applied(keys.position, millis(keys.create_time.as_ref()), now);
                next
            }
            None => next,
        };
    }
    if let Some(last) = events.last() {
        state
            .revocations_position
            .store(last.position, Ordering::Release);
        state.recheck_streams(now);
    }
}

/// Applies one event other than SIGNING_KEYS_CHANGED. Returns false when
/// the 2FA states overflowed and were dropped: the caller must then drop
/// the cached API-token introspections they corrected.
fn apply_revocation(revocations: &mut Revocations, event: &RevocationEvent) -> bool {
    let Some(kind) = &event.kind else { return true };
    let position = event.position;
    let cut = || CutOff {
        position,
        expire_ms: millis(event.expire_time.as_ref()),
    };
    match kind {
        RevocationKind::Session(s) => {
            let Some(session) = event_id(&s.session_id, "session") else {
                return true;
            };
            // Keep the entry until every token of the session has expired.
            let expire = millis(event.expire_time.as_ref())
                .max(millis(event.create_time.as_ref()) + 3_600_000);
            revocations.sessions.insert(session, expire);
        }
        RevocationKind::UserTokensBefore(u) => {
            if let Some(user) = event_id(&u.user_id, "user") {
                revocations.cut_off_user(user, cut());
            }
        }
        RevocationKind::UserAccount(ua) => {
            if let (Some(user), Some(account)) = (
                event_id(&ua.user_id, "user"),
                event_id(&ua.account_id, "account"),
            ) {
                revocations.cut_off_user_account(user, account, cut());
            }
        }
        RevocationKind::ApiToken(t) => {
            if let Some(token) = event_id(&t.api_token_id, "API token") {
                revocations.api_tokens.insert(token);
            }
        }
        RevocationKind::MfaChanged(m) => {
            if let Some(user) = event_id(&m.user_id, "user") {
                return revocations.set_mfa(user, m.mfa_enabled);
            }
        }
        RevocationKind::SigningKeysChanged(_) => {}
    }
    true
}

/// Follows account's policy log until shutdown.
pub async fn follow_policies(
    state: Arc<LiveState>,
    clock: SharedClock,
    account: AccountInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
    ready: ReadinessHook,
    watch: Watch,
    shutdown: Shutdown,
) {
    let mut attempt = 0;
    loop {
        let from = state.policies_position.load(Ordering::Acquire);
        watch.resumed_from(from);
        let mut client = account.clone();
        // A snapshot being received replaces the live state only once
        // complete, so a half-received snapshot never allows anything.
        let mut staging: Option<Policies> = None;
        match client
            .watch_policies(WatchPoliciesRequest {
                from_position: from,
                batched_snapshot: true,
            })
            .await
        {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        next = tokio::time::timeout(SILENCE_LIMIT, stream.next()) => next,
                        () = shutdown.clone().wait() => return,
                    };
                    let message = match next {
                        Ok(Some(Ok(message))) => message,
                        Ok(Some(Err(status))) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "policy stream failed");
                            break;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!("policy stream silent; reconnecting");
                            break;
                        }
                    };
                    attempt = 0;
                    watch.message();
                    let position = message.position;
                    let committed = millis(message.time.as_ref());
                    match message.event {
                        Some(PolicyEvent::Reset(_)) => staging = Some(Policies::default()),
                        Some(PolicyEvent::CaughtUp(_)) => {
                            watch.head(position);
                            watch.caught_up(true);
                            if let Some(snapshot) = staging.take() {
                                *state.policies.write() = snapshot;
                            }
                            state.policies_position.store(position, Ordering::Release);
                            state.policies_ready.store(true, Ordering::Release);
                            ready(state.is_ready());
                            tracing::info!(position, "policies in sync");
                            state.recheck_streams(clock.now().millis());
                            continue;
                        }
                        Some(PolicyEvent::Heartbeat(_)) => {
                            watch.head(position);
                            continue;
                        }
                        None => continue,
                        Some(event) => {
                            match staging.as_mut() {
                                Some(snapshot) => apply_policy(snapshot, event),
                                None => apply_policy(&mut state.policies.write(), event),
                            }
                            watch.applied(position, committed, clock.now().millis());
                        }
                    }
                    if staging.is_none() {
                        state.policies_position.store(position, Ordering::Release);
                        state.recheck_streams(clock.now().millis());
                    }
                }
            }
            Err(status) => tracing::warn!(code = ?status.code(), "cannot open the policy stream"),
        }
        if staging.is_some() {
            // A snapshot broken off must start again from scratch.
            state.policies_position.store(0, Ordering::Release);
        }
        state.policies_ready.store(false, Ordering::Release);
        ready(false);
        watch.reconnect();
        if !backoff(&mut attempt, &shutdown).await {
            return;
        }
    }
}

fn apply_policy(policies: &mut Policies, event: PolicyEvent) {
    match event {
        PolicyEvent::MembershipChanged(m) => {
            let MembershipState {
                account_id,
                user_id,
                role,
                status,
                portal_access,
                join_time,
                mfa_deadline,
                api_member,
                source_allowlist,
            } = m;
            let (Some(account), Some(user)) =
                (event_id(&account_id, "account"), event_id(&user_id, "user"))
            else {
                return;
            };
            policies.upsert_member(
                account,
                user,
                Membership {
                    role: tenancy_proto::auth::Role::try_from(role).unwrap_or_default(),
                    active: status == MemberStatus::Active as i32,
                    portal_access,
                    join_time_ms: millis(join_time.as_ref()),
                    mfa_deadline_ms: mfa_deadline.as_ref().map(|t| millis(Some(t))),
                    api_member,
                    source_allowlist: networks(&source_allowlist).map(Vec::into_boxed_slice),
                },
            );
        }
        PolicyEvent::MembershipRemoved(r) => {
            if let (Some(account), Some(user)) = (
                event_id(&r.account_id, "account"),
                event_id(&r.user_id, "user"),
            ) {
                policies.remove_member(account, user);
            }
        }
        PolicyEvent::SecuritySettingsChanged(s) => {
            if let Some(account) = event_id(&s.account_id, "account") {
                policies.set_settings(account, settings_from_proto(&s));
            }
        }
        PolicyEvent::SnapshotBatch(batch) => {
            for settings in batch.security_settings {
                apply_policy(policies, PolicyEvent::SecuritySettingsChanged(settings));
            }
            for membership in batch.memberships {
                apply_policy(policies, PolicyEvent::MembershipChanged(membership));
            }
        }
        PolicyEvent::Reset(_) | PolicyEvent::CaughtUp(_) | PolicyEvent::Heartbeat(_) => {}
    }
}

/// The gateway's view of an account's settings. Entries that do not parse
/// are dropped (the account service validates them; this is defence); a
/// list of only such entries admits no address, never every address.
pub fn settings_from_proto(s: &SecuritySettings) -> Settings {
    let grace = s
        .mfa_grace_period
        .as_ref()
        .map(|d| d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000)
        .unwrap_or(0);
    Settings {
        enforce_mfa: s.enforce_mfa,
        enforce_mfa_time_ms: millis(s.enforce_mfa_time.as_ref()),
        mfa_grace_ms: grace,
        ip_allowlist: networks(&s.ip_allowlist),
    }
}

/// The networks of a pushed allowlist: `None` when it is empty (anywhere).
/// Entries that do not parse are dropped (the services validate them; this
/// is defence); a list of only such entries admits no address, never every
/// address.
pub fn networks(entries: &[String]) -> Option<Vec<ipnet::IpNet>> {
    (!entries.is_empty()).then(|| {
        entries
            .iter()
            .filter_map(|cidr| {
                cidr.parse::<ipnet::IpNet>().ok().or_else(|| {
                    cidr.parse::<std::net::IpAddr>()
                        .ok()
                        .map(ipnet::IpNet::from)
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allowlist: &[&str]) -> Settings {
        settings_from_proto(&SecuritySettings {
            ip_allowlist: allowlist.iter().map(|s| (*s).to_owned()).collect(),
            ..SecuritySettings::default()
        })
    }

    #[test]
    fn allowlist_entries_parse_as_networks_or_addresses_and_bad_ones_never_open_it() {
        let inside: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let host: std::net::IpAddr = "198.51.100.1".parse().unwrap();
        assert!(settings(&[]).admits(inside), "no allowlist: anywhere");
        let list = settings(&["203.0.113.0/24", "198.51.100.1", "not a network"]);
        assert!(list.admits(inside));
        assert!(list.admits(host));
        assert!(!list.admits("192.0.2.1".parse().unwrap()));
        assert!(
            !settings(&["not a network"]).admits(inside),
            "only unparsable entries: nowhere, not anywhere"
        );
    }

    #[test]
    fn membership_events_apply_by_id_and_events_without_uuid_ids_change_nothing() {
        let account = "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9f";
        let user = "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9d";
        let joined = |account: &str, user: &str| {
            PolicyEvent::MembershipChanged(MembershipState {
                account_id: account.to_owned(),
                user_id: user.to_owned(),
                role: tenancy_proto::auth::Role::Owner as i32,
                status: MemberStatus::Active as i32,
                portal_access: true,
                ..MembershipState::default()
            })
        };
        let mut policies = Policies::default();
        apply_policy(&mut policies, joined("acme", user));
        apply_policy(&mut policies, joined(account, "someone"));
        assert!(policies.members.is_empty());
        apply_policy(&mut policies, joined(account, user));
        let (account, user) = (parse_id(account).unwrap(), parse_id(user).unwrap());
        assert!(policies.member(account, user).is_some_and(|m| m.active));
    }
}

/// Property: whatever allowlist an account pushes (networks, bare
/// addresses, IPv4-mapped forms, garbage), the gateway admits an address
/// only if one of the entries contains it, checked with plain bit masks
/// independent of `ipnet`; and admits every address an entry contains.
#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use tenancy_proto::account::SecuritySettings;

    use super::settings_from_proto;
    use crate::client_ip::canonical;

    /// An entry: the text pushed, and the network it means (`None` for
    /// garbage), as (first address bits, prefix, IPv4?).
    type Entry = (String, Option<(u128, u8, bool)>);

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                (
                    format!("{}/{p}", Ipv4Addr::from(a)),
                    Some((u128::from(a), p, true)),
                )
            }),
            any::<u32>().prop_map(|a| (
                Ipv4Addr::from(a).to_string(),
                Some((u128::from(a), 32, true))
            )),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, p)| { (format!("{}/{p}", Ipv6Addr::from(a)), Some((a, p, false))) }),
            // Small networks, so random addresses fall inside them too.
            (0u32..16, 28u8..=32).prop_map(|(a, p)| {
                (
                    format!("{}/{p}", Ipv4Addr::from(0x0a00_0000 | a)),
                    Some((u128::from(0x0a00_0000 | a), p, true)),
                )
            }),
            // No digits or colons: garbage that can never parse as an address.
            "[ -/;-~]{0,20}".prop_map(|garbage| (garbage, None)),
        ]
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            (0u32..32).prop_map(|a| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            (0u32..32).prop_map(|a| IpAddr::V6(Ipv4Addr::from(0x0a00_0000 | a).to_ipv6_mapped())),
        ]
    }

    /// Whether `ip` is inside the network, by masks.
    fn inside(ip: IpAddr, (first, prefix, v4): (u128, u8, bool)) -> bool {
        let (bits, width) = match ip {
            IpAddr::V4(v4_ip) if v4 => (u128::from(u32::from(v4_ip)), 32u32),
            IpAddr::V6(v6_ip) if !v4 => (u128::from(v6_ip), 128u32),
            _ => return false,
        };
        let host = width - u32::from(prefix);
        host == width || (bits ^ first) >> host == 0
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn random_allowlists_never_admit_an_address_outside_them(
            entries in prop::collection::vec(entry(), 0..6),
            ip in address(),
        ) {
            let settings = settings_from_proto(&SecuritySettings {
                ip_allowlist: entries.iter().map(|(text, _)| text.clone()).collect(),
                ..SecuritySettings::default()
            });
            // The gateway decides on the canonical client address.
            let ip = canonical(ip);
            let contained = entries.iter().filter_map(|(_, net)| *net).any(|net| inside(ip, net));
            if entries.is_empty() {
                prop_assert!(settings.admits(ip), "no allowlist admits everyone");
            } else {
                prop_assert_eq!(settings.admits(ip), contained, "{} in {:?}", ip, entries);
            }
        }
    }
}
