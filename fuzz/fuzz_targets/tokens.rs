//! API-token and refresh-token strings: identity's offline shape and
//! checksum check, and the stored hash a refresh token is looked up by.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_runtime::secret::SecretToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if tenancy_identity::fuzzing::api_token_well_formed(text) {
        // The one shape identity issues: `tny_`, 43 + 6 base62 characters.
        assert!(text.starts_with("tny_"));
        assert_eq!(text.len(), 4 + 43 + 6);
        assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    // RefreshSession looks the trimmed token up by its hash.
    let hash = SecretToken::from_client(text.trim().to_owned()).hash();
    assert_eq!(hash.len(), 64);
});
