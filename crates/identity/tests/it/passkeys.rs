//! Passkeys over real gRPC, driven by a software authenticator and WebAuthn
//! client from a crate (1Password's `passkey-authenticator` and
//! `passkey-client`: an implementation independent of the relying party's
//! webauthn-rs): registration, the passkey as second factor, passwordless
//! login, and the refusals (wrong origin, wrong rp id, replayed challenges,
//! a cloned authenticator, another user's passkey, the last factor under
//! enforced 2FA).

use std::time::Duration;

use base64::Engine as _;
use passkey_authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey_client::{Client, DefaultClientData};
use passkey_crypto::rust_crypto::RustCryptoBackend;
use passkey_types::ctap2::{Aaguid, Ctap2Error};
use passkey_types::{Passkey, webauthn};
use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity::complete_mfa_request::SecondFactor;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::*;
use tenancy_runtime::Reason;
use tenancy_runtime::config::WebauthnAttestation;
use url::Url;

use crate::harness::{Env, PASSWORD, reason};

/// The portal's origin and the relying-party id of these tests.
const ORIGIN: &str = "https://portal.example.com";
const RP_ID: &str = "portal.example.com";

/// The user verifies (PIN or biometrics) whenever asked.
struct Verifying;

#[tonic::async_trait]
impl UserValidationMethod for Verifying {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence,
            verification,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

/// A software authenticator holding (at most) one discoverable passkey,
/// with a signature counter, behind a WebAuthn client (the browser part:
/// clientDataJSON, the origin's rp-id check).
#[derive(Clone, Default)]
struct Device {
    store: Option<Passkey>,
}

impl Device {
    fn authenticator(&mut self) -> Authenticator<Option<Passkey>, Verifying, RustCryptoBackend> {
        let mut authenticator = Authenticator::new(
            Aaguid::new_empty(),
            self.store.take(),
            Verifying,
            RustCryptoBackend,
        );
        authenticator.set_make_credentials_with_signature_counter(true);
        authenticator
    }

    /// `navigator.credentials.create()` from `origin`: the credential as
    /// the JSON a browser's `toJSON()` gives.
    async fn create(&mut self, options: &str, origin: &str) -> String {
        let options: webauthn::CredentialCreationOptions = serde_json::from_str(options).unwrap();
        let mut client = Client::new(self.authenticator());
        let created = client
            .register(&Url::parse(origin).unwrap(), options, DefaultClientData)
            .await;
        self.store = client.authenticator().store().clone();
        serde_json::to_string(&created.unwrap()).unwrap()
    }

    /// `navigator.credentials.get()` from `origin`.
    async fn get(&mut self, options: &str, origin: &str) -> String {
        let options: webauthn::CredentialRequestOptions = serde_json::from_str(options).unwrap();
        let mut client = Client::new(self.authenticator());
        let asserted = client
            .authenticate(&Url::parse(origin).unwrap(), options, DefaultClientData)
            .await;
        self.store = client.authenticator().store().clone();
        serde_json::to_string(&asserted.unwrap()).unwrap()
    }
}

async fn start(label: &str) -> Env {
    Env::start_with(label, |config| {
        config.auth.webauthn_rp_id = RP_ID.into();
        config.auth.webauthn_origins = vec![ORIGIN.into()];
    })
    .await
}

/// The `amr` claim of an access token.
fn amr(credentials: &SessionCredentials) -> Vec<String> {
    let token = &credentials.access_token.as_ref().unwrap().token;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A verified user logged in (no 2FA yet): (user id, session).
async fn user(env: &Env, email: &str) -> (String, SessionCredentials) {
    let user = env.verified_user(email).await;
    let session = env.login(email).await;
    (user, session)
}

/// Begins a registration in `session`: the creation options as JSON.
async fn begin(env: &Env, user: &str, session: &SessionCredentials) -> String {
    env.in_session(user, &session.session_id, None)
        .begin_passkey_registration(BeginPasskeyRegistrationRequest {})
        .await
        .unwrap()
        .into_inner()
        .creation_options_json
}

async fn finish(
    env: &Env,
    user: &str,
    session: &SessionCredentials,
    name: &str,
    credential: &str,
) -> Result<FinishPasskeyRegistrationResponse, tonic::Status> {
    env.in_session(user, &session.session_id, None)
        .finish_passkey_registration(FinishPasskeyRegistrationRequest {
            name: name.into(),
            credential_json: credential.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The passkeys ListPasskeys shows in `session`.
async fn passkeys_of(
    env: &Env,
    user: &str,
    session: &SessionCredentials,
) -> Vec<tenancy_proto::identity::Passkey> {
    env.in_session(user, &session.session_id, None)
        .list_passkeys(ListPasskeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .passkeys
}

/// Registers a passkey on `device` in `session`; returns its id.
async fn register(
    env: &Env,
    user: &str,
    session: &SessionCredentials,
    device: &mut Device,
    name: &str,
) -> String {
    let options = begin(env, user, session).await;
    let credential = device.create(&options, ORIGIN).await;
    finish(env, user, session, name, &credential)
        .await
        .unwrap()
        .passkey
        .unwrap()
        .id
}

/// Logs in with the password from `ip`: the MFA challenge.
async fn challenge_from(env: &Env, ip: &str, email: &str) -> MfaChallenge {
    let r = env
        .anonymous(ip)
        .login(LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    match r.outcome.unwrap() {
        Outcome::MfaChallenge(c) => c,
        other => panic!("{other:?}"),
    }
}

async fn complete(
    env: &Env,
    challenge: &MfaChallenge,
    credential: &str,
) -> Result<SessionCredentials, tonic::Status> {
    env.anonymous("198.51.100.7")
        .complete_mfa(CompleteMfaRequest {
            challenge_token: challenge.challenge_token.clone(),
            second_factor: Some(SecondFactor::PasskeyCredentialJson(credential.into())),
        })
        .await
        .map(|r| r.into_inner().session.unwrap())
}

/// BeginPasskeyLogin from `ip`: (login token, request options).
async fn begin_login(env: &Env, ip: &str) -> (String, String) {
    let r = env
        .anonymous(ip)
        .begin_passkey_login(BeginPasskeyLoginRequest {})
        .await
        .unwrap()
        .into_inner();
    (r.login_token, r.request_options_json)
}

async fn finish_login(
    env: &Env,
    ip: &str,
    token: &str,
    credential: &str,
) -> Result<SessionCredentials, tonic::Status> {
    env.anonymous(ip)
        .finish_passkey_login(FinishPasskeyLoginRequest {
            login_token: token.into(),
            credential_json: credential.into(),
            account_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().session.unwrap())
}

/// The `event` of every SECURITY_PASSKEY notice to `to`, oldest first
/// (waits for `n` of them, up to 30 s).
async fn passkey_events(env: &Env, to: &str, n: usize) -> Vec<String> {
    for _ in 0..1500 {
        let sent = env.outbox.sent(to, MessageTemplate::SecurityPasskey).await;
        if sent.len() >= n {
            return sent
                .iter()
                .map(|m| m.template_data["event"].clone())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} passkey notices to {to}");
}

#[tokio::test]
async fn a_registered_passkey_answers_the_login_challenge_and_counts_as_2fa() {
    let env = start("pk_second_factor").await;
    let email = "ada@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();

    let options = begin(&env, &user, &session).await;
    let parsed: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(parsed["publicKey"]["rp"]["id"], RP_ID);
    assert_eq!(parsed["publicKey"]["attestation"], "none");
    assert_eq!(
        parsed["publicKey"]["authenticatorSelection"]["residentKey"],
        "preferred"
    );
    let credential = device.create(&options, ORIGIN).await;
    let added = finish(&env, &user, &session, " laptop ", &credential)
        .await
        .unwrap();
    let passkey = added.passkey.unwrap();
    assert_eq!(passkey.name, "laptop");
    assert!(!passkey.suspect);
    assert_eq!(passkey_events(&env, email, 1).await, ["added"]);

    // GetMe and the list show it; it is a second factor.
    let mut c = env.in_session(&user, &session.session_id, None);
    let me = c.get_me(GetMeRequest {}).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().passkey_count, 1);
    let listed = c
        .list_passkeys(ListPasskeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .passkeys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, passkey.id);
    let renamed = c
        .rename_passkey(RenamePasskeyRequest {
            passkey_id: passkey.id.clone(),
            name: "work laptop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.passkey.unwrap().name, "work laptop");

    // The password alone no longer logs in: the challenge offers the passkey.
    let challenge = challenge_from(&env, "198.51.100.7", email).await;
    assert_eq!(
        challenge.allowed_factors,
        [SecondFactorType::Passkey as i32]
    );
    let assertion = device
        .get(&challenge.passkey_request_options_json, ORIGIN)
        .await;
    let session = complete(&env, &challenge, &assertion).await.unwrap();
    let methods = amr(&session);
    assert!(methods.contains(&"pwd".to_owned()), "{methods:?}");
    assert!(
        methods.iter().any(|m| m == "hwk" || m == "swk"),
        "{methods:?}"
    );
    let events = env
        .in_session(&user, &session.session_id, None)
        .list_login_events(ListLoginEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .login_events;
    assert!(
        events
            .iter()
            .any(|e| e.method() == LoginMethod::PasskeySecondFactor
                && e.outcome() == LoginOutcome::Success)
    );

    // Replayed: the same assertion cannot answer the challenge again, nor a
    // new challenge (its challenge is another).
    let replayed = complete(&env, &challenge, &assertion).await.unwrap_err();
    assert_eq!(reason(&replayed), Reason::MfaChallengeInvalid);
    let next = challenge_from(&env, "198.51.100.7", email).await;
    let refused = complete(&env, &next, &assertion).await.unwrap_err();
    assert_eq!(reason(&refused), Reason::SecondFactorInvalid);
}

#[tokio::test]
async fn passwordless_login_with_a_discoverable_passkey_is_a_login() {
    let env = start("pk_passwordless").await;
    let email = "grace@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();
    register(&env, &user, &session, &mut device, "phone").await;

    // From a network the user never logged in from: a session, and the
    // new-address notice as for Login.
    let ip = "203.0.113.50";
    let (token, options) = begin_login(&env, ip).await;
    let parsed: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(parsed["publicKey"]["rpId"], RP_ID);
    let assertion = device.get(&options, ORIGIN).await;
    let session = finish_login(&env, ip, &token, &assertion).await.unwrap();
    assert_eq!(session.user_id, user);
    let methods = amr(&session);
    assert!(methods.contains(&"mfa".to_owned()), "{methods:?}");
    assert!(!methods.contains(&"pwd".to_owned()), "{methods:?}");
    for _ in 0..1500 {
        if !env
            .outbox
            .sent(email, MessageTemplate::SecurityNewLogin)
            .await
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let notice = env
        .outbox
        .sent(email, MessageTemplate::SecurityNewLogin)
        .await;
    assert_eq!(notice.len(), 1);
    assert_eq!(notice[0].template_data["ip"], ip);

    // The login token and its challenge are single use.
    let replayed = finish_login(&env, ip, &token, &assertion)
        .await
        .unwrap_err();
    assert_eq!(reason(&replayed), Reason::CredentialsInvalid);
    // An assertion answers only the challenge it signed.
    let (other_token, _) = begin_login(&env, ip).await;
    let refused = finish_login(&env, ip, &other_token, &assertion)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::CredentialsInvalid);
    // Both refusals are in the user's login history.
    let events = env
        .in_session(&user, &session.session_id, None)
        .list_login_events(ListLoginEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .login_events;
    assert!(events.iter().any(|e| e.method() == LoginMethod::Passkey
        && e.outcome() == LoginOutcome::Success
        && e.ip_address == ip));
    assert!(events.iter().any(|e| e.method() == LoginMethod::Passkey
        && e.outcome() == LoginOutcome::FailureBadCredentials));
}

/// BeginPasskeyLogin checks no secret, so it counts no attempt: it only
/// reads the per-address login cap. An anonymous begin writes no counter
/// (no row, nor a changed one); an address over its cap is refused with
/// TOO_MANY_ATTEMPTS and when to retry, and its counter stays as it was.
#[tokio::test]
async fn begin_passkey_login_reads_the_address_cap_and_writes_no_counter() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    use tenancy_runtime::Clock as _;
    use tonic_types::StatusExt as _;
    let env = start("pk_begin_cap").await;
    let db = Database::connect(&env.db.url).await.unwrap();
    let backend = db.get_database_backend();
    let counters = || async {
        db.query_all_raw(Statement::from_string(
            backend,
            "SELECT key, failures, window_start, last_failure FROM identity_throttle ORDER BY key",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "key").unwrap(),
                row.try_get::<i64>("", "failures").unwrap(),
                row.try_get::<i64>("", "window_start").unwrap(),
                row.try_get::<i64>("", "last_failure").unwrap(),
            )
        })
        .collect::<Vec<_>>()
    };
    let now = env.clock.now().millis();
    let put = |ip: &str, failures: i64| {
        Statement::from_string(
            backend,
            format!(
                "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
                 VALUES ('ip:{ip}', {failures}, {}, {})",
                now - 1000,
                now - 1000
            ),
        )
    };
    // An address under its cap (failures counted earlier) and one at it.
    db.execute_raw(put("203.0.113.70", 3)).await.unwrap();
    db.execute_raw(put("203.0.113.71", 300)).await.unwrap();
    let before = counters().await;
    assert_eq!(before.len(), 2);

    env.advance(Duration::from_secs(5));
    begin_login(&env, "203.0.113.69").await;
    begin_login(&env, "203.0.113.70").await;
    let e = env
        .anonymous("203.0.113.71")
        .begin_passkey_login(BeginPasskeyLoginRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e), Reason::AttemptsExceeded);
    let retry = e.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.unwrap() > Duration::from_secs(3000));
    assert_eq!(counters().await, before, "a begin wrote a counter");

    // Once the window is over the address may begin again (still unwritten).
    env.advance(Duration::from_secs(3600));
    begin_login(&env, "203.0.113.71").await;
    assert_eq!(counters().await, before, "a begin wrote a counter");
}

#[tokio::test]
async fn registration_refuses_a_wrong_origin_a_wrong_rp_id_and_a_replay() {
    let env = start("pk_registration_refusals").await;
    let (user, session) = user(&env, "alan@example.com").await;
    let other_session = env.login("alan@example.com").await;

    // Created on another origin (a phishing page under the rp id's domain
    // the client accepts, but not one of ours).
    let options = begin(&env, &user, &session).await;
    let phished = Device::default()
        .create(&options, "https://evil.portal.example.com")
        .await;
    let refused = finish(&env, &user, &session, "key", &phished)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeyInvalid);

    // Created for another relying party (rp id "example.com", which the
    // client allows for our origin, but the authenticator data names it).
    let options = begin(&env, &user, &session).await;
    let mut other_rp: serde_json::Value = serde_json::from_str(&options).unwrap();
    other_rp["publicKey"]["rp"]["id"] = "example.com".into();
    let wrong_rp = Device::default()
        .create(&other_rp.to_string(), ORIGIN)
        .await;
    let refused = finish(&env, &user, &session, "key", &wrong_rp)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeyInvalid);

    // A good credential registers once; the same again finds no challenge.
    let options = begin(&env, &user, &session).await;
    let good = Device::default().create(&options, ORIGIN).await;
    finish(&env, &user, &session, "key", &good).await.unwrap();
    let replayed = finish(&env, &user, &session, "key", &good)
        .await
        .unwrap_err();
    assert_eq!(reason(&replayed), Reason::PasskeyChallengeInvalid);

    // Bound to the session that began it: another session of the same user
    // cannot finish it.
    let options = begin(&env, &user, &session).await;
    let credential = Device::default().create(&options, ORIGIN).await;
    let refused = finish(&env, &user, &other_session, "key", &credential)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeyChallengeInvalid);
    // ...and the rightful session still can.
    finish(&env, &user, &session, "key 2", &credential)
        .await
        .unwrap();

    // Nothing refused was stored.
    let listed = passkeys_of(&env, &user, &session).await;
    assert_eq!(listed.len(), 2);

    // Registration needs a recent authentication.
    env.advance(Duration::from_secs(16 * 60));
    let stale = env
        .in_session(&user, &session.session_id, None)
        .begin_passkey_registration(BeginPasskeyRegistrationRequest {})
        .await
        .unwrap_err();
    assert_eq!(reason(&stale), Reason::ReauthRequired);
}

#[tokio::test]
async fn an_assertion_from_the_wrong_origin_is_refused() {
    let env = start("pk_assertion_origin").await;
    let email = "edsger@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();
    register(&env, &user, &session, &mut device, "key").await;

    let challenge = challenge_from(&env, "198.51.100.7", email).await;
    let phished = device
        .get(
            &challenge.passkey_request_options_json,
            "https://evil.portal.example.com",
        )
        .await;
    let refused = complete(&env, &challenge, &phished).await.unwrap_err();
    assert_eq!(reason(&refused), Reason::SecondFactorInvalid);

    let (token, options) = begin_login(&env, "198.51.100.7").await;
    let phished = device
        .get(&options, "https://evil.portal.example.com")
        .await;
    let refused = finish_login(&env, "198.51.100.7", &token, &phished)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::CredentialsInvalid);
}

#[tokio::test]
async fn a_cloned_authenticator_is_refused_and_the_user_told() {
    let env = start("pk_cloned").await;
    let email = "barbara@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();
    register(&env, &user, &session, &mut device, "yubikey").await;
    // A copy of the authenticator, counter and all.
    let mut clone = device.clone();

    let (token, options) = begin_login(&env, "198.51.100.7").await;
    let assertion = device.get(&options, ORIGIN).await;
    finish_login(&env, "198.51.100.7", &token, &assertion)
        .await
        .unwrap();

    // The copy signs with a counter that is not above the one seen.
    let (token, options) = begin_login(&env, "198.51.100.7").await;
    let assertion = clone.get(&options, ORIGIN).await;
    let refused = finish_login(&env, "198.51.100.7", &token, &assertion)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeySuspect);
    assert_eq!(passkey_events(&env, email, 2).await, ["added", "suspect"]);

    // From then on the passkey is refused, the genuine one too, as second
    // factor and passwordless.
    let (token, options) = begin_login(&env, "198.51.100.7").await;
    let assertion = device.get(&options, ORIGIN).await;
    let refused = finish_login(&env, "198.51.100.7", &token, &assertion)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeySuspect);
    let listed = passkeys_of(&env, &user, &session).await;
    assert!(listed[0].suspect);
    // Its only usable passkey is suspect: the challenge offers none.
    let challenge = challenge_from(&env, "198.51.100.7", email).await;
    assert!(challenge.passkey_request_options_json.is_empty());
}

#[tokio::test]
async fn another_users_passkey_is_refused() {
    let env = start("pk_other_user").await;
    let (alice, alice_session) = user(&env, "alice@example.com").await;
    let (bob, bob_session) = user(&env, "bob@example.com").await;
    let mut alice_key = Device::default();
    let mut bob_key = Device::default();
    let alice_passkey = register(&env, &alice, &alice_session, &mut alice_key, "a").await;
    register(&env, &bob, &bob_session, &mut bob_key, "b").await;

    // Bob's valid assertion (for his own challenge's options) answering
    // Alice's challenge.
    let alice_challenge = challenge_from(&env, "198.51.100.7", "alice@example.com").await;
    let bob_challenge = challenge_from(&env, "198.51.100.7", "bob@example.com").await;
    let bobs = bob_key
        .get(&bob_challenge.passkey_request_options_json, ORIGIN)
        .await;
    let refused = complete(&env, &alice_challenge, &bobs).await.unwrap_err();
    assert_eq!(reason(&refused), Reason::SecondFactorInvalid);
    // Bob's answers his own.
    complete(&env, &bob_challenge, &bobs).await.unwrap();

    // Bob cannot rename or delete Alice's passkey.
    let mut as_bob = env.in_session(&bob, &bob_session.session_id, None);
    let refused = as_bob
        .rename_passkey(RenamePasskeyRequest {
            passkey_id: alice_passkey.clone(),
            name: "mine".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeyNotFound);
    let refused = as_bob
        .delete_passkey(DeletePasskeyRequest {
            passkey_id: alice_passkey,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::PasskeyNotFound);
}

#[tokio::test]
async fn the_last_factor_stays_while_the_account_enforces_2fa() {
    let env = start("pk_last_factor").await;
    let email = "frances@example.com";
    let (user, _) = user(&env, email).await;
    let account = env.create_account(&user).await;
    let session = env.login(email).await;
    let mut device = Device::default();
    let first = register(&env, &user, &session, &mut device, "first").await;
    env.enforce_mfa(&account, &user).await;
    env.advance(Duration::from_secs(1));

    // The session selects the account that enforces 2FA: the only factor
    // cannot go.
    let mut c = env.in_session(&user, &session.session_id, Some(&account));
    let refused = c
        .delete_passkey(DeletePasskeyRequest {
            passkey_id: first.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), Reason::LastFactorRequired);

    // With a second passkey, the first can go (and the user is told).
    let mut spare = Device::default();
    register(&env, &user, &session, &mut spare, "spare").await;
    c.delete_passkey(DeletePasskeyRequest { passkey_id: first })
        .await
        .unwrap();
    assert_eq!(
        passkey_events(&env, email, 3).await,
        ["added", "added", "removed"]
    );
}

#[tokio::test]
async fn without_enforcement_the_last_passkey_can_go_and_2fa_with_it() {
    let env = start("pk_delete_last").await;
    let email = "hedy@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();
    let id = register(&env, &user, &session, &mut device, "only").await;
    let mut c = env.in_session(&user, &session.session_id, None);
    c.delete_passkey(DeletePasskeyRequest { passkey_id: id })
        .await
        .unwrap();
    assert_eq!(passkey_events(&env, email, 2).await, ["added", "removed"]);
    // No second factor left: the password alone logs in again.
    env.login(email).await;
}

#[tokio::test]
async fn a_passkey_is_2fa_for_api_tokens_also_after_totp_goes() {
    let env = start("pk_api_tokens").await;
    let email = "katherine@example.com";
    let (user, session) = user(&env, email).await;
    let mut device = Device::default();
    register(&env, &user, &session, &mut device, "key").await;
    let account = uuid::Uuid::now_v7().to_string();
    let mut c = env.as_principal(tenancy_runtime::Principal {
        user_id: Some(user.clone()),
        account_id: Some(account),
        role: tenancy_testkit::Role::Owner,
        session_id: Some(session.session_id.clone()),
        token_kind: tenancy_testkit::TokenKind::Portal,
        client_ip: Some("198.51.100.7".parse().unwrap()),
        request_id: "r".into(),
        ..tenancy_runtime::Principal::default()
    });
    let created = c
        .create_api_token(CreateApiTokenRequest {
            name: "ci".into(),
            expire_time: None,
            read_only: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let introspect = || async {
        env.internal()
            .introspect_api_token(IntrospectApiTokenRequest {
                secret: created.secret.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .mfa_enabled
    };
    assert!(introspect().await, "a passkey is a second factor");

    // TOTP on, then off again: the passkey still counts.
    crate::mfa::enroll(&env, &user, &session).await;
    env.in_session(&user, &session.session_id, None)
        .disable_totp(DisableTotpRequest {
            proof: Some(disable_totp_request::Proof::Password(PASSWORD.into())),
        })
        .await
        .unwrap();
    assert!(introspect().await, "the passkey is left");
}

#[tokio::test]
async fn attestation_ca_mode_refuses_an_authenticator_no_listed_ca_attests() {
    // A CA list naming some vendor's root, not the software authenticator
    // (which attests nothing: format "none").
    let vendor = rcgen::generate_simple_self_signed(vec!["fido.vendor.example".into()]).unwrap();
    let file = std::env::temp_dir().join(format!("pk_attestation_{}.pem", std::process::id()));
    std::fs::write(&file, vendor.cert.pem()).unwrap();
    let ca_file = file.clone();
    let env = Env::start_with("pk_attestation_ca", move |config| {
        config.auth.webauthn_rp_id = RP_ID.into();
        config.auth.webauthn_origins = vec![ORIGIN.into()];
        config.auth.webauthn_attestation = WebauthnAttestation::Ca;
        config.auth.webauthn_attestation_ca_file = Some(ca_file);
    })
    .await;
    let (user, session) = user(&env, "grace@example.com").await;

    let options = begin(&env, &user, &session).await;
    let parsed: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(parsed["publicKey"]["attestation"], "direct");
    let credential = Device::default().create(&options, ORIGIN).await;
    let refused = finish(&env, &user, &session, "key", &credential)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&refused), Reason::PasskeyInvalid);
    assert!(
        refused.message().to_lowercase().contains("attest"),
        "{}",
        refused.message()
    );
    let listed = passkeys_of(&env, &user, &session).await;
    assert!(listed.is_empty());

    // The mode without a CA file, or with a file holding no certificate,
    // does not start; the error names the setting.
    let why = env
        .open_refusal(|config| config.auth.webauthn_attestation_ca_file = None)
        .await;
    assert!(why.contains("auth.webauthn_attestation_ca_file"), "{why}");
    std::fs::write(&file, "not a certificate\n").unwrap();
    let why = env.open_refusal(|_| {}).await;
    assert!(why.contains("auth.webauthn_attestation_ca_file"), "{why}");
    std::fs::remove_file(&file).unwrap();
}
