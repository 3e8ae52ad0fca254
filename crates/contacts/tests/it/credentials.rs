//! Server root-password delivery (issue 17 §2) with the real identity and
//! account services: DeliverServerCredentials by email and SMS, the sealed
//! and erased secret, the phone numbers SMS go to, and the refusals.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tenancy_proto::account::{self as apb, ServerCredentialDelivery as Method};
use tenancy_proto::contacts::{self as pb, ContactRole, MessageTemplate, OutboxMessageState};
use tenancy_proto::identity::{self as ipb, identity_service_client::IdentityServiceClient};
use tenancy_runtime::Reason;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::tls::Caller as Part;

use tenancy_testkit::{Reply, Role, SmsServer, TestDatabase};
use tonic::Code;

use crate::support::{eventually, reason, smtp_server};
use crate::world::World;

/// Every log line the process writes from the first test here on (the
/// services run in this process), at every level.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A password no other test uses.
fn secret() -> String {
    format!("Root-{}!x", uuid::Uuid::new_v4().simple())
}

async fn world_with(label: &str, sms: &SmsServer, smtp_url: Option<String>) -> World {
    let sms_url = sms.url();
    World::start_with(label, "olga@example.com", move |c| {
        c.sms.url = Some(sms_url);
        c.sms.authorization = Some("Bearer sms-test-key".into());
        c.smtp_url = smtp_url;
    })
    .await
}

/// IdentityService as `user` in the account, freshly authenticated.
fn identity_as(world: &World, user: &str) -> IdentityServiceClient<tenancy_testkit::Signed> {
    IdentityServiceClient::with_interceptor(
        world.identity_channel(),
        world.signed(world.member_principal(user, &world.account_id, Role::Owner)),
    )
}

/// The code in the latest SMS, once `n` SMS were sent.
async fn code_in_sms(sms: &SmsServer, n: usize) -> String {
    let received = sms.wait_for(n).await;
    let body: serde_json::Value = serde_json::from_str(&received[n - 1].body).unwrap();
    let text = body["text"].as_str().unwrap();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// `user` gives and confirms `phone` with the code sent by SMS (the
/// `n`th SMS).
async fn verify_phone(world: &World, sms: &SmsServer, user: &str, phone: &str, n: usize) {
    let mut identity = identity_as(world, user);
    identity
        .start_phone_verification(ipb::StartPhoneVerificationRequest {
            phone: phone.into(),
        })
        .await
        .unwrap();
    let code = code_in_sms(sms, n).await;
    let confirmed = identity
        .confirm_phone(ipb::ConfirmPhoneRequest { code })
        .await
        .unwrap()
        .into_inner();
    assert!(!confirmed.user.unwrap().phone.is_empty());
}

/// A verified PRIMARY contact (the account's first contact is primary).
async fn verified_primary(world: &World, email: &str) {
    world
        .contacts_as(&world.owner, Role::Owner)
        .await
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Pat Primary".into(),
                email: email.into(),
                roles: vec![ContactRole::Technical as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let messages = world
        .outbox_all(email, MessageTemplate::ContactVerification)
        .await;
    let url = &messages[0].template_data["verify_url"];
    let token = url.split("token=").nth(1).unwrap().to_owned();
    world
        .env
        .anonymous()
        .await
        .verify_contact_email(pb::VerifyContactEmailRequest { token })
        .await
        .unwrap();
}

fn deliver(
    key: &str,
    world: &World,
    service: &str,
    user: &str,
    method: Method,
    secret: &str,
) -> pb::DeliverServerCredentialsRequest {
    pb::DeliverServerCredentialsRequest {
        request_id: key.into(),
        account_id: world.account_id.clone(),
        service_id: service.into(),
        user_id: user.into(),
        method: method as i32,
        secret: secret.into(),
    }
}

async fn set_default(world: &World, method: Method) {
    world
        .owner_account(None)
        .update_security_settings(apb::UpdateSecuritySettingsRequest {
            settings: Some(apb::SecuritySettings {
                server_credential_delivery: method as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["server_credential_delivery".into()],
            }),
            force: false,
        })
        .await
        .unwrap();
}

async fn message(world: &World, id: &str) -> pb::OutboxMessage {
    world
        .env
        .internal()
        .await
        .get_outbox_message(pb::GetOutboxMessageRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

async fn reaches(world: &World, id: &str, state: OutboxMessageState) {
    for _ in 0..1500 {
        if message(world, id).await.state == state as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "message {id} never reached {state:?}: {:?}",
        message(world, id).await
    );
}

/// Issue 17 §2, the scan: after a server password went out by email (the
/// account's default) and another by SMS, neither is in any table of the
/// three services' databases (rows, and for SQLite the files' bytes), in
/// any outbox read, or anywhere in the process's whole log; both arrived
/// where they should, and the sealed copies are gone.
#[tokio::test]
async fn server_passwords_go_by_email_and_sms_and_are_kept_nowhere() {
    let log = captured_log();
    let sms = SmsServer::start().await;
    let smtp = smtp_server().await;
    let world = world_with("creds_scan", &sms, Some(smtp.url())).await;
    let owner = world.owner.clone();
    verified_primary(&world, "pat@example.com").await;
    verify_phone(&world, &sms, &owner, "+358 40 123 4567", 1).await;
    let service = world.register_service("web-1").await;
    set_default(&world, Method::Email).await;
    let (by_email, by_sms) = (secret(), secret());

    // The account's default: EMAIL, to the verified PRIMARY contact.
    let emailed = world
        .env
        .internal()
        .await
        .deliver_server_credentials(deliver(
            "prov:1",
            &world,
            &service,
            &owner,
            Method::Unspecified,
            &by_email,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(emailed.method, Method::Email as i32);
    let emailed = emailed.message.unwrap();
    assert!(emailed.carries_secret);
    assert_eq!(emailed.to.as_ref().unwrap().email, "pat@example.com");
    // Overridden at deployment: SMS, to the deploying member's phone.
    let texted = world
        .env
        .internal()
        .await
        .deliver_server_credentials(deliver(
            "prov:2",
            &world,
            &service,
            &owner,
            Method::Sms,
            &by_sms,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(texted.method, Method::Sms as i32);
    let texted = texted.message.unwrap();
    assert_eq!(texted.to_phone, "+358401234567");
    assert_eq!(texted.channel, pb::OutboxChannel::Sms as i32);

    reaches(&world, &emailed.id, OutboxMessageState::Sent).await;
    reaches(&world, &texted.id, OutboxMessageState::Sent).await;
    // Delivered: the mail to Pat holds the password, the SMS to Olga's
    // number the other.
    eventually(30, "the mail", || async { smtp.count() >= 1 }).await;
    let mails = smtp.received();
    let mail = mails
        .iter()
        .find(|m| m.rcpt.iter().any(|t| t == "pat@example.com") && m.text.contains(&by_email))
        .unwrap_or_else(|| panic!("no mail with the password: {mails:?}"));
    assert!(mail.html.contains(&by_email));
    let texts = sms.wait_for(2).await;
    let sent = texts.iter().find(|r| r.body.contains(&by_sms)).unwrap();
    let body: serde_json::Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(body["to"], "+358401234567");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sms-test-key"));
    assert_eq!(sent.content_type.as_deref(), Some("application/json"));
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/messages");

    // Kept nowhere.
    for s in [&by_email, &by_sms] {
        let listed = world
            .env
            .internal()
            .await
            .list_outbox_messages(pb::ListOutboxMessagesRequest {
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{listed:?}").contains(s.as_str()));
        for id in [&emailed.id, &texted.id] {
            assert!(!format!("{:?}", message(&world, id).await).contains(s.as_str()));
        }
        for (name, db) in [
            ("contacts", &world.env.db),
            ("identity", world.peers.database(ServiceName::Identity)),
            ("account", world.peers.database(ServiceName::Account)),
        ] {
            let found = db.find_text(s).await;
            assert!(found.is_empty(), "the password is in {name}: {found:?}");
        }
        let log = String::from_utf8_lossy(&log.lock()).into_owned();
        assert!(!log.is_empty());
        assert!(!log.contains(s.as_str()), "the password is in the log");
    }
    assert_eq!(sealed_rows(&world).await, 0, "sealed copies must be erased");
}

/// The sealed copies in `outbox_secret`, as stored.
async fn sealed_values(world: &World) -> Vec<String> {
    let db = sea_orm::Database::connect(&world.env.db.url).await.unwrap();
    let rows = tenancy_runtime::db::all(&db, "SELECT sealed FROM outbox_secret", vec![])
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.iter()
        .map(|row| tenancy_runtime::db::get(row, "sealed").unwrap())
        .collect()
}

/// SQLite: moves the WAL into the database file and empties it (as a
/// backup tool or the next restart would), retrying while a reader of the
/// services holds an older snapshot.
async fn checkpoint(world: &World) {
    if TestDatabase::is_postgres() {
        return;
    }
    let db = sea_orm::Database::connect(&world.env.db.url).await.unwrap();
    eventually(30, "a complete checkpoint", || async {
        let row = tenancy_runtime::db::one(&db, "PRAGMA wal_checkpoint(TRUNCATE)", vec![])
            .await
            .unwrap()
            .unwrap();
        let busy: i64 = tenancy_runtime::db::get(&row, "busy").unwrap();
        busy == 0
    })
    .await;
    db.close().await.unwrap();
}

/// Issue 17 §2, "erased (not just marked)": after an EMAIL and an SMS
/// delivery (each tried once, failed, and delivered on its retry, so the
/// sealed copies were surely written), neither the passwords nor their
/// sealed copies are anywhere in the database: on SQLite in no byte of the
/// database file or its WAL after a checkpoint (`secure_delete` zeroes a
/// deleted row; without it the sealed copy stays in the page's free
/// space), on PostgreSQL in no row (what a logical backup holds).
#[tokio::test]
async fn erased_secrets_leave_no_bytes_in_the_database_files() {
    let sms = SmsServer::start().await;
    let smtp = smtp_server().await;
    let world = world_with("creds_erased", &sms, Some(smtp.url())).await;
    let owner = world.owner.clone();
    verified_primary(&world, "vault@example.com").await;
    verify_phone(&world, &sms, &owner, "+358 40 765 4321", 1).await;
    let service = world.register_service("db-7").await;
    // The first attempt of each fails (to be retried).
    smtp.on_rcpt(|to| (to == "vault@example.com").then(|| Reply::new(451, "4.3.0 try later")));
    sms.answer_next(&[503]);
    let (by_email, by_sms) = (secret(), secret());
    let mut ids = Vec::new();
    for (key, method, password) in [
        ("e:1", Method::Email, &by_email),
        ("e:2", Method::Sms, &by_sms),
    ] {
        let queued = world
            .env
            .internal()
            .await
            .deliver_server_credentials(deliver(key, &world, &service, &owner, method, password))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        ids.push(queued.id);
    }
    for id in &ids {
        eventually(30, "the first attempt to fail", || async {
            let m = message(&world, id).await;
            m.state == OutboxMessageState::Pending as i32 && m.attempts == 1
        })
        .await;
    }
    let sealed = sealed_values(&world).await;
    assert_eq!(sealed.len(), 2, "kept sealed until delivered");
    checkpoint(&world).await;
    // The scan finds what is there (the check below is not vacuous).
    for s in &sealed {
        assert!(
            !world.env.db.find_text(s).await.is_empty(),
            "{s} not found before erasure"
        );
    }

    smtp.on_rcpt(|_| None);
    world.clock.advance(Duration::from_secs(60));
    for id in &ids {
        reaches(&world, id, OutboxMessageState::Sent).await;
    }
    assert!(
        smtp.received()
            .iter()
            .any(|m| m.text.contains(by_email.as_str()))
    );
    assert!(
        sms.wait_for(3)
            .await
            .iter()
            .any(|r| r.body.contains(by_sms.as_str()))
    );
    assert_eq!(sealed_rows(&world).await, 0);
    checkpoint(&world).await;
    for s in sealed.iter().chain([&by_email, &by_sms]) {
        let found = world.env.db.find_text(s).await;
        assert!(found.is_empty(), "{s} is still in {found:?}");
    }
}

/// DeliverServerCredentials refused: the status.
async fn refused(
    api: &crate::support::Internal,
    request: pb::DeliverServerCredentialsRequest,
) -> tonic::Status {
    api.clone()
        .deliver_server_credentials(request)
        .await
        .unwrap_err()
}

/// The ErrorInfo metadata `method` of a refusal.
fn method_of(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("method").cloned())
}

/// Rows left in `outbox_secret`.
async fn sealed_rows(world: &World) -> i64 {
    let db = sea_orm::Database::connect(&world.env.db.url).await.unwrap();
    let row = tenancy_runtime::db::one(&db, "SELECT COUNT(*) AS n FROM outbox_secret", vec![])
        .await
        .unwrap()
        .unwrap();
    let n: i64 = tenancy_runtime::db::get(&row, "n").unwrap();
    db.close().await.unwrap();
    n
}

/// The refusals provisioning falls back on (show the password once), and
/// the ones that protect the method.
#[tokio::test]
async fn delivery_is_refused_without_a_verified_destination_or_membership() {
    let sms = SmsServer::start().await;
    let mut world = world_with("creds_refused", &sms, None).await;
    let owner = world.owner.clone();
    let service = world.register_service("web-1").await;
    let api = world.env.internal().await;

    // EMAIL without a PRIMARY contact, then with an unverified one.
    let e = refused(
        &api,
        deliver("r:1", &world, &service, &owner, Method::Email, "pw-1"),
    )
    .await;
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(reason(&e), Reason::CredentialDestinationUnavailable);
    assert_eq!(method_of(&e).as_deref(), Some("EMAIL"));
    world
        .contacts_as(&world.owner, Role::Owner)
        .await
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Pat".into(),
                email: "pat@example.com".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let e = refused(
        &api,
        deliver("r:2", &world, &service, &owner, Method::Email, "pw-1"),
    )
    .await;
    assert_eq!(reason(&e), Reason::CredentialDestinationUnavailable);
    // SMS without a verified phone: a code sent but not confirmed is not one.
    identity_as(&world, &owner)
        .start_phone_verification(ipb::StartPhoneVerificationRequest {
            phone: "+358401234567".into(),
        })
        .await
        .unwrap();
    let e = refused(
        &api,
        deliver("r:3", &world, &service, &owner, Method::Sms, "pw-1"),
    )
    .await;
    assert_eq!(reason(&e), Reason::CredentialDestinationUnavailable);
    assert_eq!(method_of(&e).as_deref(), Some("SMS"));
    // The account's default (NONE): nothing sent, nothing kept.
    let none = api
        .clone()
        .deliver_server_credentials(deliver(
            "r:4",
            &world,
            &service,
            &owner,
            Method::Unspecified,
            "pw-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.method, Method::None as i32);
    assert!(none.message.is_none());
    let queued = world
        .env
        .internal()
        .await
        .list_outbox_messages(pb::ListOutboxMessagesRequest {
            request_id: "r:4".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(queued.messages.is_empty());
    // Not a member, or a member without access to the server.
    let stranger = world.user("stranger@example.com").await;
    let e = refused(
        &api,
        deliver("r:5", &world, &service, &stranger, Method::None, "pw-1"),
    )
    .await;
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(reason(&e), Reason::NotAMember);
    let none = world
        .member("mia@example.com", apb::ServiceAccess::None)
        .await;
    let e = refused(
        &api,
        deliver("r:6", &world, &service, &none, Method::None, "pw-1"),
    )
    .await;
    assert_eq!(reason(&e), Reason::NotAMember);

    // Only provisioning may call it.
    let billing = world.env.internal_as(Part::Billing).await;
    let e = refused(
        &billing,
        deliver("r:7", &world, &service, &owner, Method::None, "pw-1"),
    )
    .await;
    assert_eq!(e.code(), Code::PermissionDenied);
    // Bad input is named; SendEmail cannot forge a credentials message.
    let e = refused(
        &api,
        deliver("r:8", &world, &service, &owner, Method::None, "a\nb"),
    )
    .await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(tenancy_runtime::error::violated_fields(&e), ["secret"]);
    let e = world
        .env
        .internal()
        .await
        .send_email(pb::SendEmailRequest {
            request_id: "forge".into(),
            to: vec![pb::EmailAddress {
                email: "x@example.com".into(),
                name: String::new(),
            }],
            template: MessageTemplate::ServerCredentials as i32,
            template_data: [("service_id", "s"), ("secret", "visible")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            account_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

/// The HTTP sender retries a provider's 503 like a mail relay's 4xx, and
/// gives up at once on a 400; either way the sealed copy is erased once
/// the message is final, and the password reached the provider only in
/// the request that delivered it.
#[tokio::test]
async fn sms_delivery_retries_then_gives_up_and_erases_the_secret() {
    let sms = SmsServer::start().await;
    let world = world_with("creds_sms_retry", &sms, None).await;
    let owner = world.owner.clone();
    verify_phone(&world, &sms, &owner, "+14155550100", 1).await;
    let service = world.register_service("db-1").await;
    sms.answer_next(&[503]);
    let first = secret();
    let queued = world
        .env
        .internal()
        .await
        .deliver_server_credentials(deliver(
            "s:1",
            &world,
            &service,
            &owner,
            Method::Sms,
            &first,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    sms.wait_for(2).await;
    eventually(30, "the retry to be scheduled", || async {
        message(&world, &queued.id).await.state == OutboxMessageState::Pending as i32
    })
    .await;
    assert!(message(&world, &queued.id).await.last_error.contains("503"));
    assert_eq!(sealed_rows(&world).await, 1, "kept sealed until delivered");
    world.clock.advance(Duration::from_secs(60));
    reaches(&world, &queued.id, OutboxMessageState::Sent).await;
    assert_eq!(sealed_rows(&world).await, 0);
    let received = sms.wait_for(3).await;
    assert_eq!(received[1].status, 503);
    assert_eq!(received[2].status, 200);
    assert!(received[2].body.contains(&first));

    sms.answer_next(&[400]);
    let second = secret();
    let refused = world
        .env
        .internal()
        .await
        .deliver_server_credentials(deliver(
            "s:2",
            &world,
            &service,
            &owner,
            Method::Sms,
            &second,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    reaches(&world, &refused.id, OutboxMessageState::Failed).await;
    assert_eq!(sealed_rows(&world).await, 0);
    // A retried call with the same key answers the first message; nothing
    // new is sent or kept.
    let again = world
        .env
        .internal()
        .await
        .deliver_server_credentials(deliver(
            "s:2",
            &world,
            &service,
            &owner,
            Method::Sms,
            &second,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(sealed_rows(&world).await, 0);
    assert_eq!(sms.received().len(), 4);
}

/// Phone codes: a code works once, only for the user and number it was
/// sent for, not after five wrong guesses or ten minutes; a bad number is
/// refused naming the field; replacing a verified number needs a recent
/// authentication and emails the user a notice.
#[tokio::test]
async fn phone_codes_are_single_use_bound_limited_and_expiring() {
    let sms = SmsServer::start().await;
    let mut world = world_with("phone_codes", &sms, None).await;
    let owner = world.owner.clone();
    let other = world.user("otto@example.com").await;
    // Olga in a portal session (replacing her number needs one); Otto
    // without.
    world
        .identity_internal()
        .set_initial_password(ipb::SetInitialPasswordRequest {
            user_id: owner.clone(),
            password: tenancy_testkit::PASSWORD.to_owned(),
            name: String::new(),
        })
        .await
        .unwrap();
    let session = world.login(&owner).await;
    let mut in_session = world.member_principal(&owner, &world.account_id, Role::Owner);
    in_session.session_id = Some(session.clone());
    let mut olga =
        IdentityServiceClient::with_interceptor(world.identity_channel(), world.signed(in_session));
    let mut otto = identity_as(&world, &other);
    let e = olga
        .start_phone_verification(ipb::StartPhoneVerificationRequest {
            phone: "0401234567".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PhoneInvalid);
    assert_eq!(tenancy_runtime::error::violated_fields(&e), ["phone"]);

    olga.start_phone_verification(ipb::StartPhoneVerificationRequest {
        phone: "+358401234567".into(),
    })
    .await
    .unwrap();
    let code = code_in_sms(&sms, 1).await;
    // Foreign: Otto cannot use Olga's code, even for a number of his own.
    otto.start_phone_verification(ipb::StartPhoneVerificationRequest {
        phone: "+358401234567".into(),
    })
    .await
    .unwrap();
    let ottos = code_in_sms(&sms, 2).await;
    if ottos != code {
        let e = otto
            .confirm_phone(ipb::ConfirmPhoneRequest { code: code.clone() })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::PhoneCodeInvalid);
    }
    olga.confirm_phone(ipb::ConfirmPhoneRequest { code: code.clone() })
        .await
        .unwrap();
    // Replayed.
    let e = olga
        .confirm_phone(ipb::ConfirmPhoneRequest { code })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PhoneCodeInvalid);
    // A notice of the new number went to Olga's address.
    let notices = world
        .outbox_all("olga@example.com", MessageTemplate::SecurityPhoneChanged)
        .await;
    assert_eq!(notices.len(), 1);
    assert!(!format!("{notices:?}").contains("+358401234567"));

    // Five wrong guesses spend Otto's code.
    for _ in 0..5 {
        let e = otto
            .confirm_phone(ipb::ConfirmPhoneRequest {
                code: "000000".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::PhoneCodeInvalid);
    }
    if ottos != "000000" {
        let e = otto
            .confirm_phone(ipb::ConfirmPhoneRequest { code: ottos })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), Reason::PhoneCodeInvalid);
    }
    // Expired after ten minutes.
    otto.start_phone_verification(ipb::StartPhoneVerificationRequest {
        phone: "+358401234567".into(),
    })
    .await
    .unwrap();
    let late = code_in_sms(&sms, 3).await;
    world.clock.advance(Duration::from_secs(11 * 60));
    let e = otto
        .confirm_phone(ipb::ConfirmPhoneRequest { code: late })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PhoneCodeInvalid);

    // Replacing Olga's verified number needs a recent authentication: her
    // session authenticated over 15 minutes ago is too old.
    world.clock.advance(Duration::from_secs(5 * 60));
    let mut stale = world.member_principal(&owner, &world.account_id, Role::Owner);
    stale.session_id = Some(session);
    let e = IdentityServiceClient::with_interceptor(world.identity_channel(), world.signed(stale))
        .start_phone_verification(ipb::StartPhoneVerificationRequest {
            phone: "+14155550100".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ReauthRequired);
}
