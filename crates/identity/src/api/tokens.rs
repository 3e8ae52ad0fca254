//! API tokens (create, list, revoke, introspect) and the JWKS verifiers of
//! access tokens fetch.

use tenancy_proto::identity as pb;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, ok};

pub(super) async fn create_api_token(
    api: &Api,
    request: Request<pb::CreateApiTokenRequest>,
) -> Reply<pb::CreateApiTokenResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let expire = r
        .expire_time
        .as_ref()
        .map(tenancy_runtime::Timestamp::from_proto);
    let (token, secret) = api
        .app
        .create_api_token(p, &r.name, expire, r.read_only)
        .await?;
    ok(pb::CreateApiTokenResponse {
        api_token: Some(token),
        secret,
    })
}

pub(super) async fn list_api_tokens(
    api: &Api,
    request: Request<pb::ListApiTokensRequest>,
) -> Reply<pb::ListApiTokensResponse> {
    let p = principal(&request)?;
    let (api_tokens, next_page_token) = api.app.list_api_tokens(p, request.get_ref()).await?;
    ok(pb::ListApiTokensResponse {
        api_tokens,
        next_page_token,
    })
}

pub(super) async fn revoke_api_token(
    api: &Api,
    request: Request<pb::RevokeApiTokenRequest>,
) -> Reply<pb::RevokeApiTokenResponse> {
    let p = principal(&request)?;
    let token = api
        .app
        .revoke_api_token(p, &request.get_ref().api_token_id)
        .await?;
    ok(pb::RevokeApiTokenResponse {
        api_token: Some(token),
    })
}

pub(super) async fn get_jwks(
    api: &Api,
    _request: Request<pb::GetJwksRequest>,
) -> Reply<pb::GetJwksResponse> {
    let keys = api.app.jwks().await?;
    ok(pb::GetJwksResponse {
        keys,
        cache_duration: Some(prost_types::Duration {
            seconds: i64::try_from(crate::app::keys::JWKS_CACHE.as_secs()).unwrap_or(300),
            nanos: 0,
        }),
    })
}

pub(super) async fn introspect_api_token(
    api: &Api,
    request: Request<pb::IntrospectApiTokenRequest>,
) -> Reply<pb::IntrospectApiTokenResponse> {
    ok(api
        .app
        .introspect_api_token(&request.get_ref().secret)
        .await?)
}
