//! The login history: the caller's own, and an account member's (for owners).

use tenancy_proto::identity as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, MAX_FILTER_VALUES, Reply, at_most, member_id, ok, page_token_sized};
use crate::app::admin::LoginEventFilter;
use crate::domain::profile::device;
use crate::store::login_events::LoginEventRow;

pub(super) async fn list_login_events(
    api: &Api,
    request: Request<pb::ListLoginEventsRequest>,
) -> Reply<pb::ListLoginEventsResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let limit = tenancy_runtime::ids::page_size(r.page_size)?;
    let filter = filter(&r.start_time, &r.end_time, &r.methods, &r.outcomes)?;
    page_token_sized(&r.page_token)?;
    let (login_events, next_page_token) = api
        .app
        .login_events(p.user()?, None, &filter, limit, &r.page_token)
        .await?;
    ok(pb::ListLoginEventsResponse {
        login_events: login_events.into_iter().map(login_event).collect(),
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
    let filter = filter(&r.start_time, &r.end_time, &r.methods, &r.outcomes)?;
    page_token_sized(&r.page_token)?;
    let (login_events, next_page_token) = api
        .app
        .login_events(
            member.as_str(),
            Some(p.account()?),
            &filter,
            limit,
            &r.page_token,
        )
        .await?;
    ok(pb::ListMemberLoginEventsResponse {
        login_events: login_events.into_iter().map(login_event).collect(),
        next_page_token,
    })
}

/// The filters as both list requests carry them; LIST_TOO_LONG for more
/// than [`MAX_FILTER_VALUES`] methods or outcomes.
fn filter<'a>(
    start: &Option<prost_types::Timestamp>,
    end: &Option<prost_types::Timestamp>,
    methods: &'a [i32],
    outcomes: &'a [i32],
) -> Result<LoginEventFilter<'a>, tenancy_runtime::Error> {
    at_most("methods", methods.len(), MAX_FILTER_VALUES)?;
    at_most("outcomes", outcomes.len(), MAX_FILTER_VALUES)?;
    Ok(LoginEventFilter {
        start: start.as_ref().map(Timestamp::from_proto),
        end: end.as_ref().map(Timestamp::from_proto),
        methods,
        outcomes,
    })
}

fn login_event(event: LoginEventRow) -> pb::LoginEvent {
    pb::LoginEvent {
        device: device(&event.user_agent),
        id: event.id,
        user_id: event.user_id,
        account_id: event.account_id,
        session_id: event.session_id,
        time: Some(Timestamp(event.time).to_proto()),
        ip_address: event.ip,
        user_agent: event.user_agent,
        method: event.method,
        outcome: event.outcome,
    }
}
