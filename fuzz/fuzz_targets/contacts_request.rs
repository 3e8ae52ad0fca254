//! Contacts' requests: any bytes decoded as each request message, then
//! the field checks the service applies at its edge.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tenancy_contacts::domain::{contact, email, templates};
use tenancy_fuzz::{decode_one_of, id, page};
use tenancy_proto::contacts as pb;

fn contact_fields(c: &pb::Contact) {
    let _ = contact::validate_name(c.name.trim());
    let _ = contact::validate_email(c.email.trim());
    let _ = email::normalize(&c.email);
    let _ = contact::validate_phone(&c.phone);
    let _ = contact::validate_notes(&c.notes);
    if let Ok(roles) = contact::parse_roles(&c.roles) {
        assert!(roles.len() <= c.roles.len());
    }
}

fn template_data(template: i32, data: &std::collections::HashMap<String, String>) {
    if let Some(template) = templates::Template::from_i32(template) {
        let data: BTreeMap<String, String> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let _ = templates::check_data(template, &data);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = tenancy_fuzz::selector(data) else {
        return;
    };
    decode_one_of!(which, bytes, {
        pb::CreateContactRequest => |r: &pb::CreateContactRequest| {
            if let Some(c) = &r.contact {
                contact_fields(c);
            }
        },
        pb::UpdateContactRequest => |r: &pb::UpdateContactRequest| {
            if let Some(c) = &r.contact {
                contact_fields(c);
                id("contact.id", &c.id);
            }
        },
        pb::ListContactsRequest => |r: &pb::ListContactsRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::SendEmailRequest => |r: &pb::SendEmailRequest| {
            for to in &r.to {
                let _ = email::validate(&to.email);
            }
            template_data(r.template, &r.template_data);
        },
        pb::NotifyRequest => |r: &pb::NotifyRequest| {
            template_data(r.template, &r.template_data);
            let _ = contact::parse_roles(&r.contact_roles);
        },
        pb::ListOutboxMessagesRequest => |r: &pb::ListOutboxMessagesRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::VerifyContactEmailRequest => |_: &pb::VerifyContactEmailRequest| {},
        pb::UpdateNotificationPreferencesRequest => |_: &pb::UpdateNotificationPreferencesRequest| {},
        pb::ResolveRecipientsRequest => |_: &pb::ResolveRecipientsRequest| {},
    });
});
