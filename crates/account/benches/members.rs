//! ListMembers and CheckAccess benchmark (filled in later).

fn main() {}
