//! Rules that SQL pre-computes for speed agree with their one definition in
//! `domain/`: over many random catalogues, scopes and members (a seeded
//! loop, so a failure reproduces), on a real database of each kind.
//! - which services a member reaches (`domain::access::service_level`) vs
//!   ListServices' pre-filter (`store::list_services`);
//! - "active owner" (`domain::owners::OwnerFacts::is_active_owner`) vs
//!   `store::active_owners`;
//! - personal 2FA deadlines (`domain::mfa::{deadline, resaved}`) vs the
//!   SQL of `store::set_mfa_deadlines`.

use sea_orm::DatabaseConnection;
use tenancy_account::domain::access::{self, MemberFacts};
use tenancy_account::domain::{Level, MemberStatus, Role, Scope, ServiceAccess, mfa};
use tenancy_account::migration::Migrator;
use tenancy_account::store::{self, MemberRow, ServiceQuery, ServiceRow};
use tenancy_runtime::ids::{AccountId, ServiceId, UserId};
use tenancy_testkit::TestDatabase;

/// A small seeded generator (splitmix64): the same runs every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }

    fn level(&mut self) -> Level {
        self.pick(&[Level::View, Level::Manage])
    }
}

async fn database(db: &TestDatabase) -> DatabaseConnection {
    tenancy_runtime::db::open::<Migrator>(&db.url, "test")
        .await
        .unwrap()
}

fn member(
    account_id: &AccountId,
    user_id: &UserId,
    facts: MemberFacts,
    join_time: i64,
) -> MemberRow {
    MemberRow {
        account_id: account_id.clone(),
        user_id: user_id.clone(),
        role: facts.role,
        status: facts.status,
        portal_access: facts.portal_access,
        password_pending: false,
        service_access: facts.service_access,
        join_time,
        update_time: join_time,
        name_key: user_id.to_string(),
        email: format!("{user_id}@example.com"),
        mfa_deadline: None,
        accepted: true,
        alias_id: user_id.clone(),
        added_name: String::new(),
        api: false,
        description: String::new(),
        source_allowlist: String::new(),
    }
}

const TAGS: [&str; 5] = ["prod", "dev", "eu", "us", "db"];

#[tokio::test]
async fn list_services_prefilter_agrees_with_the_domain_rule() {
    let test_db = TestDatabase::new("rules_services").await;
    let db = database(&test_db).await;
    let mut rng = Rng(0x5eed_0001);
    for round in 0..40 {
        let account = AccountId::new();
        // A random catalogue: up to 12 services with random tags.
        let mut catalogue: Vec<ServiceRow> = Vec::new();
        for k in 0..rng.below(13) {
            let tags: Vec<String> = TAGS
                .iter()
                .filter(|_| rng.chance(30))
                .map(|t| (*t).to_owned())
                .collect();
            let row = ServiceRow {
                id: ServiceId::new(),
                account_id: account.clone(),
                kind: "vm".to_owned(),
                name: format!("service {k:02}"),
                tags,
                external_id: None,
                create_time: 0,
                update_time: 0,
                resource_kind: 1,
            };
            row.save(&db, true).await.unwrap();
            catalogue.push(row);
        }
        // A few members of every mode with random selections and grants on
        // services of the catalogue (the store keeps grants to existing
        // services: parse_scope checks them, DeleteService drops them).
        for _ in 0..4 {
            let mode = rng.pick(&[
                ServiceAccess::None,
                ServiceAccess::Selected,
                ServiceAccess::All,
            ]);
            let facts = MemberFacts {
                role: if rng.chance(15) {
                    Role::Owner
                } else {
                    Role::Manager
                },
                status: MemberStatus::Active,
                portal_access: true,
                service_access: mode,
            };
            let mut scope = Scope {
                portal_access: true,
                service_access: mode,
                ..Scope::default()
            };
            for service in &catalogue {
                if mode == ServiceAccess::Selected && rng.chance(30) {
                    scope.selected.push(service.id.clone());
                }
                if rng.chance(20) {
                    let level = rng.level();
                    scope.resources.push((service.id.clone(), level));
                }
            }
            for tag in TAGS {
                if rng.chance(25) {
                    let level = rng.level();
                    scope.tags.push((tag.to_owned(), level));
                }
            }
            let user = UserId::new();
            member(&account, &user, facts, 0).upsert(&db).await.unwrap();
            store::replace_grants(&db, &account, &user, &scope)
                .await
                .unwrap();
            let everything = access::reaches_all_services(facts);
            let query = ServiceQuery {
                reachable_by: (!everything).then_some(&user),
                limit: 1000,
                ..ServiceQuery::default()
            };
            let mut by_sql: Vec<ServiceId> = store::list_services(&db, &account, &query)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            by_sql.sort();
            let by_rule = access::reachable_services(
                facts,
                &scope,
                catalogue.iter().map(|s| (&s.id, s.tags.as_slice())),
                Level::View,
            );
            assert_eq!(
                by_sql, by_rule,
                "round {round}: mode {mode:?}, role {:?}, scope {scope:?}",
                facts.role
            );
        }
    }
}

#[tokio::test]
async fn active_owner_count_agrees_with_the_domain_rule() {
    let test_db = TestDatabase::new("rules_owners").await;
    let db = database(&test_db).await;
    let mut rng = Rng(0x5eed_0002);
    for round in 0..30 {
        let account = AccountId::new();
        let mut expected = 0;
        for _ in 0..rng.below(8) {
            let facts = MemberFacts {
                role: rng.pick(Role::ALL),
                status: rng.pick(MemberStatus::ALL),
                portal_access: rng.chance(70),
                service_access: ServiceAccess::All,
            };
            let row = member(&account, &UserId::new(), facts, 0);
            if row.owner_facts().is_active_owner() {
                expected += 1;
            }
            row.upsert(&db).await.unwrap();
        }
        assert_eq!(
            store::active_owners(&db, &account).await.unwrap(),
            expected,
            "round {round}"
        );
    }
}

#[tokio::test]
async fn mfa_deadline_sql_agrees_with_the_domain_rule() {
    let test_db = TestDatabase::new("rules_mfa").await;
    let db = database(&test_db).await;
    let mut rng = Rng(0x5eed_0003);
    let day = 24 * 3600 * 1000;
    let base: i64 = 1_800_000_000_000;
    for round in 0..30 {
        let account = AccountId::new();
        let mut rows = Vec::new();
        for _ in 0..rng.below(6) + 1 {
            let facts = MemberFacts {
                role: Role::Manager,
                status: MemberStatus::Active,
                portal_access: true,
                service_access: ServiceAccess::All,
            };
            let join = base + i64::try_from(rng.below(60)).unwrap() * day / 2;
            let mut row = member(&account, &UserId::new(), facts, join);
            row.mfa_deadline = rng
                .chance(60)
                .then(|| base + i64::try_from(rng.below(90)).unwrap() * day / 3);
            row.upsert(&db).await.unwrap();
            rows.push(row);
        }
        let start = base + i64::try_from(rng.below(60)).unwrap() * day / 2;
        let grace = i64::try_from(rng.below(31)).unwrap() * day;
        let resave = rng.chance(50);
        store::set_mfa_deadlines(&db, &account, start, grace, resave)
            .await
            .unwrap();
        for row in rows {
            let computed = mfa::deadline(start, row.join_time, grace);
            let expected = if resave {
                mfa::resaved(row.mfa_deadline, computed)
            } else {
                computed
            };
            let stored = store::member(&db, &account, &row.user_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                stored.mfa_deadline,
                Some(expected),
                "round {round}: resave {resave}, join {}, before {:?}",
                row.join_time,
                row.mfa_deadline
            );
        }
    }
}
