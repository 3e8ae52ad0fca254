//! Login benchmark (filled in later).

fn main() {}
