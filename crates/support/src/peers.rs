//! The other Tenancy services support depends on: account (access
//! decisions, support-access grants, audit log), identity (users, code
//! words) and contacts (notifications).

use std::collections::HashSet;

use tenancy_proto::account::{
    self as account_pb, account_internal_service_client::AccountInternalServiceClient,
};
use tenancy_proto::contacts::{
    self as contacts_pb, contacts_internal_service_client::ContactsInternalServiceClient,
};
use tenancy_proto::identity::{
    self as identity_pb, identity_internal_service_client::IdentityInternalServiceClient,
};
use tenancy_runtime::Channel;
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::{Context, Error, Principal, Reason};
use tonic::service::interceptor::InterceptedService;

use crate::domain::{SupportError, Visibility};

type Svc = InterceptedService<Channel, ServiceAuth>;

/// Clients of the peer services; cheap to clone.
#[derive(Clone)]
pub(crate) struct Peers {
    account: AccountInternalServiceClient<Svc>,
    identity: IdentityInternalServiceClient<Svc>,
    contacts: ContactsInternalServiceClient<Svc>,
}

/// A peer's failure as our error: its refusals about the request (bad
/// input, not found, precondition, throttled) pass through as the peer gave
/// them; anything else means the peer is unavailable (never INTERNAL).
fn peer_error(service: &str, status: tonic::Status) -> Error {
    use tonic::Code;
    Error::from_peer(
        service,
        &status,
        &[
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ],
    )
}

/// What a code-word check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodeWordOutcome {
    /// Matches.
    Verified,
    /// Does not match.
    Mismatch,
    /// The user has none.
    NoCodeWord,
}

impl CodeWordOutcome {
    /// The outcome as the audit log and the system note name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CodeWordOutcome::Verified => "VERIFIED",
            CodeWordOutcome::Mismatch => "MISMATCH",
            CodeWordOutcome::NoCodeWord => "NO_CODE_WORD",
        }
    }
}

/// A user as identity reports them.
#[derive(Clone, Debug)]
pub(crate) struct User {
    /// Their id.
    pub(crate) id: UserId,
    /// Their address.
    pub(crate) email: String,
    /// Their display name.
    pub(crate) name: String,
    /// Whether they are on the support team.
    pub(crate) staff: bool,
}

/// A ticket notification for contacts' Notify (category SUPPORT_REPLIES,
/// template TICKET_REPLY).
pub(crate) struct TicketNotice {
    /// The idempotency key: one per message.
    pub(crate) request_id: String,
    /// The ticket's account.
    pub(crate) account_id: AccountId,
    /// The ticket's service, if any (recipients need access to it).
    pub(crate) service_id: Option<String>,
    /// The template's variables.
    pub(crate) data: std::collections::HashMap<String, String>,
    /// The users to notify (their preferences apply).
    pub(crate) users: Vec<User>,
    /// Whether the account's TECHNICAL contacts are notified too.
    pub(crate) technical_contacts: bool,
}

/// One audit event to record.
pub(crate) struct Audit<'a> {
    /// Who acted.
    pub(crate) principal: &'a Principal,
    /// The account.
    pub(crate) account_id: &'a AccountId,
    /// `ticket.read`, `ticket.message_add`, ...
    pub(crate) action: &'a str,
    /// `ticket` or `member`.
    pub(crate) target_type: &'a str,
    /// The ticket or user.
    pub(crate) target_id: &'a str,
    /// Outcome fields (never secrets).
    pub(crate) after: Vec<(&'a str, String)>,
    /// Idempotency key for writes, so a retried audit is recorded once.
    pub(crate) idempotency_key: Option<String>,
}

impl Peers {
    /// Clients on the configured addresses (connected lazily).
    pub(crate) fn new(context: &Context) -> Result<Self, ConfigError> {
        let auth = context.service_auth();
        Ok(Self {
            account: AccountInternalServiceClient::with_interceptor(
                context.channel_to(ServiceName::Account)?,
                auth.clone(),
            ),
            identity: IdentityInternalServiceClient::with_interceptor(
                context.channel_to(ServiceName::Identity)?,
                auth.clone(),
            ),
            contacts: ContactsInternalServiceClient::with_interceptor(
                context.channel_to(ServiceName::Contacts)?,
                auth,
            ),
        })
    }

    /// What `user_id` may see in `account_id`: ONE BatchCheckAccess call
    /// (level VIEW), with the complete accessible set when `whole_set`.
    pub(crate) async fn visibility(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
        service_ids: Vec<String>,
        whole_set: bool,
    ) -> Result<Visibility, Error> {
        let response = self
            .account
            .clone()
            .batch_check_access(account_pb::BatchCheckAccessRequest {
                user_id: user_id.to_string(),
                account_id: account_id.to_string(),
                service_ids,
                level: account_pb::AccessLevel::View as i32,
                include_accessible_service_ids: whole_set,
            })
            .await
            .map_err(|s| peer_error("account", s))?
            .into_inner();
        use account_pb::AccessReason as R;
        let member = matches!(
            R::try_from(response.membership_reason),
            Ok(R::Owner | R::ActiveMember)
        );
        if !member {
            return Ok(Visibility::Nothing);
        }
        if response.all_services {
            return Ok(Visibility::Everything);
        }
        let mut services: HashSet<String> = response.accessible_service_ids.into_iter().collect();
        services.extend(
            response
                .results
                .into_iter()
                .filter(|r| r.allowed)
                .map(|r| r.service_id),
        );
        Ok(Visibility::GeneralAnd(services))
    }

    /// Whether the account has an active support-access grant now.
    pub(crate) async fn support_access(&self, account_id: &AccountId) -> Result<bool, Error> {
        match self
            .account
            .clone()
            .check_support_access(account_pb::CheckSupportAccessRequest {
                account_id: account_id.to_string(),
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().active),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(peer_error("account", s)),
        }
    }

    /// Every account with an active support-access grant.
    pub(crate) async fn granted_accounts(&self) -> Result<Vec<AccountId>, Error> {
        let mut accounts = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .account
                .clone()
                .list_active_support_access_grants(
                    account_pb::ListActiveSupportAccessGrantsRequest {
                        page_size: 500,
                        page_token,
                    },
                )
                .await
                .map_err(|s| peer_error("account", s))?
                .into_inner();
            accounts.extend(
                page.grants
                    .into_iter()
                    .filter(|g| g.active)
                    .map(|g| AccountId::trusted(g.account_id)),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(accounts)
    }

    /// Appends a staff event to the account's audit log.
    pub(crate) async fn audit(&self, event: Audit<'_>) -> Result<(), Error> {
        let p = event.principal;
        let after = (!event.after.is_empty()).then(|| prost_types::Struct {
            fields: event
                .after
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue(v)),
                        },
                    )
                })
                .collect(),
        });
        self.account
            .clone()
            .record_audit_event(account_pb::RecordAuditEventRequest {
                event: Some(account_pb::AuditEvent {
                    account_id: event.account_id.to_string(),
                    actor_kind: account_pb::ActorKind::Staff as i32,
                    actor_id: p.user_id.clone().unwrap_or_default(),
                    token_kind: p.token_kind as i32,
                    client_ip: p.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    user_agent: p.user_agent.chars().take(500).collect(),
                    action: event.action.to_owned(),
                    target_type: event.target_type.to_owned(),
                    target_id: event.target_id.to_owned(),
                    after,
                    request_id: p.request_id.clone(),
                    ..Default::default()
                }),
                request_id: event.idempotency_key.unwrap_or_default(),
            })
            .await
            .map_err(|s| peer_error("account", s))?;
        Ok(())
    }

    /// Whether `user_id` is an ACTIVE member of `account_id`.
    pub(crate) async fn is_member(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<bool, Error> {
        let response = self
            .account
            .clone()
            .check_access(account_pb::CheckAccessRequest {
                user_id: user_id.to_string(),
                account_id: account_id.to_string(),
                target: None,
                level: account_pb::AccessLevel::Unspecified as i32,
            })
            .await
            .map_err(|s| peer_error("account", s))?
            .into_inner();
        use account_pb::AccessReason as R;
        Ok(
            matches!(R::try_from(response.reason), Ok(R::Owner | R::ActiveMember))
                || response.allowed,
        )
    }

    /// Checks a code word through identity. The word is passed on, never
    /// kept or logged.
    pub(crate) async fn verify_code_word(
        &self,
        user_id: &UserId,
        code_word: String,
        staff_user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<CodeWordOutcome, Error> {
        let response = self
            .identity
            .clone()
            .verify_code_word(identity_pb::VerifyCodeWordRequest {
                user_id: user_id.to_string(),
                code_word,
                staff_user_id: staff_user_id.to_string(),
                account_id: account_id.to_string(),
            })
            .await;
        match response {
            Ok(r) => {
                let r = r.into_inner();
                Ok(if r.r#match {
                    CodeWordOutcome::Verified
                } else if !r.code_word_set {
                    CodeWordOutcome::NoCodeWord
                } else {
                    CodeWordOutcome::Mismatch
                })
            }
            Err(s) if s.code() == tonic::Code::NotFound => Err(SupportError::MemberNotFound.into()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                use tonic_types::StatusExt as _;
                let after = s
                    .get_details_retry_info()
                    .and_then(|r| r.retry_delay)
                    .unwrap_or(std::time::Duration::from_secs(3600));
                Err(Error::throttled(Reason::CodeWordAttemptsExceeded, after))
            }
            Err(s) => Err(peer_error("identity", s)),
        }
    }

    /// Users by id (unknown ids left out).
    pub(crate) async fn users(&self, ids: Vec<UserId>) -> Result<Vec<User>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .identity
            .clone()
            .batch_get_users(identity_pb::BatchGetUsersRequest {
                user_ids: ids.into_iter().map(UserId::into_string).collect(),
            })
            .await
            .map_err(|s| peer_error("identity", s))?
            .into_inner()
            .users
            .into_iter()
            .map(|u| User {
                id: UserId::trusted(u.id),
                email: u.email,
                name: u.name,
                staff: u.staff,
            })
            .collect())
    }

    /// Queues a ticket notification through contacts. A repeat of its
    /// `request_id` queues nothing (contacts answers the first call's
    /// messages), and so does a repeat whose content changed meanwhile (a
    /// recipient renamed, a CC user added): contacts refuses it with
    /// REQUEST_ID_REUSED, which means the message was notified already.
    pub(crate) async fn notify(&self, notice: TicketNotice) -> Result<(), Error> {
        let request = contacts_pb::NotifyRequest {
            request_id: notice.request_id,
            account_id: notice.account_id.into_string(),
            category: contacts_pb::NotificationCategory::SupportReplies as i32,
            template: contacts_pb::MessageTemplate::TicketReply as i32,
            template_data: notice.data,
            service_id: notice.service_id.unwrap_or_default(),
            extra_recipients: notice
                .users
                .into_iter()
                .map(|u| contacts_pb::ExtraRecipient {
                    user_id: u.id.into_string(),
                    email: u.email,
                    name: u.name,
                })
                .collect(),
            contact_roles: if notice.technical_contacts {
                vec![contacts_pb::ContactRole::Technical as i32]
            } else {
                Vec::new()
            },
        };
        match self.contacts.clone().notify(request).await {
            Ok(_) => Ok(()),
            Err(s) if tenancy_runtime::error::reason_of(&s) == Some(Reason::RequestIdReused) => {
                Ok(())
            }
            Err(s) => Err(peer_error("contacts", s)),
        }
    }
}
