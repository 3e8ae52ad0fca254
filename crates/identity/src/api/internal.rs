//! Calls of other services: EnsureUser, CreateApiUser, BatchGetUsers, WatchRevocations,
//! RevokeAccountAccess, RecordUsage.

use futures::StreamExt as _;
use tenancy_proto::identity as pb;
use tenancy_proto::identity::revocation_event::Kind;
use tenancy_proto::identity::watch_revocations_response::Item;
use tenancy_runtime::Timestamp;
use tonic::{Request, Response, Status};

use super::{Api, Reply, account_id, member_id, ok, user};
use crate::app::admin::Usage;
use crate::app::revocations::WatchItem;
use crate::domain::error::{IdentityError, Invalid};
use crate::store::revocations::StoredEvent;

pub(super) async fn ensure_user(
    api: &Api,
    request: Request<pb::EnsureUserRequest>,
) -> Reply<pb::EnsureUserResponse> {
    let r = request.into_inner();
    let (found, created) = api.app.ensure_user(&r.email, &r.name).await?;
    ok(pb::EnsureUserResponse {
        user: Some(user(found)),
        created,
    })
}

pub(super) async fn create_api_user(
    api: &Api,
    request: Request<pb::CreateApiUserRequest>,
) -> Reply<pb::CreateApiUserResponse> {
    let r = request.into_inner();
    let created = api.app.create_api_user(&r.account_id, &r.name).await?;
    ok(pb::CreateApiUserResponse {
        user: Some(user(created)),
    })
}

pub(super) async fn batch_get_users(
    api: &Api,
    request: Request<pb::BatchGetUsersRequest>,
) -> Reply<pb::BatchGetUsersResponse> {
    let users = api
        .app
        .batch_get_users(&request.into_inner().user_ids)
        .await?;
    ok(pb::BatchGetUsersResponse {
        users: users.into_iter().map(user).collect(),
    })
}

pub(super) async fn watch_revocations(
    api: &Api,
    request: Request<pb::WatchRevocationsRequest>,
) -> Reply<
    std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>,
    >,
> {
    let request = request.into_inner();
    let stream = api
        .app
        .clone()
        .watch_revocations(request.from_position, request.batched_catch_up)
        .await?;
    let stream = stream.map(|item| {
        let item = match item {
            WatchItem::Reset { oldest_position } => Item::Reset(pb::Reset { oldest_position }),
            WatchItem::Event(event) => Item::Event(event_of(event)),
            WatchItem::Batch(events) => Item::Batch(pb::RevocationBatch {
                events: events.into_iter().map(event_of).collect(),
            }),
            WatchItem::CaughtUp { head_position } => Item::CaughtUp(pb::CaughtUp { head_position }),
            WatchItem::Heartbeat {
                head_position,
                time,
            } => Item::Heartbeat(pb::Heartbeat {
                head_position,
                time: Some(time.to_proto()),
            }),
        };
        Ok(pb::WatchRevocationsResponse { item: Some(item) })
    });
    Ok(Response::new(tenancy_runtime::shutdown::until_shutdown(
        stream,
        api.shutdown.clone(),
    )))
}

pub(super) async fn revoke_account_access(
    api: &Api,
    request: Request<pb::RevokeAccountAccessRequest>,
) -> Reply<pb::RevokeAccountAccessResponse> {
    let r = request.into_inner();
    let user = member_id(&r.user_id)?;
    let account = account_id(&r.account_id)?;
    // Only a membership change ends a member's access to an account.
    let reason = match pb::RevocationReason::try_from(r.reason) {
        Ok(
            reason @ (pb::RevocationReason::MemberSuspended
            | pb::RevocationReason::MemberRevoked
            | pb::RevocationReason::MemberLeft),
        ) => reason,
        _ => {
            return Err(IdentityError::invalid(
                Invalid::Reason,
                "reason",
                "not a member-related reason",
            )
            .into());
        }
    };
    let (tokens, position) = api
        .app
        .revoke_account_access(
            &user,
            &account,
            reason,
            r.change_time
                .as_ref()
                .map(|t| tenancy_runtime::Timestamp::from_proto(t).millis()),
        )
        .await?;
    ok(pb::RevokeAccountAccessResponse {
        revoked_api_token_count: tokens,
        position,
    })
}

pub(super) async fn record_usage(
    api: &Api,
    request: Request<pb::RecordUsageRequest>,
) -> Reply<pb::RecordUsageResponse> {
    let r = request.get_ref();
    if r.api_token_usages.len() + r.session_activities.len() > 10_000 {
        let error = IdentityError::invalid(
            Invalid::ListTooLong,
            "api_token_usages",
            "at most 10000 entries",
        );
        return Err(error.into());
    }
    let millis =
        |t: Option<&prost_types::Timestamp>| t.map_or(0, |t| Timestamp::from_proto(t).millis());
    let tokens: Vec<Usage<'_>> = r
        .api_token_usages
        .iter()
        .map(|u| Usage {
            id: &u.api_token_id,
            time: millis(u.last_used_time.as_ref()),
            ip: &u.ip_address,
            user_agent: "",
        })
        .collect();
    let sessions: Vec<Usage<'_>> = r
        .session_activities
        .iter()
        .map(|s| Usage {
            id: &s.session_id,
            time: millis(s.last_seen_time.as_ref()),
            ip: &s.ip_address,
            user_agent: &s.user_agent,
        })
        .collect();
    api.app.record_usage(&tokens, &sessions).await?;
    ok(pb::RecordUsageResponse {})
}

/// A stored event as gateways receive it.
fn event_of(event: StoredEvent) -> pb::RevocationEvent {
    let StoredEvent {
        subject,
        user_id,
        account_id,
        kids,
        ..
    } = event;
    let kind = match event.kind.as_str() {
        "session" => Kind::Session(pb::SessionRevocation {
            session_id: subject,
            user_id,
        }),
        "user_tokens_before" => Kind::UserTokensBefore(pb::UserTokensRevocation { user_id }),
        "user_account" => Kind::UserAccount(pb::UserAccountRevocation {
            user_id,
            account_id,
        }),
        "api_token" => Kind::ApiToken(pb::ApiTokenRevocation {
            api_token_id: subject,
            user_id,
            account_id,
        }),
        "mfa" => Kind::MfaChanged(pb::MfaChanged {
            user_id,
            mfa_enabled: subject == "on",
        }),
        _ => Kind::SigningKeysChanged(pb::SigningKeysChanged {
            withdrawn_kids: kids
                .split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
        }),
    };
    pb::RevocationEvent {
        position: event.position,
        create_time: Some(Timestamp(event.create_time).to_proto()),
        expire_time: event.expire_time.map(|t| Timestamp(t).to_proto()),
        reason: event.reason,
        kind: Some(kind),
    }
}
