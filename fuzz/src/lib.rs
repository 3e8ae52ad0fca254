//! What the fuzz targets share: fixed keys (so a target can sign what the
//! fuzzer wrote and reach the parsers behind a signature check) and the
//! checks every target applies to a refusal.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use tenancy_runtime::Error;

/// The `kid` of the one JWT signing key the targets' verifier knows.
pub const JWT_KID: &str = "fuzz-key";
/// The issuer and audience the targets' verifier expects.
pub const JWT_ISSUER: &str = "tenancy";
/// The audience the targets' verifier expects.
pub const JWT_AUDIENCE: &str = "tenancy-portal";
/// The principal key of the targets (32 bytes, as the services require).
pub const PRINCIPAL_KEY: [u8; 32] = [0x42; 32];

/// The fixed Ed25519 key the targets sign JWTs with.
pub fn jwt_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// The verifier of the gateway, knowing [`jwt_signing_key`] as [`JWT_KID`].
pub fn jwt_verifier() -> tenancy_gateway::jwt::JwtVerifier {
    let verifier = tenancy_gateway::jwt::JwtVerifier::new(JWT_ISSUER, JWT_AUDIENCE);
    let x = URL_SAFE_NO_PAD.encode(jwt_signing_key().verifying_key().to_bytes());
    verifier.set_keys([(JWT_KID, x.as_str())]);
    verifier
}

/// A compact JWS over `header` and `payload` (both raw bytes, base64url
/// encoded here), signed with [`jwt_signing_key`]: what an attacker who
/// stole a signing key, or identity with a bug, could present.
pub fn sign_jwt(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jwt_signing_key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The JOSE header identity puts on its tokens.
pub fn jwt_header() -> Vec<u8> {
    format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{JWT_KID}"}}"#).into_bytes()
}

/// A client mistake is refused with a client error: never INTERNAL or
/// UNKNOWN (BRIEF: "never INTERNAL for client mistakes").
pub fn assert_client_error(error: &Error) {
    let code = error.code();
    assert!(
        !matches!(
            code,
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Ok
        ),
        "a parser refused input with {code:?}: {error}"
    );
}

/// Splits fuzzer input into a selector byte and the rest.
pub fn selector(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(first, rest)| (*first, rest))
}

/// Splits `data` at the first `\n` into two parts (the second empty if
/// there is none).
pub fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Decodes `bytes` as the `index`-th (modulo their number) of the message
/// types listed, as tonic's codec does for a request, checks the decoded
/// message encodes and decodes back to itself, and passes it to `$check`
/// (a closure per type, `|message: &Type| ...`).
#[macro_export]
macro_rules! decode_one_of {
    ($index:expr, $bytes:expr, { $($ty:ty => $check:expr),+ $(,)? }) => {{
        let types: usize = [$(stringify!($ty)),+].len();
        let mut at = usize::from($index) % types;
        $(
            if at == 0 {
                if let Ok(message) = <$ty as prost::Message>::decode($bytes) {
                    let again = <$ty as prost::Message>::decode(
                        prost::Message::encode_to_vec(&message).as_slice(),
                    );
                    assert_eq!(again.as_ref().ok(), Some(&message), "re-encoding changed it");
                    let check: &dyn Fn(&$ty) = &$check;
                    check(&message);
                }
            }
            at = at.wrapping_sub(1);
        )+
        let _ = at;
    }};
}

/// Checks a validator's answer: an `Err` is a client error.
pub fn refused<T>(result: Result<T, Error>) {
    if let Err(error) = result {
        assert_client_error(&error);
    }
}

/// A page size and token as every list method reads them.
pub fn page(page_size: i32, page_token: &str) {
    refused(tenancy_runtime::ids::page_size(page_size));
    refused(tenancy_runtime::ids::decode_page_token::<serde_json::Value>(page_token));
}

/// An id field, parsed as the services parse ids at the edge.
pub fn id(field: &str, value: &str) {
    if !value.is_empty() {
        refused(tenancy_runtime::ids::parse_id(field, value));
    }
}
