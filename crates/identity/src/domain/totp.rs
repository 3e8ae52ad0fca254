//! TOTP (RFC 6238): SHA-1, 6 digits, 30 s steps, ±1 step of skew, and the
//! encryption of secrets at rest (XChaCha20-Poly1305, `runtime::secret`).

use rand::RngCore as _;
use subtle::ConstantTimeEq as _;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per step.
pub(crate) const PERIOD: u64 = 30;
/// Digits per code.
pub(crate) const DIGITS: u8 = 6;
/// Issuer shown by authenticator apps.
pub(crate) const ISSUER: &str = "Tenancy";

/// A fresh 160-bit secret.
pub(crate) fn generate_secret() -> Vec<u8> {
    let mut bytes = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn totp(secret: &[u8], digits: u8, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(PERIOD)
        .with_skew(1)
        .with_secret(Secret::from(secret.to_vec()))
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .ok()
}

/// The code for `secret` at Unix time `seconds`.
pub(crate) fn code_at(secret: &[u8], seconds: u64) -> String {
    totp(secret, DIGITS, "x")
        .map(|t| t.generate(seconds).to_string())
        .unwrap_or_default()
}

/// The step (`seconds / 30`) whose code matches, checking the current step
/// and one either side; `None` when none matches.
pub(crate) fn matching_step(secret: &[u8], code: &str, seconds: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = seconds / PERIOD;
    let mut found = None;
    for candidate in [step.saturating_sub(1), step, step + 1] {
        let expected = code_at(secret, candidate * PERIOD);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
            found = i64::try_from(candidate).ok();
        }
    }
    found
}

/// Base32 (no padding), the otpauth URI and a QR code PNG of the URI.
pub(crate) fn enrollment(
    secret: &[u8],
    account: &str,
) -> Result<(String, String, Vec<u8>), String> {
    let t = totp(secret, DIGITS, account).ok_or("invalid TOTP parameters")?;
    let uri = t.to_url().map_err(|e| e.to_string())?;
    let png = t.to_qr_png().map_err(|e| e.to_string())?;
    let b32 = Secret::from(secret.to_vec()).to_base32();
    Ok((b32.trim_end_matches('=').to_owned(), uri, png))
}

pub(crate) use tenancy_runtime::secret::SecretBox;

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits, the 20-byte ASCII seed).
    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let seed = b"12345678901234567890";
        let cases = [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let t = totp(seed, 8, "x").unwrap();
        for (time, expected) in cases {
            assert_eq!(t.generate(time).to_string(), expected, "T={time}");
            // Our 6-digit codes are the last six digits of the same HOTP value.
            assert_eq!(code_at(seed, time), expected[2..], "T={time}");
        }
    }

    #[test]
    fn codes_match_within_one_step_of_skew_only() {
        let secret = generate_secret();
        let now = 1_700_000_000u64;
        let step = i64::try_from(now / PERIOD).unwrap();
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now), now),
            Some(step)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now + 30), now),
            Some(step + 1)
        );
        let old = code_at(&secret, now - 90);
        if old != code_at(&secret, now)
            && old != code_at(&secret, now - 30)
            && old != code_at(&secret, now + 30)
        {
            assert_eq!(matching_step(&secret, &old, now), None);
        }
        assert_eq!(matching_step(&secret, "12a456", now), None);
    }

    #[test]
    fn enrollment_gives_uri_and_png() {
        let (b32, uri, png) = enrollment(&generate_secret(), "alice@example.com").unwrap();
        assert_eq!(b32.len(), 32);
        assert!(
            uri.starts_with("otpauth://totp/Tenancy:alice%40example.com?"),
            "{uri}"
        );
        assert!(png.starts_with(b"\x89PNG"));
    }
}

/// Properties of TOTP acceptance over random secrets and times: a code is
/// accepted only for a step within one of now and only for the step it
/// was generated for, and acceptance is monotonic in time: a code's
/// window is one interval that, once passed, never opens again.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Times from 2001 to 2100, as step numbers.
    fn step() -> impl Strategy<Value = u64> {
        (1_000_000_000u64 / PERIOD)..(4_102_444_800 / PERIOD)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn codes_are_accepted_within_one_step_and_for_their_own_step(
            secret in prop::collection::vec(any::<u8>(), 20),
            now in step(),
            within in 0..PERIOD,
            offset in -4i64..=4,
        ) {
            let seconds = now * PERIOD + within;
            let generated = now.saturating_add_signed(offset);
            let code = code_at(&secret, generated * PERIOD);
            match matching_step(&secret, &code, seconds) {
                Some(step) => {
                    let step = u64::try_from(step).unwrap();
                    prop_assert!(step.abs_diff(now) <= 1, "step {step} accepted at {now}");
                    prop_assert_eq!(code_at(&secret, step * PERIOD), code);
                }
                None => prop_assert!(offset.abs() > 1, "a code within one step refused"),
            }
        }

        #[test]
        fn acceptance_is_monotonic_in_time(
            secret in prop::collection::vec(any::<u8>(), 20),
            generated in step(),
            times in prop::collection::vec(-6i64..=6, 2..12),
        ) {
            let code = code_at(&secret, generated * PERIOD);
            // Codes of the steps around it that happen to be equal (one in
            // 10^6) would make it acceptable again; such secrets prove
            // nothing here.
            let unique = (generated - 8..=generated + 8)
                .filter(|s| *s != generated)
                .all(|s| code_at(&secret, s * PERIOD) != code);
            prop_assume!(unique);
            let mut times: Vec<u64> = times.iter().map(|d| generated.saturating_add_signed(*d)).collect();
            times.sort_unstable();
            let mut was_accepted = false;
            let mut closed = false;
            for now in times {
                let accepted = matching_step(&secret, &code, now * PERIOD + 1);
                if let Some(step) = accepted {
                    prop_assert!(!closed, "accepted again at step {now} after its window closed");
                    prop_assert_eq!(u64::try_from(step).unwrap(), generated);
                    was_accepted = true;
                } else if was_accepted {
                    closed = true;
                }
            }
        }
    }
}
