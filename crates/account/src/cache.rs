//! The per-process access cache behind CheckAccess and BatchCheckAccess.
//!
//! A check needs a member's role, status and scope, and (for a service
//! target) the account's service catalogue with its tags. Both are loaded
//! from the database once and kept as immutable snapshots shared by `Arc`,
//! with the sets a decision needs precomputed, so a cached check allocates
//! nothing but the target's id and its answer.
//!
//! # Kept correct
//! - **Writes on this replica.** Every transaction that changes a
//!   membership, a member's scope or grants, or the service catalogue
//!   appends to the policy log, and after commit (before answering) drops
//!   the account's snapshots ([`AccessCache::invalidate`]). The next check
//!   on this replica reads the committed state: a suspension is refused at
//!   once.
//! - **Writes on other replicas.** [`AccessCache::follow`] polls the policy
//!   log (the positions WatchPolicies streams) every [`POLL_INTERVAL`] and
//!   drops the accounts of new entries. Snapshots are only served while the
//!   last successful poll began less than [`MAX_STALENESS`] ago; otherwise
//!   checks read the database. So an answer is never more than one second
//!   behind a commit anywhere.
//! - **Loads racing a write.** A load notes the invalidation epoch before it
//!   reads and keeps its snapshot only if no invalidation happened
//!   meanwhile; invalidations happen after commit, so a snapshot that could
//!   predate a commit is never kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tenancy_runtime::db;

use parking_lot::RwLock;
use sea_orm::DatabaseConnection;
use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, ServiceId, UserId};
use tokio::time::Instant;

use crate::domain::access::{MemberFacts, TargetGrants};
use crate::domain::{Level, Scope, ServiceAccess};
use crate::store;

/// How often the policy log is polled for other replicas' changes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The longest a cached answer may lag behind a commit on another replica.
pub(crate) const MAX_STALENESS: Duration = Duration::from_secs(1);
/// Cached members across all accounts; beyond it the cache starts over.
const MAX_MEMBERS: usize = 200_000;
/// Cached catalogues; beyond it the cache starts over.
const MAX_ACCOUNTS: usize = 20_000;
/// Policy log entries read per query.
const BATCH: i64 = 1000;

/// An account's service catalogue as checks need it.
#[derive(Debug, Default)]
pub(crate) struct Catalogue {
    /// Service → its tags.
    services: HashMap<ServiceId, Box<[Arc<str>]>>,
    /// Tag → the services carrying it.
    by_tag: HashMap<Arc<str>, Vec<ServiceId>>,
}

/// A member's facts and scope as checks need them.
#[derive(Debug)]
pub(crate) struct MemberAccess {
    /// Role, status, portal access and service-access mode.
    pub(crate) facts: MemberFacts,
    /// Selected services (SELECTED mode rows).
    selected: HashSet<ServiceId>,
    /// Service → resource grant level.
    resources: HashMap<ServiceId, Level>,
    /// Tag → tag grant level.
    tags: HashMap<String, Level>,
}

impl MemberAccess {
    fn new(facts: MemberFacts, scope: Scope) -> Self {
        let mut tags: HashMap<String, Level> = HashMap::with_capacity(scope.tags.len());
        for (tag, level) in scope.tags {
            let l = tags.entry(tag).or_default();
            *l = (*l).max(level);
        }
        let mut resources: HashMap<ServiceId, Level> =
            HashMap::with_capacity(scope.resources.len());
        for (id, level) in scope.resources {
            let l = resources.entry(id).or_default();
            *l = (*l).max(level);
        }
        Self {
            facts,
            selected: scope.selected.into_iter().collect(),
            resources,
            tags,
        }
    }

    /// What the scope grants on service `id` of `catalogue`: the same as
    /// `domain::access::grants_on`, from indexes (tested to agree).
    pub(crate) fn on_service(&self, catalogue: &Catalogue, id: &ServiceId) -> TargetGrants {
        let Some(service_tags) = catalogue.services.get(id) else {
            return TargetGrants::default();
        };
        TargetGrants {
            exists: true,
            selected: self.selected.contains(id),
            resource_level: self.resources.get(id).copied().unwrap_or_default(),
            tag_level: service_tags
                .iter()
                .filter_map(|t| self.tags.get(&**t))
                .copied()
                .max()
                .unwrap_or_default(),
        }
    }

    /// What the scope grants on services tagged `tag`.
    pub(crate) fn on_tag(&self, tag: &str) -> TargetGrants {
        TargetGrants {
            exists: true,
            tag_level: self.tags.get(tag).copied().unwrap_or_default(),
            ..TargetGrants::default()
        }
    }

    /// Services reachable at `wanted` or above through selection, resource
    /// grants and tag grants (not through OWNER or ALL), sorted: for a
    /// member who does not reach every service, the same as
    /// `domain::access::reachable_services`, from indexes (tested to agree).
    pub(crate) fn accessible(&self, catalogue: &Catalogue, wanted: Level) -> Vec<ServiceId> {
        let mut set: HashSet<&ServiceId> = HashSet::new();
        if self.facts.service_access == ServiceAccess::Selected {
            set.extend(self.selected.iter());
        }
        set.extend(
            self.resources
                .iter()
                .filter(|(_, l)| **l >= wanted)
                .map(|(k, _)| k),
        );
        for (tag, _) in self.tags.iter().filter(|(_, l)| **l >= wanted) {
            if let Some(ids) = catalogue.by_tag.get(tag.as_str()) {
                set.extend(ids.iter());
            }
        }
        let mut out: Vec<ServiceId> = set.into_iter().cloned().collect();
        out.sort_unstable();
        out
    }
}

/// A member lookup: `None` when the user is not a member of the account.
pub(crate) type Member = Option<Arc<MemberAccess>>;

#[derive(Default)]
struct AccountEntry {
    catalogue: Option<Arc<Catalogue>>,
    members: HashMap<UserId, Member>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation; loads keep their result only when it
    /// did not move while they read.
    epoch: u64,
    accounts: HashMap<AccountId, AccountEntry>,
    members: usize,
}

/// The cache; one per process, shared by the handlers and the follower.
pub(crate) struct AccessCache {
    inner: RwLock<Inner>,
    /// Reference point of `fresh_until`.
    base: Instant,
    /// Nanoseconds after `base` until which snapshots may be served (0:
    /// not following the log yet).
    fresh_until: AtomicU64,
}

impl std::fmt::Debug for AccessCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCache").finish_non_exhaustive()
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            base: Instant::now(),
            fresh_until: AtomicU64::new(0),
        }
    }
}

impl AccessCache {
    /// Whether snapshots may be served now.
    fn usable(&self) -> bool {
        let until = self.fresh_until.load(Ordering::Acquire);
        until > 0 && u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX) < until
    }

    fn set_fresh_until(&self, at: Instant) {
        let nanos = u64::try_from(at.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.fresh_until.store(nanos.max(1), Ordering::Release);
    }

    /// What `find` picks of `account`'s snapshots when they may be served
    /// (`usable`), else the epoch a load must leave unmoved to keep its
    /// result.
    fn cached<T: Clone>(
        &self,
        usable: bool,
        account: &AccountId,
        find: impl FnOnce(&AccountEntry) -> Option<&T>,
    ) -> Result<T, u64> {
        let inner = self.inner.read();
        match inner
            .accounts
            .get(account)
            .filter(|_| usable)
            .and_then(find)
        {
            Some(found) => Ok(found.clone()),
            None => Err(inner.epoch),
        }
    }

    /// The membership of `user` in `account`.
    pub(crate) async fn member(
        &self,
        db: &DatabaseConnection,
        account: &AccountId,
        user: &UserId,
    ) -> Result<Member, Error> {
        let usable = self.usable();
        let epoch = match self.cached(usable, account, |a| a.members.get(user)) {
            Ok(found) => return Ok(found),
            Err(epoch) => epoch,
        };
        let loaded = match store::member(db, account, user).await? {
            None => None,
            Some(row) => {
                let facts = row.access_facts();
                let scope = store::scope(db, &row).await?;
                Some(Arc::new(MemberAccess::new(facts, scope)))
            }
        };
        if usable {
            let mut inner = self.inner.write();
            if inner.epoch == epoch {
                if inner.members >= MAX_MEMBERS {
                    inner.clear();
                }
                let entry = inner.accounts.entry(account.clone()).or_default();
                if entry.members.insert(user.clone(), loaded.clone()).is_none() {
                    inner.members += 1;
                }
            }
        }
        Ok(loaded)
    }

    /// The service catalogue of `account`.
    pub(crate) async fn catalogue(
        &self,
        db: &DatabaseConnection,
        account: &AccountId,
    ) -> Result<Arc<Catalogue>, Error> {
        let usable = self.usable();
        let epoch = match self.cached(usable, account, |a| a.catalogue.as_ref()) {
            Ok(found) => return Ok(found),
            Err(epoch) => epoch,
        };
        let loaded = Arc::new(load_catalogue(db, account).await?);
        if usable {
            let mut inner = self.inner.write();
            if inner.epoch == epoch {
                if inner.accounts.len() >= MAX_ACCOUNTS {
                    inner.clear();
                }
                inner.accounts.entry(account.clone()).or_default().catalogue = Some(loaded.clone());
            }
        }
        Ok(loaded)
    }

    /// Drops everything cached about `account`; call after the commit of a
    /// change to it.
    pub(crate) fn invalidate(&self, account: &AccountId) {
        let mut inner = self.inner.write();
        inner.epoch += 1;
        if let Some(entry) = inner.accounts.remove(account) {
            inner.members -= entry.members.len();
        }
    }

    /// Drops everything.
    pub(crate) fn invalidate_all(&self) {
        let mut inner = self.inner.write();
        inner.epoch += 1;
        inner.clear();
    }

    /// Reads the log's head, so the cache is usable from the first request,
    /// then follows the log in a task that lives as long as the handle.
    pub(crate) async fn start(
        self: &Arc<Self>,
        db: DatabaseConnection,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        let started = Instant::now();
        let head = store::policy_head(&db).await?;
        self.set_fresh_until(started + MAX_STALENESS);
        Ok(tokio::spawn(self.clone().follow(db, Some(head))))
    }

    /// Follows the policy log for the rest of the process: drops the
    /// accounts of new entries and keeps the cache usable while polls
    /// succeed.
    async fn follow(self: Arc<Self>, db: DatabaseConnection, from: Option<i64>) {
        let mut last = from;
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let started = Instant::now();
            match self.poll(&db, last).await {
                Ok(position) => {
                    if last.is_none() {
                        // Nothing cached before the first position counts.
                        self.invalidate_all();
                    }
                    last = Some(position);
                    self.set_fresh_until(started + MAX_STALENESS);
                }
                Err(error) => {
                    // Checks read the database until a poll succeeds; then
                    // start over rather than trust the gap.
                    tracing::warn!(%error, "access cache cannot follow the policy log");
                    last = None;
                }
            }
        }
    }

    /// Drops the accounts of entries after `after` (or reads the head when
    /// `after` is unknown); returns the new position.
    async fn poll(&self, db: &DatabaseConnection, after: Option<i64>) -> Result<i64, Error> {
        let Some(mut last) = after else {
            return store::policy_head(db).await;
        };
        loop {
            let rows = db::all(
                db,
                &format!("SELECT position, account_id FROM account_policy_log WHERE position > $1 ORDER BY position LIMIT {BATCH}"),
                vec![store::i(last)],
            )
            .await?;
            let count = rows.len();
            for row in rows {
                self.invalidate(&AccountId::trusted(db::get::<String>(&row, "account_id")?));
                last = db::get(&row, "position")?;
            }
            if i64::try_from(count).unwrap_or(0) < BATCH {
                return Ok(last);
            }
        }
    }
}

impl Inner {
    fn clear(&mut self) {
        self.accounts.clear();
        self.members = 0;
    }
}

async fn load_catalogue(db: &DatabaseConnection, account: &AccountId) -> Result<Catalogue, Error> {
    let ids = db::all(
        db,
        "SELECT id FROM account_services WHERE account_id = $1",
        vec![store::s(account.as_str())],
    )
    .await?;
    let tags = db::all(
        db,
        "SELECT service_id, tag FROM account_service_tags WHERE account_id = $1",
        vec![store::s(account.as_str())],
    )
    .await?;
    let mut interned: HashSet<Arc<str>> = HashSet::new();
    let mut by_service: HashMap<ServiceId, Vec<Arc<str>>> = HashMap::new();
    let mut by_tag: HashMap<Arc<str>, Vec<ServiceId>> = HashMap::new();
    for row in tags {
        let service: ServiceId = db::get(&row, "service_id")?;
        let tag: String = db::get(&row, "tag")?;
        let tag = match interned.get(tag.as_str()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = tag.into();
                interned.insert(t.clone());
                t
            }
        };
        by_tag.entry(tag.clone()).or_default().push(service.clone());
        by_service.entry(service).or_default().push(tag);
    }
    let mut services = HashMap::with_capacity(ids.len());
    for row in ids {
        let id: ServiceId = db::get(&row, "id")?;
        let tags = by_service.remove(&id).unwrap_or_default();
        services.insert(id, tags.into_boxed_slice());
    }
    // Tag rows of services deleted in between would name unknown ids.
    for ids in by_tag.values_mut() {
        ids.retain(|id| services.contains_key(id));
    }
    Ok(Catalogue { services, by_tag })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{self, reachable_services};
    use crate::domain::{MemberStatus, Role};

    /// The cache answers from indexes what `domain::access` defines over
    /// plain scopes: the same grants on every service and tag, the same
    /// accessible services, over many random catalogues and scopes.
    #[test]
    fn indexes_agree_with_the_domain_rules() {
        let mut seed: u64 = 0x5eed_cace;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let tags = ["a", "b", "c", "d"];
        for _ in 0..500 {
            let ids: Vec<ServiceId> = (0..next(8)).map(|_| ServiceId::new()).collect();
            let mut services: HashMap<ServiceId, Box<[Arc<str>]>> = HashMap::new();
            let mut by_tag: HashMap<Arc<str>, Vec<ServiceId>> = HashMap::new();
            let mut plain: Vec<(ServiceId, Vec<String>)> = Vec::new();
            for id in &ids {
                let mine: Vec<String> = tags
                    .iter()
                    .filter(|_| next(3) == 0)
                    .map(|t| (*t).to_owned())
                    .collect();
                for t in &mine {
                    by_tag
                        .entry(t.as_str().into())
                        .or_default()
                        .push(id.clone());
                }
                services.insert(id.clone(), mine.iter().map(|t| t.as_str().into()).collect());
                plain.push((id.clone(), mine));
            }
            let catalogue = Catalogue { services, by_tag };
            let level = |n: u64| if n == 0 { Level::View } else { Level::Manage };
            let mode = [ServiceAccess::None, ServiceAccess::Selected][usize::from(next(2) == 0)];
            let mut scope = Scope {
                portal_access: true,
                service_access: mode,
                ..Scope::default()
            };
            for id in &ids {
                if mode == ServiceAccess::Selected && next(3) == 0 {
                    scope.selected.push(id.clone());
                }
                if next(4) == 0 {
                    scope.resources.push((id.clone(), level(next(2))));
                }
            }
            for t in tags {
                if next(3) == 0 {
                    scope.tags.push((t.to_owned(), level(next(2))));
                }
            }
            let facts = MemberFacts {
                role: Role::Manager,
                status: MemberStatus::Active,
                portal_access: true,
                service_access: mode,
            };
            let member = MemberAccess::new(facts, scope.clone());
            for (id, service_tags) in &plain {
                let cached = member.on_service(&catalogue, id);
                let defined = access::grants_on(&scope, id, service_tags);
                assert_eq!(
                    (
                        cached.exists,
                        cached.selected,
                        cached.resource_level,
                        cached.tag_level
                    ),
                    (
                        defined.exists,
                        defined.selected,
                        defined.resource_level,
                        defined.tag_level
                    ),
                    "{id} {scope:?}"
                );
            }
            for wanted in [Level::View, Level::Manage] {
                assert_eq!(
                    member.accessible(&catalogue, wanted),
                    reachable_services(
                        facts,
                        &scope,
                        plain.iter().map(|(id, t)| (id, t.as_slice())),
                        wanted,
                    ),
                    "{scope:?} at {wanted:?}"
                );
            }
        }
    }
}
