//! Page tokens: any string as the `page_token` of a list, decoded to the
//! shapes the services' cursors have; a token that decodes encodes back
//! to one that decodes to the same cursor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use tenancy_runtime::ids::{decode_page_token, decode_page_token_for, encode_page_token};

/// The shape of most cursors: the filter hash and the last row's keys.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    f: String,
    t: i64,
    id: String,
    #[serde(default)]
    o: Option<u8>,
}

fn round_trip<C>(token: &str)
where
    C: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    match decode_page_token::<C>(token) {
        Ok(Some(cursor)) => {
            let again = decode_page_token::<C>(&encode_page_token(&cursor));
            assert_eq!(again.ok().flatten().as_ref(), Some(&cursor));
        }
        Ok(None) => assert!(token.is_empty()),
        Err(error) => tenancy_fuzz::assert_client_error(&error),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<Cursor>(token);
    round_trip::<(String, i64)>(token);
    round_trip::<(i64, String, String)>(token);
    if let Err(error) = decode_page_token::<serde_json::Value>(token) {
        tenancy_fuzz::assert_client_error(&error);
    }
    // A token of another list is refused, never honoured.
    if let Err(error) = decode_page_token_for::<Cursor>(token, |c| c.f == "this list") {
        tenancy_fuzz::assert_client_error(&error);
    }
});
