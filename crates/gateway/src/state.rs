//! The live state the gateway decides from, pushed by identity
//! (`WatchRevocations`) and account (`WatchPolicies`).
//!
//! Role, member status, portal access, 2FA enforcement and the IP allowlist
//! come from here, never from token claims, so a change made in the account
//! service applies at the next request once the event arrives.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use tenancy_proto::auth::Role;
use tenancy_runtime::Error;

use crate::id::Id;
use crate::jwt::PortalToken;
use crate::policy::{Credential, MethodPolicy, decide};

/// Maps of the live state. Keys are ids our services generate (UUIDs), not
/// chosen by clients, so a fast seeded hash is safe here.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set of the live state (see [`FastMap`]).
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// A member of an account, as the gateway needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The member's role.
    pub role: Role,
    /// ACTIVE (true) or SUSPENDED (false); revoked members are removed.
    pub active: bool,
    /// Whether the member may use the account at all.
    pub portal_access: bool,
    /// When they joined (Unix ms): the start of their 2FA grace period if
    /// they joined after enforcement began.
    pub join_time_ms: i64,
    /// Their personal 2FA deadline (Unix ms) as the account service keeps
    /// it: never extended when the grace period is lengthened later.
    pub mfa_deadline_ms: Option<i64>,
    /// An API member: no portal access, yet its API tokens are accepted;
    /// enforced 2FA does not apply to it.
    pub api_member: bool,
    /// Networks the member's API tokens may be used from (API members);
    /// `None` = anywhere.
    pub source_allowlist: Option<Box<[IpNet]>>,
}

impl Membership {
    /// Whether the member's API token may be used from `ip`.
    pub fn admits_source(&self, ip: IpAddr) -> bool {
        self.source_allowlist
            .as_ref()
            .is_none_or(|list| list.iter().any(|net| net.contains(&ip)))
    }

    /// When this member must have 2FA under `settings`: their personal
    /// deadline, or, before the account service sent one, the deadline the
    /// settings give.
    pub fn mfa_deadline_ms(&self, settings: &Settings) -> i64 {
        self.mfa_deadline_ms
            .unwrap_or_else(|| settings.mfa_deadline_ms(self.join_time_ms))
    }
}

/// An account's security settings, as the gateway needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Whether 2FA is enforced.
    pub enforce_mfa: bool,
    /// When enforcement was turned on (Unix ms).
    pub enforce_mfa_time_ms: i64,
    /// Grace period for members without 2FA (ms).
    pub mfa_grace_ms: i64,
    /// Networks portal sessions may come from: `None` = anywhere; an empty
    /// list admits no address at all.
    pub ip_allowlist: Option<Vec<IpNet>>,
}

impl Settings {
    /// When a member who joined at `join_time_ms` must have 2FA: the later
    /// of enforcement and joining, plus the grace period.
    pub fn mfa_deadline_ms(&self, join_time_ms: i64) -> i64 {
        self.enforce_mfa_time_ms
            .max(join_time_ms)
            .saturating_add(self.mfa_grace_ms)
    }

    /// Whether a portal session from `ip` may use the account.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.ip_allowlist
            .as_ref()
            .is_none_or(|list| list.iter().any(|net| net.contains(&ip)))
    }
}

/// Memberships and settings of every account.
///
/// Members are one flat map keyed by (account, user) rather than a map per
/// account: a decision's membership and settings lookups then depend only
/// on the token, not on each other, and the CPU overlaps their cache misses.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    /// Settings by account (absent: the defaults, nothing enforced).
    pub settings: FastMap<Id, Settings>,
    /// Memberships by (account, user).
    pub members: FastMap<(Id, Id), Membership>,
}

impl Policies {
    /// Applies a membership change.
    pub fn upsert_member(&mut self, account: Id, user: Id, membership: Membership) {
        self.members.insert((account, user), membership);
    }

    /// Forgets a membership.
    pub fn remove_member(&mut self, account: Id, user: Id) {
        self.members.remove(&(account, user));
    }

    /// Replaces an account's settings.
    pub fn set_settings(&mut self, account: Id, settings: Settings) {
        self.settings.insert(account, settings);
    }

    /// The user's membership of the account.
    pub fn member(&self, account: Id, user: Id) -> Option<&Membership> {
        self.members.get(&(account, user))
    }
}

/// A revocation by cut-off: the tokens issued before the event at
/// `position` are dead, and after `expire_ms` none of them is alive anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutOff {
    /// The event's position: tokens whose `rev` is lower are refused.
    pub position: i64,
    /// When the last token it can concern expires (Unix ms).
    pub expire_ms: i64,
}

impl CutOff {
    /// Whether it ends a token issued at revocation-log position `rev`.
    pub fn ends(&self, rev: i64) -> bool {
        rev < self.position
    }

    /// Folds a later cut-off for the same tokens into this one.
    fn extend(&mut self, later: CutOff) {
        self.position = self.position.max(later.position);
        self.expire_ms = self.expire_ms.max(later.expire_ms);
    }
}

/// Most users whose 2FA state is kept from MFA_CHANGED events; beyond, the
/// states and the cached API-token introspections they correct are dropped
/// together (the next introspection answers the current state).
pub const MFA_STATES_CAP: usize = 1_000_000;

/// Revoked credentials, and users' 2FA state as identity last pushed it.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    /// Revoked session ids → when the revocation may be forgotten (ms).
    pub sessions: FastMap<Id, i64>,
    /// Users whose tokens issued before a position are dead.
    pub users_before: FastMap<Id, CutOff>,
    /// (user, account) → cut-off: tokens of the user for the account issued
    /// before the position are dead.
    pub user_accounts_before: FastMap<(Id, Id), CutOff>,
    /// Revoked API token ids.
    pub api_tokens: FastSet<Id>,
    /// Users whose 2FA was turned on (true) or off (false) since the events
    /// the gateway replayed began: overrides what an API token's
    /// introspection said, which may be older.
    pub mfa: FastMap<Id, bool>,
}

impl Revocations {
    /// Whether a portal token is revoked: its session, every token of its
    /// user, or its user's tokens for its account.
    pub fn portal_token_revoked(&self, token: &PortalToken) -> bool {
        self.sessions.contains_key(&token.session)
            || self
                .users_before
                .get(&token.user)
                .is_some_and(|cut| cut.ends(token.rev))
            || token
                .account
                .is_some_and(|account| self.user_account_revoked(token.user, account, token.rev))
    }

    /// Whether the user's tokens for the account issued at revocation-log
    /// position `rev` are revoked.
    pub fn user_account_revoked(&self, user: Id, account: Id, rev: i64) -> bool {
        self.user_accounts_before
            .get(&(user, account))
            .is_some_and(|cut| cut.ends(rev))
    }

    /// Applies a USER_TOKENS_BEFORE event.
    pub fn cut_off_user(&mut self, user: Id, cut: CutOff) {
        self.users_before
            .entry(user)
            .and_modify(|c| c.extend(cut))
            .or_insert(cut);
    }

    /// Applies a USER_ACCOUNT event.
    pub fn cut_off_user_account(&mut self, user: Id, account: Id, cut: CutOff) {
        self.user_accounts_before
            .entry((user, account))
            .and_modify(|c| c.extend(cut))
            .or_insert(cut);
    }

    /// Applies an MFA_CHANGED event. Returns false when the cap was reached
    /// and the states were dropped: the caller must then drop the cached
    /// introspections they corrected.
    pub fn set_mfa(&mut self, user: Id, enabled: bool) -> bool {
        if self.mfa.len() >= MFA_STATES_CAP && !self.mfa.contains_key(&user) {
            self.mfa.clear();
            return false;
        }
        self.mfa.insert(user, enabled);
        true
    }

    /// Whether the user has 2FA: as identity last pushed it, else as the
    /// API token's introspection said (`introspected`).
    pub fn user_has_mfa(&self, user: Id, introspected: bool) -> bool {
        self.mfa.get(&user).copied().unwrap_or(introspected)
    }

    /// Drops revocations that can no longer matter: every token they
    /// concern has expired (with the verification leeway).
    pub fn prune(&mut self, now_ms: i64) {
        const LEEWAY_MS: i64 = crate::jwt::LEEWAY_SECONDS as i64 * 1000;
        self.sessions.retain(|_, expire| *expire > now_ms);
        self.users_before
            .retain(|_, cut| cut.expire_ms.saturating_add(LEEWAY_MS) > now_ms);
        self.user_accounts_before
            .retain(|_, cut| cut.expire_ms.saturating_add(LEEWAY_MS) > now_ms);
    }
}

/// Everything pushed to the gateway, plus whether it is in sync.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Revoked credentials.
    pub revocations: RwLock<Revocations>,
    /// Memberships and settings.
    pub policies: RwLock<Policies>,
    /// Whether the revocation stream is connected and caught up.
    pub revocations_ready: AtomicBool,
    /// Whether the policy stream is connected and caught up.
    pub policies_ready: AtomicBool,
    /// The last revocation position applied.
    pub revocations_position: AtomicI64,
    /// The last policy position applied.
    pub policies_position: AtomicI64,
    /// Server streams in flight, decided again on every change.
    pub streams: OpenStreams,
}

/// A server stream in flight through the gateway: what it was decided on,
/// and how to end it.
struct OpenStream {
    method: MethodPolicy,
    credential: Credential,
    client_ip: IpAddr,
    end: tokio::sync::oneshot::Sender<Error>,
}

/// Server streams (Watch…) in flight. A stream outlives the decision that
/// let it start, so after every change of the live state each is decided
/// again, and one no longer allowed (session revoked, member suspended,
/// role lowered, …) is ended with the refusal: within the same second as
/// the next call would be.
#[derive(Default)]
pub struct OpenStreams {
    next: AtomicU64,
    open: Mutex<FastMap<u64, OpenStream>>,
}

impl std::fmt::Debug for OpenStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStreams")
            .field("open", &self.open.lock().len())
            .finish()
    }
}

impl OpenStreams {
    /// Registers a stream; the receiver yields the refusal that ends it.
    pub fn open(
        &self,
        method: MethodPolicy,
        credential: Credential,
        client_ip: IpAddr,
    ) -> (u64, tokio::sync::oneshot::Receiver<Error>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (end, ended) = tokio::sync::oneshot::channel();
        self.open.lock().insert(
            id,
            OpenStream {
                method,
                credential,
                client_ip,
                end,
            },
        );
        (id, ended)
    }

    /// Forgets a stream that ended.
    pub fn close(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LiveState {
    /// Decides every open stream again after a change; ends those refused.
    /// While the state is not in sync nothing is ended (nothing is known
    /// either way; new calls are refused meanwhile).
    pub fn recheck_streams(&self, now_ms: i64) {
        if !self.is_ready() {
            return;
        }
        let mut open = self.streams.open.lock();
        if open.is_empty() {
            return;
        }
        let refused: Vec<(u64, Error)> = open
            .iter()
            .filter_map(|(id, s)| {
                decide(&s.method, Some(&s.credential), self, s.client_ip, now_ms)
                    .err()
                    .map(|e| (*id, e))
            })
            .collect();
        for (id, error) in refused {
            if let Some(stream) = open.remove(&id) {
                let _ = stream.end.send(error);
            }
        }
    }
}

impl LiveState {
    /// Whether both streams are caught up: until then, and whenever a stream
    /// is down, authenticated calls are refused (fail closed).
    pub fn is_ready(&self) -> bool {
        self.revocations_ready.load(Ordering::Acquire)
            && self.policies_ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Id {
        Id::from_u128(n)
    }

    fn token(user: Id, session: Id, account: Option<Id>, rev: i64) -> PortalToken {
        PortalToken {
            user,
            session,
            account,
            rev,
            expire_ms: i64::MAX,
            auth_time: 0,
            amr: crate::jwt::Amr::default(),
            mfa: false,
            staff: false,
        }
    }

    #[test]
    fn mfa_deadline_counts_from_the_later_of_enforcement_and_joining() {
        let settings = Settings {
            enforce_mfa: true,
            enforce_mfa_time_ms: 1_000,
            mfa_grace_ms: 500,
            ip_allowlist: None,
        };
        assert_eq!(settings.mfa_deadline_ms(0), 1_500);
        assert_eq!(settings.mfa_deadline_ms(2_000), 2_500);
    }

    #[test]
    fn an_allowlist_admits_its_networks_and_an_empty_one_nothing() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let mut settings = Settings::default();
        assert!(settings.admits(ip), "no allowlist: anywhere");
        settings.ip_allowlist = Some(vec!["203.0.113.0/24".parse().unwrap()]);
        assert!(settings.admits(ip));
        assert!(!settings.admits("198.51.100.1".parse().unwrap()));
        settings.ip_allowlist = Some(Vec::new());
        assert!(!settings.admits(ip), "empty allowlist: nowhere");
    }

    #[test]
    fn revocations_by_session_user_and_account() {
        let mut r = Revocations::default();
        let (s1, u2, u3, a1) = (id(1), id(2), id(3), id(4));
        let cut = |position| CutOff {
            position,
            expire_ms: 20_000,
        };
        r.sessions.insert(s1, 10_000);
        r.cut_off_user(u2, cut(50));
        r.cut_off_user_account(u3, a1, cut(50));
        assert!(r.portal_token_revoked(&token(id(9), s1, None, 0)));
        assert!(!r.portal_token_revoked(&token(id(9), id(8), None, 0)));
        assert!(r.portal_token_revoked(&token(u2, id(8), None, 49)));
        assert!(
            !r.portal_token_revoked(&token(u2, id(8), None, 50)),
            "issued once the cut-off was committed: alive"
        );
        assert!(r.portal_token_revoked(&token(u3, id(8), Some(a1), 49)));
        assert!(!r.portal_token_revoked(&token(u3, id(8), Some(a1), 50)));
        assert!(
            !r.portal_token_revoked(&token(u3, id(8), Some(id(5)), 0)),
            "other account"
        );
        // A later cut-off moves the position; an event replayed out of
        // order never moves it back.
        r.cut_off_user(u2, cut(70));
        r.cut_off_user(u2, cut(60));
        assert!(r.portal_token_revoked(&token(u2, id(8), None, 69)));
        assert!(!r.portal_token_revoked(&token(u2, id(8), None, 70)));
        r.prune(10_001);
        assert!(!r.portal_token_revoked(&token(id(9), s1, None, 0)));
        assert!(
            r.portal_token_revoked(&token(u2, id(8), None, 0)),
            "cut-off kept until its tokens expired"
        );
        r.prune(20_000 + 30_000);
        assert!(!r.portal_token_revoked(&token(u2, id(8), None, 0)));
        assert!(r.users_before.is_empty() && r.user_accounts_before.is_empty());
    }

    #[test]
    fn pushed_2fa_state_overrides_the_introspection_and_the_cap_drops_it_all() {
        let mut r = Revocations::default();
        assert!(
            !r.user_has_mfa(id(1), false),
            "nothing pushed: as introspected"
        );
        assert!(r.user_has_mfa(id(1), true));
        assert!(r.set_mfa(id(1), true));
        assert!(
            r.user_has_mfa(id(1), false),
            "enrolled after the introspection"
        );
        assert!(r.set_mfa(id(1), false));
        assert!(
            !r.user_has_mfa(id(1), true),
            "turned off after the introspection"
        );
        for n in 2..=MFA_STATES_CAP as u128 {
            r.mfa.insert(id(n), true);
        }
        assert!(r.set_mfa(id(1), true), "a known user never overflows");
        assert!(
            !r.set_mfa(id(0), true),
            "a new one beyond the cap drops the states"
        );
        assert!(r.mfa.is_empty());
    }
}
