//! A support server on its own database, with fake peers, and clients for
//! members of each scope and for staff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tenancy_proto::identity as ipb;
use tenancy_proto::support::{
    self as pb, support_service_client::SupportServiceClient,
    support_staff_service_client::SupportStaffServiceClient,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::error::reason_of;
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::{Caller, Role, Running, TestDatabase, TokenKind};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::fakes::{FakeAccount, FakeContacts, FakeIdentity, Scope};

pub type Customer = SupportServiceClient<InterceptedService<Channel, Caller>>;
pub type Staff = SupportStaffServiceClient<InterceptedService<Channel, Caller>>;

/// An account with an owner and managers of each scope, two services
/// (`s1` selected for the SELECTED member, `s2` not), and a staff user.
pub struct World {
    #[allow(dead_code)]
    pub server: Running,
    pub channel: Channel,
    pub clock: ManualClock,
    pub account: FakeAccount,
    pub identity: FakeIdentity,
    pub contacts: FakeContacts,
    pub account_id: String,
    pub owner: String,
    pub all: String,
    pub selected: String,
    pub none: String,
    pub outsider: String,
    pub staff_user: String,
    pub s1: String,
    pub s2: String,
}

pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn user(id: &str, name: &str, staff: bool) -> ipb::User {
    ipb::User {
        id: id.to_owned(),
        email: format!("{name}@example.com"),
        name: name.to_owned(),
        staff,
        ..Default::default()
    }
}

impl World {
    pub async fn new(label: &str) -> Self {
        let db = TestDatabase::new(label).await;
        let clock = ManualClock::starting_now();
        let account = FakeAccount {
            state: Default::default(),
            clock: clock.clone(),
        };
        let identity = FakeIdentity::default();
        let contacts = FakeContacts::default();
        let (account_url, identity_url, contacts_url) =
            crate::fakes::serve(account.clone(), identity.clone(), contacts.clone()).await;
        let mut config = tenancy_testkit::test_config(&db);
        config.service_mut(ServiceName::Account).url = Some(account_url);
        config.service_mut(ServiceName::Identity).url = Some(identity_url);
        config.service_mut(ServiceName::Contacts).url = Some(contacts_url);
        let context = tenancy_testkit::test_context(config, Arc::new(clock.clone()));
        let server =
            tenancy_testkit::start::<tenancy_support::SupportService>(context, clock.clone()).await;
        let channel = server.channel().await;
        let (account_id, owner, all, selected, none, outsider, staff_user, s1, s2) =
            (id(), id(), id(), id(), id(), id(), id(), id(), id());
        {
            let mut s = account.state.lock();
            let k = |u: &str| (account_id.clone(), u.to_owned());
            s.members.insert(k(&owner), Scope::Owner);
            s.members.insert(k(&all), Scope::All);
            s.members
                .insert(k(&selected), Scope::Selected(HashSet::from([s1.clone()])));
            s.members.insert(k(&none), Scope::None);
        }
        {
            let mut s = identity.state.lock();
            for (u, name, staff) in [
                (&owner, "owner", false),
                (&all, "all", false),
                (&selected, "selected", false),
                (&none, "none", false),
                (&outsider, "outsider", false),
                (&staff_user, "staff", true),
            ] {
                s.users.insert(u.clone(), user(u, name, staff));
            }
        }
        Self {
            server,
            channel,
            clock,
            account,
            identity,
            contacts,
            account_id,
            owner,
            all,
            selected,
            none,
            outsider,
            staff_user,
            s1,
            s2,
        }
    }

    /// A SupportService client for `user` in the account as MANAGER (OWNER
    /// for the owner).
    pub fn customer(&self, user: &str) -> Customer {
        let role = if user == self.owner {
            Role::Owner
        } else {
            Role::Manager
        };
        let principal = tenancy_testkit::member(user, &self.account_id, role);
        SupportServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }

    fn staff_principal(&self, account: Option<&str>) -> Principal {
        Principal {
            user_id: Some(self.staff_user.clone()),
            account_id: account.map(str::to_owned),
            staff: true,
            token_kind: TokenKind::Portal,
            session_id: Some("staff-session".to_owned()),
            request_id: id(),
            ..Principal::default()
        }
    }

    /// A SupportStaffService client for the staff user.
    pub fn staff(&self) -> Staff {
        SupportStaffServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(self.staff_principal(None), Arc::new(self.clock.clone())),
        )
    }

    /// A SupportService client for the staff user with the account
    /// selected (the "or staff" methods).
    pub fn staff_as_customer_api(&self) -> Customer {
        SupportServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(
                self.staff_principal(Some(&self.account_id)),
                Arc::new(self.clock.clone()),
            ),
        )
    }

    /// Grants support access for `d`.
    pub fn grant(&self, d: Duration) {
        let expiry = self.clock.now_ms() + i64::try_from(d.as_millis()).unwrap();
        self.account
            .state
            .lock()
            .grants
            .insert(self.account_id.clone(), expiry);
    }

    /// Creates a ticket as `user` about `service` (None: general).
    pub async fn ticket(&self, user: &str, service: Option<&str>) -> pb::Ticket {
        self.customer(user)
            .create_ticket(create(service))
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap()
    }
}

trait NowMs {
    fn now_ms(&self) -> i64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> i64 {
        use tenancy_runtime::Clock as _;
        self.now().millis()
    }
}

pub fn create(service: Option<&str>) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        subject: "Server does not boot".to_owned(),
        body: "It hangs at <b>GRUB</b>.".to_owned(),
        service_id: service.unwrap_or_default().to_owned(),
        priority: pb::TicketPriority::High as i32,
        category: pb::TicketCategory::Technical as i32,
        ..Default::default()
    }
}

/// Asserts a gRPC code and ErrorInfo reason.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
}
