//! The ids of the live state: users, accounts, sessions and API tokens,
//! kept as 16-byte UUIDs. Its own module so `jwt`, `state` and `policy`
//! all use it without depending on each other for it.

/// An id in the live state. Every id our services issue (users, accounts,
/// sessions, API tokens) is a UUID; kept as its 16 bytes, a lookup hashes
/// and compares integers instead of following a pointer to a string.
pub type Id = uuid::Uuid;

/// Parses an id in the form the services issue it (hyphenated UUID);
/// `None` for anything else.
pub fn parse_id(text: &str) -> Option<Id> {
    if text.len() != 36 {
        return None;
    }
    Id::try_parse(text).ok()
}

/// The form the services issue an id in (lowercase hyphenated UUID).
pub fn id_string(id: Id) -> String {
    let mut buffer = Id::encode_buffer();
    (*id.hyphenated().encode_lower(&mut buffer)).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_the_issued_form_and_print_back_the_same() {
        let text = "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9d";
        assert_eq!(id_string(parse_id(text).unwrap()), text);
        assert_eq!(parse_id("0195f3a27c1e7d3a9b2c4e5f6a7b8c9d"), None);
        assert_eq!(parse_id("u1"), None);
        assert_eq!(parse_id(""), None);
    }
}
