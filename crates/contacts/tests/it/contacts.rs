//! Contacts: CRUD, the primary-contact rule, verification by emailed link,
//! and refusals.

use prost_types::FieldMask;
use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{ContactRole, MessageTemplate};
use tenancy_runtime::Reason;
use tenancy_testkit::Role;

use crate::support::{Env, Internal, Public, fields, id, reason};

fn new_contact(name: &str, email: &str, roles: &[ContactRole]) -> pb::CreateContactRequest {
    pb::CreateContactRequest {
        contact: Some(pb::Contact {
            name: name.into(),
            email: email.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn create(api: &Public, name: &str, email: &str, roles: &[ContactRole]) -> pb::Contact {
    api.clone()
        .create_contact(new_contact(name, email, roles))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap()
}

/// The token from the latest verification link sent to `email`.
pub async fn verification_token(internal: &Internal, email: &str) -> String {
    let list = internal
        .clone()
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            to_email: email.into(),
            template: MessageTemplate::ContactVerification as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let url = &list.messages[0].template_data["verify_url"];
    url.split("token=").nth(1).unwrap().to_owned()
}

pub async fn verify(env: &Env, email: &str) {
    let internal = env.internal().await;
    let token = verification_token(&internal, email).await;
    env.anonymous()
        .await
        .verify_contact_email(pb::VerifyContactEmailRequest { token })
        .await
        .unwrap();
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn the_first_contact_becomes_primary_and_gets_a_verification_link() {
    let env = Env::start("contact_create").await;
    let account = id();
    let api = env.member(&id(), &account, Role::Manager).await;
    let c = create(
        &api,
        "Pat Primary",
        " Pat@Example.com ",
        &[ContactRole::Billing],
    )
    .await;
    assert_eq!(c.email, "Pat@Example.com");
    assert_eq!(c.account_id, account);
    assert!(!c.email_verified);
    assert!(c.verification_send_time.is_some());
    assert_eq!(
        c.roles,
        [ContactRole::Primary as i32, ContactRole::Billing as i32]
    );
    let second = create(&api, "Sam Second", "sam@example.com", &[]).await;
    assert!(second.roles.is_empty());
    let token = verification_token(&env.internal().await, "pat@example.com").await;
    assert!(!token.is_empty());
}

#[tokio::test]
async fn invalid_contacts_are_refused_with_every_field() {
    let env = Env::start("contact_invalid").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let mut request = new_contact("", "nope", &[ContactRole::Unspecified]);
    let c = request.contact.as_mut().unwrap();
    c.phone = "+1 415 555 0100".into();
    c.notes = "n".repeat(2001);
    let error = api.clone().create_contact(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        fields(&error),
        [
            "contact.name",
            "contact.email",
            "contact.phone",
            "contact.notes",
            "contact.roles"
        ]
    );
}

#[tokio::test]
async fn names_with_bidi_controls_and_ip_literal_emails_are_refused() {
    let env = Env::start("contact_spoof").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    // A name that would render as "Billing Team (moc.elpmaxe)" reversed.
    for name in ["Billing \u{202E}Team", "A\u{2066}B\u{2069}", "Mark\u{200F}"] {
        let error = api
            .clone()
            .create_contact(new_contact(name, "ok@example.com", &[]))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{name:?}");
        assert_eq!(fields(&error), ["contact.name"], "{name:?}");
    }
    for email in [
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
        "a@127.0.0.1",
        "\"a b\"@example.com",
        "a@localhost",
    ] {
        let error = api
            .clone()
            .create_contact(new_contact("Pat", email, &[]))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{email:?}");
        assert_eq!(fields(&error), ["contact.email"], "{email:?}");
    }
    // Nor through an update.
    let c = create(&api, "Pat", "pat@example.com", &[]).await;
    let error = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: c.id.clone(),
                name: "Pat\u{202E}".into(),
                email: "pat@[10.0.0.1]".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "email"]),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&error), ["contact.name", "contact.email"]);
}

#[tokio::test]
async fn a_duplicate_email_in_the_same_account_is_refused_but_not_across_accounts() {
    let env = Env::start("contact_dup").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    create(&api, "A", "same@example.com", &[]).await;
    let error = api
        .clone()
        .create_contact(new_contact("B", "SAME@example.com", &[]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::AlreadyExists);
    assert_eq!(reason(&error), Reason::ContactEmailTaken);
    let other = env.member(&id(), &id(), Role::Manager).await;
    create(&other, "C", "same@example.com", &[]).await;
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_returns_the_first_contact() {
    let env = Env::start("contact_request_id").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let mut request = new_contact("A", "a@example.com", &[]);
    request.request_id = id();
    let first = api
        .clone()
        .create_contact(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = api
        .clone()
        .create_contact(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.contact.unwrap().id, again.contact.unwrap().id);
}

#[tokio::test]
async fn primary_is_not_granted_by_create_or_update_and_cannot_be_removed() {
    let env = Env::start("contact_primary_rules").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let primary = create(&api, "P", "p@example.com", &[]).await;
    let error = api
        .clone()
        .create_contact(new_contact("Q", "q@example.com", &[ContactRole::Primary]))
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::PrimaryChangeRequiresSetPrimary);
    let other = create(&api, "O", "o@example.com", &[]).await;
    let error = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: other.id.clone(),
                roles: vec![ContactRole::Primary as i32],
                ..Default::default()
            }),
            update_mask: mask(&["roles"]),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::PrimaryChangeRequiresSetPrimary);
    let error = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: primary.id.clone(),
                roles: vec![ContactRole::Billing as i32],
                ..Default::default()
            }),
            update_mask: mask(&["roles"]),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::PrimaryContactRequired);
    let error = api
        .clone()
        .delete_contact(pb::DeleteContactRequest {
            id: primary.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&error), Reason::PrimaryContactRequired);
    // Once alone, the primary may go.
    api.clone()
        .delete_contact(pb::DeleteContactRequest { id: other.id })
        .await
        .unwrap();
    api.clone()
        .delete_contact(pb::DeleteContactRequest { id: primary.id })
        .await
        .unwrap();
}

#[tokio::test]
async fn set_primary_moves_the_role_atomically_and_needs_a_verified_email() {
    let env = Env::start("contact_set_primary").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let first = create(&api, "P", "p@example.com", &[ContactRole::Billing]).await;
    let second = create(&api, "S", "s@example.com", &[ContactRole::Technical]).await;
    let error = api
        .clone()
        .set_primary_contact(pb::SetPrimaryContactRequest {
            contact_id: second.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::ContactEmailUnverified);
    verify(&env, "s@example.com").await;
    let moved = api
        .clone()
        .set_primary_contact(pb::SetPrimaryContactRequest {
            contact_id: second.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        moved.contact.unwrap().roles,
        [ContactRole::Primary as i32, ContactRole::Technical as i32]
    );
    let previous = moved.previous_primary.unwrap();
    assert_eq!(previous.id, first.id);
    assert_eq!(previous.roles, [ContactRole::Billing as i32]);
    let primaries = api
        .clone()
        .list_contacts(pb::ListContactsRequest {
            role: ContactRole::Primary as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primaries.total_size, 1);
    // Idempotent.
    let again = api
        .clone()
        .set_primary_contact(pb::SetPrimaryContactRequest {
            contact_id: second.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.previous_primary.is_none());
}

#[tokio::test]
async fn contacts_of_another_account_are_not_found() {
    let env = Env::start("contact_isolation").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let c = create(&api, "P", "p@example.com", &[]).await;
    let stranger = env.member(&id(), &id(), Role::Owner).await;
    let error = stranger
        .clone()
        .get_contact(pb::GetContactRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert_eq!(reason(&error), Reason::ContactNotFound);
    let error = stranger
        .clone()
        .delete_contact(pb::DeleteContactRequest { id: c.id })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::ContactNotFound);
}

#[tokio::test]
async fn update_applies_only_the_masked_fields_and_a_new_email_needs_verifying_again() {
    let env = Env::start("contact_update").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let c = create(&api, "Old Name", "old@example.com", &[]).await;
    verify(&env, "old@example.com").await;
    let updated = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: c.id.clone(),
                name: "New Name".into(),
                phone: "+14155550100".into(),
                notes: "ignored: not in mask".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "phone"]),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(updated.name, "New Name");
    assert_eq!(updated.phone, "+14155550100");
    assert_eq!(updated.notes, "");
    assert!(updated.email_verified);
    let internal = env.internal().await;
    let old_token = verification_token(&internal, "old@example.com").await;
    let changed = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: c.id.clone(),
                email: "new@example.com".into(),
                ..Default::default()
            }),
            update_mask: mask(&["email"]),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert!(!changed.email_verified);
    // The old link no longer works.
    let error = env
        .anonymous()
        .await
        .verify_contact_email(pb::VerifyContactEmailRequest { token: old_token })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::VerificationTokenInvalid);
    verify(&env, "new@example.com").await;
    for (m, expected) in [
        (None, Reason::UpdateMaskInvalid),
        (mask(&["email_verified"]), Reason::UpdateMaskInvalid),
    ] {
        let error = api
            .clone()
            .update_contact(pb::UpdateContactRequest {
                contact: Some(pb::Contact {
                    id: c.id.clone(),
                    ..Default::default()
                }),
                update_mask: m,
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&error), expected);
    }
    let error = api
        .clone()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(pb::Contact {
                id: c.id,
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&error), ["contact.name"]);
}

#[tokio::test]
async fn verification_links_verify_once_expire_and_resends_are_limited() {
    let env = Env::start("contact_verify").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let c = create(&api, "P", "p@example.com", &[]).await;
    let internal = env.internal().await;
    let first_token = verification_token(&internal, "p@example.com").await;
    let error = api
        .clone()
        .resend_contact_verification(pb::ResendContactVerificationRequest {
            contact_id: c.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&error), Reason::VerificationResendTooSoon);
    env.clock.advance(std::time::Duration::from_secs(61));
    api.clone()
        .resend_contact_verification(pb::ResendContactVerificationRequest {
            contact_id: c.id.clone(),
        })
        .await
        .unwrap();
    // The earlier link is superseded.
    let anonymous = env.anonymous().await;
    let error = anonymous
        .clone()
        .verify_contact_email(pb::VerifyContactEmailRequest { token: first_token })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let token = verification_token(&internal, "p@example.com").await;
    // Expired after 7 days.
    env.clock
        .advance(std::time::Duration::from_secs(7 * 24 * 3600));
    let error = anonymous
        .clone()
        .verify_contact_email(pb::VerifyContactEmailRequest { token })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::VerificationTokenExpired);
    api.clone()
        .resend_contact_verification(pb::ResendContactVerificationRequest {
            contact_id: c.id.clone(),
        })
        .await
        .unwrap();
    let token = verification_token(&internal, "p@example.com").await;
    let ok = anonymous
        .clone()
        .verify_contact_email(pb::VerifyContactEmailRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.email, "p@example.com");
    assert!(!ok.already_verified);
    let again = anonymous
        .clone()
        .verify_contact_email(pb::VerifyContactEmailRequest { token })
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_verified);
    let error = api
        .clone()
        .resend_contact_verification(pb::ResendContactVerificationRequest { contact_id: c.id })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::ContactEmailAlreadyVerified);
}

#[tokio::test]
async fn contacts_list_primary_first_filtered_by_role_and_paged() {
    let env = Env::start("contact_list").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    create(&api, "P", "p@example.com", &[]).await;
    for i in 0..4 {
        env.clock.advance(std::time::Duration::from_millis(5));
        let roles: &[ContactRole] = if i % 2 == 0 {
            &[ContactRole::Billing]
        } else {
            &[]
        };
        create(&api, &format!("C{i}"), &format!("c{i}@example.com"), roles).await;
    }
    let page = api
        .clone()
        .list_contacts(pb::ListContactsRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = page.contacts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["P", "C0", "C1"]);
    assert_eq!(page.total_size, 5);
    let rest = api
        .clone()
        .list_contacts(pb::ListContactsRequest {
            page_size: 3,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = rest.contacts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["C2", "C3"]);
    assert!(rest.next_page_token.is_empty());
    let billing = api
        .clone()
        .list_contacts(pb::ListContactsRequest {
            role: ContactRole::Billing as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(billing.total_size, 2);
    let error = api
        .clone()
        .list_contacts(pb::ListContactsRequest {
            role: ContactRole::Billing as i32,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::PageTokenInvalid);
}
