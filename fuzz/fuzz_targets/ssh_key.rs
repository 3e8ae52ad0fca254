//! SSH public keys as AddSshKey checks them; an accepted key's normalised
//! line parses again to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_identity::fuzzing::parse_ssh_public_key;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_ssh_public_key(text) {
        Ok((line, fingerprint)) => {
            assert!(!line.contains('\n'));
            let again = parse_ssh_public_key(&line);
            assert!(again.is_ok(), "normalised line refused: {line:?}");
            assert_eq!(again.ok().map(|(_, f)| f), Some(fingerprint));
        }
        Err(error) => tenancy_fuzz::assert_client_error(&error),
    }
});
