//! The SQL pre-filters of the store agree with the rules they stand for in
//! `domain/` (random inputs, both databases).

use std::collections::HashSet;

use tenancy_support::domain::Visibility;
use tenancy_support::store::{TicketSeed, bench_list_page, seed_tickets};
use tenancy_testkit::TestDatabase;

/// A small deterministic generator (xorshift), so a failure repeats.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// ListTickets limits a SELECTED or NONE member's list in SQL to
/// account-general tickets and those of the services they reach; the
/// definition is `Visibility::sees`. Over random catalogues and scopes the
/// query returns exactly the tickets the rule says are visible.
#[tokio::test]
async fn the_ticket_list_filter_and_the_visibility_rule_agree() {
    let db = TestDatabase::new("rules_visibility").await;
    let conn = tenancy_runtime::db::open::<tenancy_support::migration::Migrator>(&db.url, "test")
        .await
        .unwrap();
    let services: Vec<String> = (0..6).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut random = Random(0x5eed_1234_abcd_ef01);
    for round in 0..12 {
        let account = uuid::Uuid::now_v7().to_string();
        // Up to 40 tickets (one page), each general or about a service.
        let tickets: Vec<Option<String>> = (0..random.below(40) + 1)
            .map(|_| match random.below(services.len() as u64 + 1) {
                0 => None,
                n => Some(services[n as usize - 1].clone()),
            })
            .collect();
        seed_tickets(
            &conn,
            tickets
                .iter()
                .enumerate()
                .map(|(i, service)| TicketSeed {
                    id: uuid::Uuid::now_v7().to_string(),
                    account_id: account.clone(),
                    subject: format!("ticket {i}"),
                    service_id: service.clone(),
                    priority: 2,
                    status: 1,
                    created_by_user_id: uuid::Uuid::now_v7().to_string(),
                    time: 1_000 + i as i64,
                })
                .collect(),
        )
        .await
        .unwrap();
        // A random scope: none, some or all of the services reached.
        let reached: HashSet<String> = services
            .iter()
            .filter(|_| random.below(2) == 0)
            .cloned()
            .collect();
        let visibility = Visibility::GeneralAnd(reached);
        let expected = tickets
            .iter()
            .filter(|s| visibility.sees(s.as_deref()))
            .count();
        let listed = bench_list_page(&conn, &account, visibility.service_filter(), Vec::new(), 4)
            .await
            .unwrap();
        assert_eq!(
            listed, expected,
            "round {round}: {visibility:?} over {tickets:?}"
        );
        // Everything: no filter, every ticket.
        let all = bench_list_page(
            &conn,
            &account,
            Visibility::Everything.service_filter(),
            Vec::new(),
            4,
        )
        .await
        .unwrap();
        assert_eq!(all, tickets.len(), "round {round}");
    }
}
