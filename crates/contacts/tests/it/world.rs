//! The contacts service with the REAL identity and account services beside
//! it (testkit's [`Acme`] fixture: each on its own database and loopback
//! port, on one clock); users, the account and its members are created
//! through their APIs as a client would.

use std::ops::{Deref, DerefMut};

use tenancy_proto::account as apb;
use tenancy_runtime::config::ServiceName;
use tenancy_testkit::{Acme, Role, TestDatabase};

use crate::support::{Env, Public};

/// Contacts with identity and account, and one account owned by `owner`
/// (dereferenced to the [`Acme`] fixture: `owner`, `account_id`, the peer
/// clients, `suspend`, `register_service`, ...).
pub struct World {
    pub env: Env,
    acme: Acme,
}

impl Deref for World {
    type Target = Acme;

    fn deref(&self) -> &Acme {
        &self.acme
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Acme {
        &mut self.acme
    }
}

impl World {
    /// Starts the three services and creates an account owned by a user
    /// with `owner_email`.
    pub async fn start(label: &str, owner_email: &str) -> Self {
        Self::start_with(label, owner_email, |_| {}).await
    }

    /// As [`World::start`], with the configuration (of every service)
    /// changed by `configure`.
    pub async fn start_with(
        label: &str,
        owner_email: &str,
        configure: impl FnOnce(&mut tenancy_runtime::config::Config),
    ) -> Self {
        let db = TestDatabase::new(label).await;
        let (acme, listener) = Acme::start(label, ServiceName::Contacts, &db, configure).await;
        let env = Env::start_on(db, acme.config().clone(), acme.clock.clone(), listener).await;
        let mut world = Self { env, acme };
        let owner = world.user(owner_email).await;
        world.acme.found_by(&owner).await;
        world
    }

    /// A user, created through identity's internal API (named after the
    /// part of `email` before the `@`).
    pub async fn user(&mut self, email: &str) -> String {
        let name = email.split('@').next().unwrap_or_default().to_owned();
        self.acme.ensure_user(email, &name).await
    }

    /// A new user made a MANAGER of the account with `service_access`, as
    /// the owner would in the portal.
    pub async fn member(&mut self, email: &str, service_access: apb::ServiceAccess) -> String {
        let user = self.user(email).await;
        self.acme.add_member(&user, service_access, &[]).await;
        user
    }

    /// Every outbox message to `email` of `template`, newest first.
    pub async fn outbox_all(
        &self,
        email: &str,
        template: tenancy_proto::contacts::MessageTemplate,
    ) -> Vec<tenancy_proto::contacts::OutboxMessage> {
        self.env
            .internal()
            .await
            .list_outbox_messages(tenancy_proto::contacts::ListOutboxMessagesRequest {
                to_email: email.into(),
                template: template as i32,
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// ContactsService as `user` with `role` in the account.
    pub async fn contacts_as(&self, user: &str, role: Role) -> Public {
        self.env.member(user, &self.account_id, role).await
    }
}
