//! Which tickets a member may see (seed 002): OWNERs and members with
//! service access ALL see every ticket; SELECTED members see account-general
//! tickets and tickets of the services they reach; NONE members see only
//! account-general tickets; a caller who is not an active member sees
//! nothing. What cannot be seen is NOT_FOUND, never PERMISSION_DENIED.

use std::collections::HashSet;

/// What one caller may see in one account, decided from one access check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Not an active member (or no portal access): nothing.
    Nothing,
    /// Owner or service access ALL: every ticket.
    Everything,
    /// SELECTED or NONE: account-general tickets plus these services'.
    GeneralAnd(HashSet<String>),
}

impl Visibility {
    /// Whether a ticket about `service_id` (`None`: account-general) is
    /// visible.
    pub fn sees(&self, service_id: Option<&str>) -> bool {
        match (self, service_id) {
            (Visibility::Nothing, _) => false,
            (Visibility::Everything, _) => true,
            (Visibility::GeneralAnd(_), None) => true,
            (Visibility::GeneralAnd(services), Some(id)) => services.contains(id),
        }
    }

    /// For list queries: `None` when no service filter is needed, else the
    /// services whose tickets (besides account-general ones) are visible.
    /// `Nothing` has to be handled by the caller before.
    pub fn service_filter(&self) -> Option<Vec<String>> {
        match self {
            Visibility::Everything | Visibility::Nothing => None,
            Visibility::GeneralAnd(services) => {
                let mut ids: Vec<String> = services.iter().cloned().collect();
                ids.sort();
                Some(ids)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(ids: &[&str]) -> Visibility {
        Visibility::GeneralAnd(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn owners_and_all_see_every_ticket() {
        assert!(Visibility::Everything.sees(None));
        assert!(Visibility::Everything.sees(Some("s1")));
        assert_eq!(Visibility::Everything.service_filter(), None);
    }

    #[test]
    fn selected_members_see_general_tickets_and_their_services() {
        let v = selected(&["s1", "s2"]);
        assert!(v.sees(None));
        assert!(v.sees(Some("s1")));
        assert!(!v.sees(Some("s3")));
        assert_eq!(v.service_filter(), Some(vec!["s1".into(), "s2".into()]));
    }

    #[test]
    fn none_members_see_only_general_tickets() {
        let v = selected(&[]);
        assert!(v.sees(None));
        assert!(!v.sees(Some("s1")));
    }

    #[test]
    fn non_members_see_nothing() {
        assert!(!Visibility::Nothing.sees(None));
        assert!(!Visibility::Nothing.sees(Some("s1")));
    }
}
