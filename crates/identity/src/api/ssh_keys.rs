//! The selected account's SSH public keys.

use tenancy_proto::identity as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::{AccountId, SshKeyId, page_size};
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, ok};
use crate::store::ssh_keys::SshKeyRow;

pub(super) async fn add_ssh_key(
    api: &Api,
    request: Request<pb::AddSshKeyRequest>,
) -> Reply<pb::AddSshKeyResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let key = api.app.add_ssh_key(p, &r.name, &r.public_key).await?;
    ok(pb::AddSshKeyResponse {
        ssh_key: Some(ssh_key(key)),
    })
}

pub(super) async fn list_ssh_keys(
    api: &Api,
    request: Request<pb::ListSshKeysRequest>,
) -> Reply<pb::ListSshKeysResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let account = AccountId::trusted(p.account()?);
    let size = page_size(r.page_size)?;
    super::page_token_sized(&r.page_token)?;
    let (keys, next_page_token) = api.app.list_ssh_keys(&account, size, &r.page_token).await?;
    ok(pb::ListSshKeysResponse {
        ssh_keys: keys.into_iter().map(ssh_key).collect(),
        next_page_token,
    })
}

pub(super) async fn delete_ssh_key(
    api: &Api,
    request: Request<pb::DeleteSshKeyRequest>,
) -> Reply<pb::DeleteSshKeyResponse> {
    let p = principal(&request)?;
    // A malformed id is no key of the account: NOT_FOUND, after the
    // session checks.
    let id = SshKeyId::parse("ssh_key_id", &request.get_ref().ssh_key_id).ok();
    api.app.delete_ssh_key(p, id.as_ref()).await?;
    ok(pb::DeleteSshKeyResponse {})
}

fn ssh_key(key: SshKeyRow) -> pb::SshKey {
    pb::SshKey {
        id: key.id.into_string(),
        account_id: key.account_id.into_string(),
        name: key.name,
        public_key: key.public_key,
        fingerprint: key.fingerprint,
        algorithm: key.algorithm,
        bits: key.bits,
        comment: key.comment,
        create_time: Some(Timestamp(key.create_time).to_proto()),
        created_by_user_id: key.created_by.into_string(),
    }
}
