//! Account's requests: any bytes decoded as each request message, then
//! the field checks the service applies at its edge (`domain::validate`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_account::domain::validate;
use tenancy_fuzz::{decode_one_of, id, page};
use tenancy_proto::account as pb;

fn account(a: &pb::Account) {
    let _ = validate::text(&a.name, 1, 100);
    let _ = validate::text(&a.legal_name, 0, 200);
    let _ = validate::country_code(&a.country_code);
    let _ = validate::vat_number(&a.vat_number);
    let _ = validate::text(&a.registration_number, 0, 64);
    if let Some(address) = &a.address {
        for line in &address.lines {
            let _ = validate::text(line, 1, 200);
        }
        let _ = validate::text(&address.city, 1, 100);
        let _ = validate::text(&address.postal_code, 0, 20);
        let _ = validate::text(&address.region, 0, 100);
        let _ = validate::country_code(&address.country_code);
    }
}

fn service(s: &pb::Service) {
    let _ = validate::kind(&s.kind);
    let _ = validate::text(&s.name, 1, 200);
    for tag in &s.tags {
        let _ = validate::tag(tag);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = tenancy_fuzz::selector(data) else {
        return;
    };
    decode_one_of!(which, bytes, {
        pb::CreateAccountRequest => |r: &pb::CreateAccountRequest| {
            if let Some(a) = &r.account {
                account(a);
            }
        },
        pb::UpdateAccountRequest => |r: &pb::UpdateAccountRequest| {
            if let Some(a) = &r.account {
                account(a);
                id("account.id", &a.id);
            }
        },
        pb::UpdateSecuritySettingsRequest => |r: &pb::UpdateSecuritySettingsRequest| {
            if let Some(s) = &r.settings
                && s.ip_allowlist.len() <= validate::MAX_ALLOWLIST
                && let Ok(nets) = validate::allowlist(&s.ip_allowlist)
            {
                assert!(nets.len() <= s.ip_allowlist.len());
            }
        },
        pb::InviteMemberRequest => |r: &pb::InviteMemberRequest| {
            let _ = validate::email(&r.email);
        },
        pb::AddMemberRequest => |r: &pb::AddMemberRequest| {
            let _ = validate::email(&r.email);
            let _ = validate::text(&r.name, 0, 200);
        },
        pb::RegisterServiceRequest => |r: &pb::RegisterServiceRequest| {
            if let Some(s) = &r.service {
                service(s);
            }
        },
        pb::UpdateServiceRequest => |r: &pb::UpdateServiceRequest| {
            if let Some(s) = &r.service {
                service(s);
            }
        },
        pb::ListMembersRequest => |r: &pb::ListMembersRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListMyAccountsRequest => |r: &pb::ListMyAccountsRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListInvitationsRequest => |r: &pb::ListInvitationsRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListServicesRequest => |r: &pb::ListServicesRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListAuditEventsRequest => |r: &pb::ListAuditEventsRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::AcceptInvitationRequest => |_: &pb::AcceptInvitationRequest| {},
        pb::ChangeMemberRoleRequest => |r: &pb::ChangeMemberRoleRequest| {
            id("user_id", &r.user_id);
        },
        pb::SetMemberAccessRequest => |r: &pb::SetMemberAccessRequest| {
            id("user_id", &r.user_id);
        },
        pb::GrantSupportAccessRequest => |r: &pb::GrantSupportAccessRequest| {
            let _ = validate::text(&r.note, 0, 500);
        },
        pb::CheckAccessRequest => |_: &pb::CheckAccessRequest| {},
        pb::BatchCheckAccessRequest => |_: &pb::BatchCheckAccessRequest| {},
        pb::RecordAuditEventRequest => |_: &pb::RecordAuditEventRequest| {},
    });
});
