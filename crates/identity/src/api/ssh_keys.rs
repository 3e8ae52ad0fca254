//! The selected account's SSH public keys.

use tenancy_proto::identity as pb;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, ok};

pub(super) async fn add_ssh_key(
    api: &Api,
    request: Request<pb::AddSshKeyRequest>,
) -> Reply<pb::AddSshKeyResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let key = api.core.add_ssh_key(p, &r.name, &r.public_key).await?;
    ok(pb::AddSshKeyResponse { ssh_key: Some(key) })
}

pub(super) async fn list_ssh_keys(
    api: &Api,
    request: Request<pb::ListSshKeysRequest>,
) -> Reply<pb::ListSshKeysResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let (ssh_keys, next_page_token) = api
        .core
        .list_ssh_keys(p, r.page_size, &r.page_token)
        .await?;
    ok(pb::ListSshKeysResponse {
        ssh_keys,
        next_page_token,
    })
}

pub(super) async fn delete_ssh_key(
    api: &Api,
    request: Request<pb::DeleteSshKeyRequest>,
) -> Reply<pb::DeleteSshKeyResponse> {
    let p = principal(&request)?;
    api.core
        .delete_ssh_key(p, &request.get_ref().ssh_key_id)
        .await?;
    ok(pb::DeleteSshKeyResponse {})
}
