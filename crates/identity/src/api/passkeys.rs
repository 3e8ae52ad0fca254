//! The caller's passkeys, and passwordless login with one.

use tenancy_proto::identity as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::parse_id;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, access_token, client, credentials, ok};
use crate::store::passkeys::PasskeyRow;

pub(super) async fn begin_passkey_registration(
    api: &Api,
    request: Request<pb::BeginPasskeyRegistrationRequest>,
) -> Reply<pb::BeginPasskeyRegistrationResponse> {
    let p = principal(&request)?;
    let (options, expire) = api.app.begin_passkey_registration(p, &client(p)).await?;
    ok(pb::BeginPasskeyRegistrationResponse {
        creation_options_json: options,
        expire_time: Some(expire.to_proto()),
    })
}

pub(super) async fn finish_passkey_registration(
    api: &Api,
    request: Request<pb::FinishPasskeyRegistrationRequest>,
) -> Reply<pb::FinishPasskeyRegistrationResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let (row, token) = api
        .app
        .finish_passkey_registration(p, &r.name, &r.credential_json, &client(p))
        .await?;
    ok(pb::FinishPasskeyRegistrationResponse {
        passkey: Some(passkey(row)),
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn list_passkeys(
    api: &Api,
    request: Request<pb::ListPasskeysRequest>,
) -> Reply<pb::ListPasskeysResponse> {
    let p = principal(&request)?;
    let rows = api.app.list_passkeys(p.user()?).await?;
    ok(pb::ListPasskeysResponse {
        passkeys: rows.into_iter().map(passkey).collect(),
    })
}

pub(super) async fn rename_passkey(
    api: &Api,
    request: Request<pb::RenamePasskeyRequest>,
) -> Reply<pb::RenamePasskeyResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let id = parse_id("passkey_id", &r.passkey_id)?;
    let row = api.app.rename_passkey(p.user()?, &id, &r.name).await?;
    ok(pb::RenamePasskeyResponse {
        passkey: Some(passkey(row)),
    })
}

pub(super) async fn delete_passkey(
    api: &Api,
    request: Request<pb::DeletePasskeyRequest>,
) -> Reply<pb::DeletePasskeyResponse> {
    let p = principal(&request)?;
    let id = parse_id("passkey_id", &request.get_ref().passkey_id)?;
    let token = api.app.delete_passkey(p, &id, &client(p)).await?;
    ok(pb::DeletePasskeyResponse {
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn begin_passkey_login(
    api: &Api,
    request: Request<pb::BeginPasskeyLoginRequest>,
) -> Reply<pb::BeginPasskeyLoginResponse> {
    let c = client(principal(&request)?);
    let (token, options, expire) = api.app.begin_passkey_login(&c).await?;
    ok(pb::BeginPasskeyLoginResponse {
        login_token: token,
        request_options_json: options,
        expire_time: Some(expire.to_proto()),
    })
}

pub(super) async fn finish_passkey_login(
    api: &Api,
    request: Request<pb::FinishPasskeyLoginRequest>,
) -> Reply<pb::FinishPasskeyLoginResponse> {
    let c = client(principal(&request)?);
    let r = request.into_inner();
    super::token_sized(
        "login_token",
        &r.login_token,
        tenancy_runtime::Reason::FieldInvalid,
    )?;
    let session = api
        .app
        .finish_passkey_login(&r.login_token, &r.credential_json, &r.account_id, &c)
        .await?;
    ok(pb::FinishPasskeyLoginResponse {
        session: Some(credentials(session)),
    })
}

/// A passkey as clients see it (neither key nor counter).
fn passkey(row: PasskeyRow) -> pb::Passkey {
    pb::Passkey {
        id: row.id,
        name: row.name,
        create_time: Some(Timestamp(row.create_time).to_proto()),
        last_use_time: row.last_use_time.map(|t| Timestamp(t).to_proto()),
        suspect: row.suspect,
        backup_eligible: row.backup_eligible,
    }
}
