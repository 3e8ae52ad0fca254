//! ContactsInternalService routing: ResolveRecipients and Notify, with the
//! members and users asked of the account and identity services.

use std::collections::HashMap;
use std::time::Duration;

use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{self as apb, watch_policies_response::Event};
use tenancy_proto::contacts as pb;
use tenancy_proto::identity::BatchGetUsersRequest;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_runtime::Channel;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::error::Violations;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::{Error, ids};
use tonic::service::interceptor::InterceptedService;
use tonic::{Response, Status};

use super::{Api, message_to_proto, optional_id, sorted};
use crate::domain::email;
use crate::domain::routing::{
    self, Category, ContactCandidate, Exclusion, PlainExtra, Reason, Resolution, Role,
    UserCandidate,
};
use crate::domain::templates::Template;
use crate::outbox::{self, Address, Email};
use crate::store::{contacts, preferences};

type Accounts = AccountInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;
type Identity = IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;

/// How the service reaches identity (users' addresses) and account
/// (memberships, service access).
#[derive(Clone)]
pub(crate) struct Directory {
    accounts: Option<Accounts>,
    identity: Option<Identity>,
}

fn unavailable(what: &str, status: &Status) -> Error {
    tracing::warn!(%status, "{what} unavailable");
    Error::unavailable(format!("the {what} service cannot be reached; retry"))
}

/// A member as the account service reports it.
struct Member {
    user_id: String,
}

impl Directory {
    pub(crate) fn new(context: &tenancy_runtime::Context) -> Self {
        let auth = context.service_auth();
        let accounts = context
            .channel_to(ServiceName::Account)
            .ok()
            .map(|c| AccountInternalServiceClient::with_interceptor(c, auth.clone()));
        let identity = context
            .channel_to(ServiceName::Identity)
            .ok()
            .map(|c| IdentityInternalServiceClient::with_interceptor(c, auth));
        Self { accounts, identity }
    }

    fn accounts(&self) -> Result<Accounts, Error> {
        self.accounts
            .clone()
            .ok_or_else(|| Error::unavailable("the account service is not configured"))
    }

    /// Whether `user` is a member (any status) of `account`.
    pub(crate) async fn is_member(&self, account: &str, user: &str) -> Result<bool, Error> {
        let response = self
            .accounts()?
            .get_principal_state(apb::GetPrincipalStateRequest {
                user_id: user.to_owned(),
                account_id: account.to_owned(),
            })
            .await;
        match response {
            Ok(r) => Ok(r.into_inner().membership.is_some()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(unavailable("account", &s)),
        }
    }

    /// Fails with ACCOUNT_NOT_FOUND unless `account` exists.
    async fn check_account(&self, account: &str) -> Result<(), Error> {
        let response = self
            .accounts()?
            .get_principal_state(apb::GetPrincipalStateRequest {
                user_id: "00000000-0000-0000-0000-000000000000".to_owned(),
                account_id: account.to_owned(),
            })
            .await;
        match response {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Err(Error::new(
                tenancy_runtime::Reason::AccountNotFound,
                "no such account",
            )),
            Err(s) => Err(unavailable("account", &s)),
        }
    }

    /// Every membership of `account` with its status, from a snapshot of
    /// the account service's policy stream (there is no internal member
    /// list method; see the report).
    async fn memberships(&self, account: &str) -> Result<Vec<(Member, bool)>, Error> {
        let mut client = self.accounts()?;
        let read = async {
            let mut stream = client
                .watch_policies(apb::WatchPoliciesRequest { from_position: 0 })
                .await
                .map_err(|s| unavailable("account", &s))?
                .into_inner();
            let mut members: HashMap<String, bool> = HashMap::new();
            while let Some(item) = stream
                .message()
                .await
                .map_err(|s| unavailable("account", &s))?
            {
                match item.event {
                    Some(Event::MembershipChanged(m)) if m.account_id == account => {
                        let active = m.status == apb::MemberStatus::Active as i32;
                        members.insert(m.user_id, active);
                    }
                    Some(Event::MembershipRemoved(m)) if m.account_id == account => {
                        members.remove(&m.user_id);
                    }
                    Some(Event::CaughtUp(_)) => break,
                    _ => {}
                }
            }
            Ok::<_, Error>(members)
        };
        let members = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .map_err(|_| Error::unavailable("the account service did not answer in time"))??;
        Ok(members
            .into_iter()
            .map(|(user_id, active)| (Member { user_id }, active))
            .collect())
    }

    /// Whether `user` may view `service` in `account`.
    async fn service_access(
        &self,
        account: &str,
        user: &str,
        service: &str,
    ) -> Result<bool, Error> {
        let r = self
            .accounts()?
            .batch_check_access(apb::BatchCheckAccessRequest {
                user_id: user.to_owned(),
                account_id: account.to_owned(),
                service_ids: vec![service.to_owned()],
                level: apb::AccessLevel::View as i32,
                include_accessible_service_ids: false,
            })
            .await
            .map_err(|s| unavailable("account", &s))?
            .into_inner();
        Ok(r.results.first().is_some_and(|x| x.allowed))
    }

    /// Users' (email, name) by id.
    async fn users(&self, ids: Vec<String>) -> Result<HashMap<String, (String, String)>, Error> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut client = self
            .identity
            .clone()
            .ok_or_else(|| Error::unavailable("the identity service is not configured"))?;
        let r = client
            .batch_get_users(BatchGetUsersRequest { user_ids: ids })
            .await
            .map_err(|s| unavailable("identity", &s))?
            .into_inner();
        Ok(r.users
            .into_iter()
            .map(|u| (u.id, (u.email, u.name)))
            .collect())
    }
}

/// A validated routing request.
struct Routing {
    account: String,
    category: Category,
    service: String,
    extras: Vec<pb::ExtraRecipient>,
    /// Contact roles replacing the category's (empty: the category's).
    contact_roles: Vec<Role>,
}

fn check_routing(
    v: &mut Violations,
    account_id: &str,
    category: i32,
    service_id: &str,
    extras: Vec<pb::ExtraRecipient>,
    contact_roles: &[i32],
) -> Option<Routing> {
    let account = v.take("account_id", ids::parse_id("account_id", account_id));
    let category = Category::from_i32(category);
    v.check(
        category.is_some(),
        "category",
        "required: a known NotificationCategory",
    );
    let service = optional_id(v, "service_id", service_id);
    v.check(extras.len() <= 100, "extra_recipients", "at most 100");
    for (i, e) in extras.iter().enumerate() {
        if let Err(why) = email::validate(e.email.trim()) {
            v.add(format!("extra_recipients[{i}].email"), why);
        }
        if !e.user_id.is_empty() && ids::parse_id("x", &e.user_id).is_err() {
            v.add(format!("extra_recipients[{i}].user_id"), "must be a UUID");
        }
    }
    let roles: Vec<Role> = contact_roles
        .iter()
        .filter_map(|r| Role::from_i32(*r))
        .collect();
    let mut distinct = roles.clone();
    distinct.sort();
    distinct.dedup();
    v.check(
        roles.len() == contact_roles.len() && distinct.len() == roles.len(),
        "contact_roles",
        "known ContactRole values, each at most once",
    );
    Some(Routing {
        account: account?,
        category: category?,
        service,
        extras,
        contact_roles: roles,
    })
}

impl Api {
    async fn resolve(&self, r: &Routing) -> Result<Resolution, Error> {
        let d = &self.directory;
        d.check_account(&r.account).await?;
        let stored = contacts::all(&self.outbox.db, &r.account).await?;
        let contact_candidates: Vec<_> = stored
            .iter()
            .map(|c| ContactCandidate {
                id: c.id.clone(),
                email: c.email.clone(),
                name: c.name.clone(),
                roles: contacts::roles_of(c),
                verified: c.email_verified,
            })
            .collect();
        let memberships = d.memberships(&r.account).await?;
        let active: HashMap<String, bool> = memberships
            .iter()
            .map(|(m, a)| (m.user_id.clone(), *a))
            .collect();
        let choices: HashMap<String, bool> =
            preferences::for_category(&self.outbox.db, &r.account, r.category as i32)
                .await?
                .into_iter()
                .map(|p| (p.user_id, p.enabled))
                .collect();
        let routed_members: Vec<String> = if r.category.routed_to_members() {
            memberships
                .iter()
                .filter(|(m, a)| {
                    *a && routing::member_receives(r.category, choices.get(&m.user_id).copied())
                })
                .map(|(m, _)| m.user_id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut wanted: Vec<String> = routed_members.clone();
        wanted.extend(
            r.extras
                .iter()
                .filter(|e| !e.user_id.is_empty())
                .filter_map(|e| ids::parse_id("x", &e.user_id).ok()),
        );
        wanted.sort();
        wanted.dedup();
        let users = d.users(wanted).await?;
        let mut access: HashMap<String, bool> = HashMap::new();
        let candidate = |user_id: &str, email: String, name: String| UserCandidate {
            user_id: user_id.to_owned(),
            email,
            name,
            active: active.get(user_id).copied().unwrap_or(false),
            choice: choices.get(user_id).copied(),
            service_access: true,
        };
        let mut members = Vec::new();
        for user_id in &routed_members {
            if let Some((email, name)) = users.get(user_id) {
                members.push(candidate(user_id, email.clone(), name.clone()));
            }
        }
        let mut user_extras = Vec::new();
        let mut plain = Vec::new();
        for e in &r.extras {
            if e.user_id.is_empty() {
                plain.push(PlainExtra {
                    email: e.email.trim().to_owned(),
                    name: e.name.clone(),
                });
            } else {
                let user_id = ids::parse_id("x", &e.user_id).unwrap_or_default();
                let name = users
                    .get(&user_id)
                    .map(|(_, n)| n.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| e.name.clone());
                user_extras.push(candidate(&user_id, e.email.trim().to_owned(), name));
            }
        }
        if !r.service.is_empty() {
            for u in members.iter_mut().chain(user_extras.iter_mut()) {
                if !u.active {
                    continue;
                }
                let allowed = match access.get(&u.user_id) {
                    Some(a) => *a,
                    None => {
                        let a = d.service_access(&r.account, &u.user_id, &r.service).await?;
                        access.insert(u.user_id.clone(), a);
                        a
                    }
                };
                u.service_access = allowed;
            }
        }
        Ok(routing::resolve_with(
            r.category,
            &r.contact_roles,
            &contact_candidates,
            &members,
            &user_extras,
            &plain,
        ))
    }

    pub(super) async fn resolve_recipients_impl(
        &self,
        r: pb::ResolveRecipientsRequest,
    ) -> Result<Response<pb::ResolveRecipientsResponse>, Status> {
        let mut v = Violations::default();
        let routing = check_routing(
            &mut v,
            &r.account_id,
            r.category,
            &r.service_id,
            r.extra_recipients,
            &r.contact_roles,
        );
        v.finish()?;
        let routing = routing.ok_or_else(|| Error::invalid_field("account_id", "required"))?;
        let resolution = self.resolve(&routing).await?;
        Ok(Response::new(pb::ResolveRecipientsResponse {
            recipients: resolution
                .recipients
                .into_iter()
                .map(recipient_to_proto)
                .collect(),
            excluded: resolution
                .excluded
                .into_iter()
                .map(excluded_to_proto)
                .collect(),
        }))
    }

    pub(super) async fn notify_impl(
        &self,
        r: pb::NotifyRequest,
    ) -> Result<Response<pb::NotifyResponse>, Status> {
        let mut v = Violations::default();
        outbox::check_key(&mut v, &r.request_id);
        let template = Template::from_i32(r.template);
        v.check(
            template.is_some(),
            "template",
            "required: a known MessageTemplate",
        );
        let data = sorted(r.template_data);
        let missing = outbox::check_data(&mut v, template, &data);
        let hash = outbox::content_hash(&(
            "notify",
            &r.account_id,
            r.category,
            r.template,
            &data,
            &r.service_id,
            r.extra_recipients
                .iter()
                .map(|e| (&e.user_id, &e.email, &e.name))
                .collect::<Vec<_>>(),
        ));
        // Hashed only when set, so keys of calls made before the field
        // existed still match their retries.
        let hash = if r.contact_roles.is_empty() {
            hash
        } else {
            outbox::content_hash(&(hash, &r.contact_roles))
        };
        let routing = check_routing(
            &mut v,
            &r.account_id,
            r.category,
            &r.service_id,
            r.extra_recipients,
            &r.contact_roles,
        );
        v.finish()?;
        if let Some(e) = missing {
            return Err(e.into());
        }
        let (Some(routing), Some(template)) = (routing, template) else {
            return Err(Error::invalid_field("template", "required").into());
        };
        if let Some(earlier) = self.outbox.earlier(&r.request_id, &hash).await? {
            return Ok(Response::new(pb::NotifyResponse {
                messages: earlier.messages.into_iter().map(message_to_proto).collect(),
                duplicate: true,
                excluded: Vec::new(),
            }));
        }
        let resolution = self.resolve(&routing).await?;
        let to: Vec<Address> = resolution
            .recipients
            .iter()
            .map(|rcpt| Address {
                email: rcpt.email.clone(),
                name: rcpt.name.clone(),
            })
            .collect();
        let email = Email {
            template,
            data: data.clone(),
            account_id: routing.account.clone(),
            category: routing.category as i32,
        };
        let messages = self.outbox.render(&email, &to)?;
        let queued = self.outbox.enqueue(&r.request_id, &hash, messages).await?;
        let excluded = if queued.duplicate {
            Vec::new()
        } else {
            resolution
                .excluded
                .into_iter()
                .map(excluded_to_proto)
                .collect()
        };
        Ok(Response::new(pb::NotifyResponse {
            messages: queued.messages.into_iter().map(message_to_proto).collect(),
            duplicate: queued.duplicate,
            excluded,
        }))
    }
}

fn recipient_to_proto(r: routing::Recipient) -> pb::Recipient {
    pb::Recipient {
        email: r.email,
        name: r.name,
        reasons: r
            .reasons
            .into_iter()
            .map(|reason| match reason {
                Reason::ContactRole { contact_id, role } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::ContactRole as i32,
                    contact_id,
                    contact_role: role as i32,
                    user_id: String::new(),
                },
                Reason::UserPreference { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::UserPreference as i32,
                    user_id,
                    ..Default::default()
                },
                Reason::Mandatory { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::Mandatory as i32,
                    user_id,
                    ..Default::default()
                },
                Reason::ExtraRecipient { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::ExtraRecipient as i32,
                    user_id: user_id.unwrap_or_default(),
                    ..Default::default()
                },
            })
            .collect(),
    }
}

fn excluded_to_proto(e: routing::Excluded) -> pb::ExcludedRecipient {
    pb::ExcludedRecipient {
        email: e.email,
        contact_id: e.contact_id.unwrap_or_default(),
        user_id: e.user_id.unwrap_or_default(),
        reason: match e.reason {
            Exclusion::ContactEmailUnverified => pb::ExclusionReason::ContactEmailUnverified,
            Exclusion::CategoryDisabled => pb::ExclusionReason::CategoryDisabled,
            Exclusion::MemberNotActive => pb::ExclusionReason::MemberNotActive,
            Exclusion::NoServiceAccess => pb::ExclusionReason::NoServiceAccess,
        } as i32,
    }
}
