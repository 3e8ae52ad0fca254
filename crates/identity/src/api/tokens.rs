//! API tokens (create, list, revoke, introspect) and the JWKS verifiers of
//! access tokens fetch.

use tenancy_proto::identity as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, jwk, ok};
use crate::app::tokens::{ApiToken, NewToken, TokenListing};
use crate::domain::api_tokens::TokenState;

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
    let source_allowlist = tenancy_runtime::allowlist::parse_field(
        "source_allowlist",
        &r.source_allowlist,
        tenancy_runtime::allowlist::MAX_SOURCE_ALLOWLIST,
    )?;
    let new = NewToken {
        name: &r.name,
        expire,
        read_only: r.read_only,
        member_id: &r.member_id,
        source_allowlist: &source_allowlist,
    };
    let (token, secret) = api.app.create_api_token(p, new).await?;
    ok(pb::CreateApiTokenResponse {
        api_token: Some(api_token(token)),
        secret,
    })
}

pub(super) async fn list_api_tokens(
    api: &Api,
    request: Request<pb::ListApiTokensRequest>,
) -> Reply<pb::ListApiTokensResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    super::at_most("states", r.states.len(), super::MAX_FILTER_VALUES)?;
    super::page_token_sized(&r.page_token)?;
    let listing = TokenListing {
        user_id: &r.user_id,
        states: &r.states,
        page_size: r.page_size,
        page_token: &r.page_token,
    };
    let (api_tokens, next_page_token) = api.app.list_api_tokens(p, listing).await?;
    ok(pb::ListApiTokensResponse {
        api_tokens: api_tokens.into_iter().map(api_token).collect(),
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
        api_token: Some(api_token(token)),
    })
}

pub(super) async fn get_jwks(
    api: &Api,
    _request: Request<pb::GetJwksRequest>,
) -> Reply<pb::GetJwksResponse> {
    let keys = api.app.jwks().await?;
    ok(pb::GetJwksResponse {
        keys: keys.into_iter().map(jwk).collect(),
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
    let found = api
        .app
        .introspect_api_token(&request.get_ref().secret)
        .await?;
    let token = found.token;
    let source_allowlist = token.source_allowlist();
    ok(pb::IntrospectApiTokenResponse {
        api_token_id: token.id,
        user_id: token.user_id,
        account_id: token.account_id,
        read_only: token.read_only,
        expire_time: token.expire_time.map(|t| Timestamp(t).to_proto()),
        create_time: Some(Timestamp(token.create_time).to_proto()),
        mfa_enabled: found.mfa,
        source_allowlist,
    })
}

/// A token as clients see it (never its secret).
fn api_token(view: ApiToken) -> pb::ApiToken {
    let t = view.token;
    let state = match view.state {
        TokenState::Active => pb::ApiTokenState::Active,
        TokenState::Expired => pb::ApiTokenState::Expired,
        TokenState::Revoked => pb::ApiTokenState::Revoked,
    };
    let time = |ms: i64| Timestamp(ms).to_proto();
    pb::ApiToken {
        source_allowlist: t.source_allowlist(),
        id: t.id,
        name: t.name,
        user_id: t.user_id,
        account_id: t.account_id,
        last_four: t.last_four,
        read_only: t.read_only,
        state: state as i32,
        create_time: Some(time(t.create_time)),
        expire_time: t.expire_time.map(time),
        last_used_time: t.last_used_time.map(time),
        last_used_ip_address: t.last_used_ip,
        revoke_time: t.revoke_time.map(time),
        revoked_by_user_id: t.revoked_by,
    }
}
