//! Server root-password delivery (issue 17 §2) through the whole suite,
//! over real gRPC: the account's delivery setting through the gateway
//! (owners change it, members read it), then provisioning, with its own
//! service identity (mutual TLS, as the README's walk calls billing), asks
//! contacts to deliver a password by EMAIL (to the verified PRIMARY
//! contact, a real SMTP server), by SMS (to the deploying member's verified
//! phone, a real HTTP SMS provider), or not at all, and is refused when the
//! destination is missing or unverified.

use std::time::{Duration, Instant};

use prost_types::FieldMask;
use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{
    GetSecuritySettingsRequest, RegisterServiceRequest, SecuritySettings,
    ServerCredentialDelivery as Method, Service, UpdateSecuritySettingsRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::contacts_service_client::ContactsServiceClient;
use tenancy_proto::contacts::{
    Contact, CreateContactRequest, DeliverServerCredentialsRequest,
    DeliverServerCredentialsResponse, VerifyContactEmailRequest,
};
use tenancy_proto::identity::{ConfirmPhoneRequest, StartPhoneVerificationRequest};
use tenancy_runtime::Reason;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::tls::Caller as Peer;
use tenancy_testkit::{SmsServer, SmtpServer, TestChannel};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::gateway::{Suite, bearer, reason};

/// The account's delivery setting, as GetSecuritySettings shows it to the
/// holder of `token`.
async fn setting(suite: &Suite, token: &str) -> i32 {
    suite
        .account(token)
        .get_security_settings(GetSecuritySettingsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
        .server_credential_delivery
}

/// UpdateSecuritySettings of the delivery setting alone, as `token`.
async fn set_delivery(suite: &Suite, token: &str, method: Method) -> Result<(), tonic::Status> {
    suite
        .account(token)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                server_credential_delivery: method as i32,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["server_credential_delivery".into()],
            }),
            force: false,
        })
        .await
        .map(|_| ())
}

/// Billing registers a server of `account_id` (the account service
/// itself, over mutual TLS with billing's identity); returns its id.
async fn register_server(suite: &Suite, account_id: &str) -> String {
    let account = suite.running.service(ServiceName::Account).unwrap();
    AccountInternalServiceClient::new(
        TestChannel::new(Peer::Account, account).as_caller(Peer::Billing),
    )
    .register_service(RegisterServiceRequest {
        service: Some(Service {
            account_id: account_id.into(),
            kind: "vps".into(),
            name: "web-1".into(),
            external_id: "order-1001".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .service
    .unwrap()
    .id
}

/// Provisioning's client of the contacts service (mutual TLS with
/// provisioning's identity; the gateway never routes internal services).
fn provisioning(suite: &Suite) -> ContactsInternalServiceClient<TestChannel> {
    let contacts = suite.running.service(ServiceName::Contacts).unwrap();
    ContactsInternalServiceClient::new(
        TestChannel::new(Peer::Contacts, contacts).as_caller(Peer::Provisioning),
    )
}

/// DeliverServerCredentials for `server`, deployed by `user`.
async fn deliver(
    suite: &Suite,
    key: &str,
    (account_id, server, user): (&str, &str, &str),
    method: Method,
    secret: &str,
) -> Result<DeliverServerCredentialsResponse, tonic::Status> {
    provisioning(suite)
        .deliver_server_credentials(DeliverServerCredentialsRequest {
            request_id: key.into(),
            account_id: account_id.into(),
            service_id: server.into(),
            user_id: user.into(),
            method: method as i32,
            secret: secret.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The user id behind `token` (GetMe through the gateway).
async fn user_id(suite: &Suite, token: &str) -> String {
    suite
        .identity(token)
        .get_me(tenancy_proto::identity::GetMeRequest::default())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
        .id
}

/// Polls until `ready` holds, for at most 30 s (a loaded machine).
async fn eventually<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The member behind `token` gives `phone` and confirms it with the code
/// the `n`th SMS brought, all through the gateway.
async fn verify_phone(suite: &Suite, sms: &SmsServer, token: &str, phone: &str, n: usize) {
    suite
        .identity(token)
        .start_phone_verification(StartPhoneVerificationRequest {
            phone: phone.into(),
        })
        .await
        .unwrap();
    let received = sms.wait_for(n).await;
    let body: serde_json::Value = serde_json::from_str(&received[n - 1].body).unwrap();
    let text = body["text"].as_str().unwrap();
    let code = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned();
    suite
        .identity(token)
        .confirm_phone(ConfirmPhoneRequest { code })
        .await
        .unwrap();
}

/// The owner adds `email` as the account's first (so PRIMARY) contact and
/// follows its verification link, through the gateway.
async fn verified_primary(suite: &Suite, owner: &str, email: &str) {
    let mut contacts =
        ContactsServiceClient::with_interceptor(suite.gateway.clone(), bearer(owner));
    contacts
        .create_contact(CreateContactRequest {
            contact: Some(Contact {
                name: "Pat Primary".into(),
                email: email.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let token = suite.emailed_token(email, "verify_url").await;
    ContactsServiceClient::new(suite.gateway.clone())
        .verify_contact_email(VerifyContactEmailRequest { token })
        .await
        .unwrap();
}

fn unavailable(status: &tonic::Status, method: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(status), Reason::CredentialDestinationUnavailable);
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("method").map(String::as_str),
        Some(method)
    );
}

#[tokio::test]
async fn provisioning_delivers_server_passwords_as_the_account_chose() {
    let smtp = SmtpServer::start().await;
    let sms = SmsServer::start().await;
    let (smtp_url, sms_url) = (smtp.url(), sms.url());
    let suite = Suite::start(move |config| {
        config.smtp_url = Some(smtp_url);
        config.sms.url = Some(sms_url);
    })
    .await;
    let owner = suite.user("owner@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let manager = suite
        .member(&owner, &account_id, "deployer@example.com", Role::Manager)
        .await;
    let deployer = user_id(&suite, &manager).await;
    let server = register_server(&suite, &account_id).await;
    let target = (account_id.as_str(), server.as_str(), deployer.as_str());

    // The setting: NONE until an owner changes it; a manager may read it
    // but not change it.
    assert_eq!(setting(&suite, &manager).await, Method::None as i32);
    let refused = set_delivery(&suite, &manager, Method::Sms)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), Reason::RoleTooLow);
    assert_eq!(setting(&suite, &owner).await, Method::None as i32);
    set_delivery(&suite, &owner, Method::Email).await.unwrap();
    assert_eq!(setting(&suite, &manager).await, Method::Email as i32);

    // No destination yet: EMAIL (the setting) without a PRIMARY contact,
    // SMS without a verified phone; provisioning shows the password once.
    let e = deliver(&suite, "p:1", target, Method::Unspecified, "Root-pw-1!")
        .await
        .unwrap_err();
    unavailable(&e, "EMAIL");
    let e = deliver(&suite, "p:2", target, Method::Sms, "Root-pw-1!")
        .await
        .unwrap_err();
    unavailable(&e, "SMS");

    // EMAIL (the setting): to the verified PRIMARY contact.
    verified_primary(&suite, &owner, "pat@example.com").await;
    let by_email = "Root-e-7c1f!x";
    let emailed = deliver(&suite, "p:3", target, Method::Unspecified, by_email)
        .await
        .unwrap();
    assert_eq!(emailed.method, Method::Email as i32);
    let message = emailed.message.unwrap();
    assert!(message.carries_secret);
    assert!(!format!("{message:?}").contains(by_email));
    eventually("the password by email", || async {
        smtp.received().iter().any(|m| m.text.contains(by_email))
    })
    .await;
    let mail = smtp
        .received()
        .into_iter()
        .find(|m| m.text.contains(by_email))
        .unwrap();
    assert_eq!(mail.rcpt, vec!["pat@example.com".to_owned()]);

    // SMS (named by provisioning): to the deploying member's verified phone.
    verify_phone(&suite, &sms, &manager, "+358 40 123 4567", 1).await;
    let by_sms = "Root-s-93ab!y";
    let texted = deliver(&suite, "p:4", target, Method::Sms, by_sms)
        .await
        .unwrap();
    assert_eq!(texted.method, Method::Sms as i32);
    assert_eq!(texted.message.unwrap().to_phone, "+358401234567");
    let received = sms.wait_for(2).await;
    let body: serde_json::Value = serde_json::from_str(&received[1].body).unwrap();
    assert_eq!(body["to"], "+358401234567");
    assert!(body["text"].as_str().unwrap().contains(by_sms));

    // NONE: nothing queued, nothing sent.
    set_delivery(&suite, &owner, Method::None).await.unwrap();
    let by_none = "Root-n-51d0!z";
    let none = deliver(&suite, "p:5", target, Method::Unspecified, by_none)
        .await
        .unwrap();
    assert_eq!(none.method, Method::None as i32);
    assert!(none.message.is_none());
    // Whatever else is still on its way arrives; the NONE password never.
    let third = deliver(&suite, "p:6", target, Method::Sms, "Root-last!")
        .await
        .unwrap();
    assert!(third.message.is_some());
    sms.wait_for(3).await;
    assert!(!sms.received().iter().any(|r| r.body.contains(by_none)));
    assert!(!smtp.received().iter().any(|m| m.text.contains(by_none)));
}
