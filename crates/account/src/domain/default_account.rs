//! Which account a new portal token selects when the client named none.

/// A membership a portal token may select: ACTIVE, with portal access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usable {
    /// The account.
    pub account_id: String,
    /// When the user joined it (Unix ms).
    pub join_time: i64,
}

/// The most preferred of `preferred` among `usable`, else the earliest
/// joined (by join time, then account id), else none.
///
/// `usable` needs to hold only the preferred accounts and the earliest
/// joined one (the store reads no more): the answer is the same as over
/// every usable membership.
pub fn default_account<'a>(preferred: &[String], usable: &'a [Usable]) -> Option<&'a str> {
    preferred
        .iter()
        .find_map(|p| usable.iter().find(|u| &u.account_id == p))
        .or_else(|| {
            usable
                .iter()
                .min_by(|a, b| (a.join_time, &a.account_id).cmp(&(b.join_time, &b.account_id)))
        })
        .map(|u| u.account_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(pairs: &[(&str, i64)]) -> Vec<Usable> {
        pairs
            .iter()
            .map(|(id, t)| Usable {
                account_id: (*id).to_owned(),
                join_time: *t,
            })
            .collect()
    }

    #[test]
    fn the_first_usable_preferred_account_wins() {
        let u = usable(&[("a", 1), ("b", 2), ("c", 3)]);
        let preferred = vec!["x".to_owned(), "c".to_owned(), "b".to_owned()];
        assert_eq!(default_account(&preferred, &u), Some("c"));
    }

    #[test]
    fn without_a_usable_preferred_account_the_earliest_joined_wins() {
        let u = usable(&[("b", 5), ("c", 2), ("a", 2)]);
        assert_eq!(default_account(&["x".to_owned()], &u), Some("a"));
        assert_eq!(default_account(&[], &u), Some("a"));
    }

    #[test]
    fn no_usable_membership_selects_nothing() {
        assert_eq!(default_account(&["a".to_owned()], &[]), None);
    }
}
