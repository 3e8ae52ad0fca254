//! Identity's requests: any bytes decoded as each request message, then
//! the field checks the service applies at its edge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_fuzz::{decode_one_of, id, page, refused};
use tenancy_identity::fuzzing as identity;
use tenancy_proto::identity as pb;

fn email_local(email: &str) -> Option<String> {
    identity::parse_email(email)
        .ok()
        .and_then(|e| e.split('@').next().map(str::to_lowercase))
}

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = tenancy_fuzz::selector(data) else {
        return;
    };
    decode_one_of!(which, bytes, {
        pb::SignUpRequest => |r: &pb::SignUpRequest| {
            refused(identity::parse_email(&r.email));
            refused(identity::parse_name(&r.name, 1));
            refused(identity::check_new_password(&r.password, email_local(&r.email).as_deref()));
        },
        pb::LoginRequest => |r: &pb::LoginRequest| {
            refused(identity::parse_email(&r.email));
            id("account_id", &r.account_id);
        },
        pb::RequestPasswordResetRequest => |r: &pb::RequestPasswordResetRequest| {
            refused(identity::parse_email(&r.email));
        },
        pb::ResetPasswordRequest => |r: &pb::ResetPasswordRequest| {
            refused(identity::check_new_password(&r.new_password, None));
        },
        pb::ChangePasswordRequest => |r: &pb::ChangePasswordRequest| {
            refused(identity::check_new_password(&r.new_password, None));
        },
        pb::SetCodeWordRequest => |r: &pb::SetCodeWordRequest| {
            let _ = identity::normalise_code_word(&r.code_word);
        },
        pb::VerifyCodeWordRequest => |r: &pb::VerifyCodeWordRequest| {
            id("user_id", &r.user_id);
            id("account_id", &r.account_id);
            let _ = identity::normalise_code_word(&r.code_word);
        },
        pb::CreateApiTokenRequest => |r: &pb::CreateApiTokenRequest| {
            refused(identity::parse_label(&r.name));
        },
        pb::AddSshKeyRequest => |r: &pb::AddSshKeyRequest| {
            refused(identity::parse_label(&r.name));
            refused(identity::parse_ssh_public_key(&r.public_key));
        },
        pb::ConfirmTotpEnrollmentRequest => |r: &pb::ConfirmTotpEnrollmentRequest| {
            let _ = identity::totp_matching_step(b"12345678901234567890", &r.totp_code, 1_800_000_000);
        },
        pb::CompleteMfaRequest => |r: &pb::CompleteMfaRequest| {
            if let Some(pb::complete_mfa_request::SecondFactor::TotpCode(code)) = &r.second_factor {
                let _ = identity::totp_matching_step(b"12345678901234567890", code, 1_800_000_000);
            }
        },
        pb::RefreshSessionRequest => |_: &pb::RefreshSessionRequest| {},
        pb::IntrospectApiTokenRequest => |r: &pb::IntrospectApiTokenRequest| {
            let _ = identity::api_token_well_formed(&r.secret);
        },
        pb::ListLoginEventsRequest => |r: &pb::ListLoginEventsRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListSessionsRequest => |_: &pb::ListSessionsRequest| {},
        pb::ListApiTokensRequest => |r: &pb::ListApiTokensRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListSshKeysRequest => |r: &pb::ListSshKeysRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::UpdateMeRequest => |r: &pb::UpdateMeRequest| {
            if let Some(user) = &r.user {
                refused(identity::parse_name(&user.name, 1));
            }
        },
        pb::SwitchAccountRequest => |r: &pb::SwitchAccountRequest| {
            id("account_id", &r.account_id);
        },
        pb::RevokeSessionRequest => |r: &pb::RevokeSessionRequest| {
            id("session_id", &r.session_id);
        },
        pb::EnsureUserRequest => |r: &pb::EnsureUserRequest| {
            refused(identity::parse_email(&r.email));
        },
        pb::BatchGetUsersRequest => |r: &pb::BatchGetUsersRequest| {
            for user in &r.user_ids {
                id("user_ids", user);
            }
        },
    });
});
