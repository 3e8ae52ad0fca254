//! The login history: the caller's own, and an account member's (for owners).

use tenancy_proto::identity as pb;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, member_id, ok};
use crate::core::admin::LoginEventFilter;

pub(super) async fn list_login_events(
    api: &Api,
    request: Request<pb::ListLoginEventsRequest>,
) -> Reply<pb::ListLoginEventsResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let limit = tenancy_runtime::ids::page_size(r.page_size)?;
    let filter = LoginEventFilter::new(&r.start_time, &r.end_time, &r.methods, &r.outcomes);
    let (login_events, next_page_token) = api
        .core
        .login_events(p.user()?, None, &filter, limit, &r.page_token)
        .await?;
    ok(pb::ListLoginEventsResponse {
        login_events,
        next_page_token,
    })
}

pub(super) async fn list_member_login_events(
    api: &Api,
    request: Request<pb::ListMemberLoginEventsRequest>,
) -> Reply<pb::ListMemberLoginEventsResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let member = member_id(&r.user_id)?;
    let limit = tenancy_runtime::ids::page_size(r.page_size)?;
    let filter = LoginEventFilter::new(&r.start_time, &r.end_time, &r.methods, &r.outcomes);
    let (login_events, next_page_token) = api
        .core
        .login_events(
            member.as_str(),
            Some(p.account()?),
            &filter,
            limit,
            &r.page_token,
        )
        .await?;
    ok(pb::ListMemberLoginEventsResponse {
        login_events,
        next_page_token,
    })
}
