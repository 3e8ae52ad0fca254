//! Typed rows of the account tables.

use sea_orm::{ConnectionTrait, QueryResult, Value};
use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, ServiceId, UserId};

use tenancy_runtime::db::{Flag, exec, get, one, stored};

use super::{i, n, oi, os, s};
use crate::domain::access::MemberFacts;
use crate::domain::members::CallerFacts;
use crate::domain::owners::OwnerFacts;
use crate::domain::{MemberStatus, Role, ServiceAccess};

/// Reads an enum column stored as its code; an unknown code is a corrupt
/// row (INTERNAL).
pub fn coded<T>(r: &QueryResult, col: &str, from_code: fn(i32) -> Option<T>) -> Result<T, Error> {
    stored(col, get(r, col)?, from_code)
}

/// `account_members.kind` of a person (`MemberKind` PERSON).
const MEMBER_KIND_PERSON: i32 = 1;
/// `account_members.kind` of an API member (`MemberKind` API).
const MEMBER_KIND_API: i32 = 2;

/// A membership.
#[derive(Clone, Debug)]
pub struct MemberRow {
    /// The account.
    pub account_id: AccountId,
    /// The user.
    pub user_id: UserId,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
    /// May sign in to the account.
    pub portal_access: bool,
    /// Added without password: turning portal access on sends an invitation.
    pub password_pending: bool,
    /// Service-access mode.
    pub service_access: ServiceAccess,
    /// When they joined.
    pub join_time: i64,
    /// When role, status or scope last changed.
    pub update_time: i64,
    /// Lower-cased name at join time, for sorting.
    pub name_key: String,
    /// Email at join time, for sorting.
    pub email: String,
    /// Personal 2FA deadline while 2FA is enforced.
    pub mfa_deadline: Option<i64>,
    /// Whether the person joined through their own action (created the
    /// account or accepted an invitation to it). Until then (added with
    /// AddMember) the API shows only what the adding owner typed.
    pub accepted: bool,
    /// The id the member was first shown under: the user id, or for a
    /// member added with AddMember a stand-in made then (a user id would
    /// tell when, so whether, the email was registered). Unique in the
    /// account; never changes.
    pub alias_id: UserId,
    /// The name the adding owner typed (AddMember), or an API member's
    /// name; empty otherwise.
    pub added_name: String,
    /// Whether this is an API member (`kind` 2): no email, password or
    /// portal access, never an owner; acts through its API tokens only.
    pub api: bool,
    /// An API member's description; empty otherwise.
    pub description: String,
    /// An API member's source allowlist: normalised CIDR blocks separated
    /// by spaces; empty: anywhere.
    pub source_allowlist: String,
}

impl MemberRow {
    /// Reads a row selected with the member columns (`MEMBER_COLUMNS`).
    pub fn read(r: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            account_id: get(r, "account_id")?,
            user_id: get(r, "user_id")?,
            role: coded(r, "role", Role::from_code)?,
            status: coded(r, "status", MemberStatus::from_code)?,
            portal_access: get(r, "portal_access")?,
            password_pending: get(r, "password_pending")?,
            service_access: coded(r, "service_access", ServiceAccess::from_code)?,
            join_time: get(r, "join_time")?,
            update_time: get(r, "update_time")?,
            name_key: get(r, "name_key")?,
            email: get(r, "email")?,
            mfa_deadline: get(r, "mfa_deadline")?,
            accepted: get(r, "accepted")?,
            alias_id: get(r, "alias_id")?,
            added_name: get(r, "added_name")?,
            api: get::<i32>(r, "kind")? == MEMBER_KIND_API,
            description: get(r, "description")?,
            source_allowlist: get(r, "source_allowlist")?,
        })
    }

    /// An API member's source allowlist entries.
    pub fn source_allowlist(&self) -> Vec<String> {
        allowlist_entries(&self.source_allowlist)
    }

    /// What a gateway is told of it.
    pub fn live(&self) -> LiveMember {
        LiveMember {
            account_id: self.account_id.clone(),
            user_id: self.user_id.clone(),
            role: self.role,
            status: self.status,
            portal_access: self.portal_access,
            join_time: self.join_time,
            mfa_deadline: self.mfa_deadline,
            api: self.api,
            source_allowlist: self.source_allowlist.clone(),
        }
    }

    /// The id the API shows and addresses the member by: the user id once
    /// they accepted, the stand-in until then.
    pub fn public_id(&self) -> &UserId {
        if self.accepted {
            &self.user_id
        } else {
            &self.alias_id
        }
    }

    /// Whether the member may use the account at all: people with portal
    /// access, and API members (through their API tokens).
    fn may_use_account(&self) -> bool {
        self.portal_access || self.api
    }

    /// The facts the access decision needs.
    pub fn access_facts(&self) -> MemberFacts {
        MemberFacts {
            role: self.role,
            status: self.status,
            portal_access: self.may_use_account(),
            service_access: self.service_access,
        }
    }

    /// The facts the caller check needs.
    pub fn caller_facts(&self) -> CallerFacts {
        CallerFacts {
            role: self.role,
            status: self.status,
            portal_access: self.may_use_account(),
        }
    }

    /// The facts the last-owner rule needs.
    pub fn owner_facts(&self) -> OwnerFacts {
        OwnerFacts {
            role: self.role,
            status: self.status,
            portal_access: self.portal_access,
        }
    }

    /// Inserts the row, or replaces a REVOKED one of the same user.
    pub async fn upsert<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        exec(
            c,
            "DELETE FROM account_members WHERE account_id = $1 AND user_id = $2",
            vec![(&self.account_id).into(), (&self.user_id).into()],
        )
        .await?;
        exec(
            c,
            "INSERT INTO account_members (account_id, user_id, role, status, portal_access, password_pending, service_access, join_time, update_time, name_key, email, mfa_deadline, accepted, alias_id, added_name, kind, description, source_allowlist) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            vec![
                (&self.account_id).into(),
                (&self.user_id).into(),
                n(self.role.code()),
                n(self.status.code()),
                super::b(self.portal_access),
                super::b(self.password_pending),
                n(self.service_access.code()),
                i(self.join_time),
                i(self.update_time),
                s(self.name_key.as_str()),
                s(self.email.as_str()),
                oi(self.mfa_deadline),
                super::b(self.accepted),
                (&self.alias_id).into(),
                s(self.added_name.as_str()),
                n(if self.api { MEMBER_KIND_API } else { MEMBER_KIND_PERSON }),
                s(self.description.as_str()),
                s(self.source_allowlist.as_str()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Writes an API member's name (and sort key), description and source
    /// allowlist, and the update time.
    pub async fn update_api<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        exec(
            c,
            "UPDATE account_members SET added_name = $3, name_key = $4, description = $5, source_allowlist = $6, update_time = $7 WHERE account_id = $1 AND user_id = $2",
            vec![
                (&self.account_id).into(),
                (&self.user_id).into(),
                s(self.added_name.as_str()),
                s(self.name_key.as_str()),
                s(self.description.as_str()),
                s(self.source_allowlist.as_str()),
                i(self.update_time),
            ],
        )
        .await?;
        Ok(())
    }

    /// Writes role, status, portal access, mode, update time, deadline,
    /// acceptance and the sort keys.
    pub async fn update<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        exec(
            c,
            "UPDATE account_members SET role = $3, status = $4, portal_access = $5, password_pending = $6, service_access = $7, update_time = $8, mfa_deadline = $9, accepted = $10, name_key = $11, email = $12 WHERE account_id = $1 AND user_id = $2",
            vec![
                (&self.account_id).into(),
                (&self.user_id).into(),
                n(self.role.code()),
                n(self.status.code()),
                super::b(self.portal_access),
                super::b(self.password_pending),
                n(self.service_access.code()),
                i(self.update_time),
                oi(self.mfa_deadline),
                super::b(self.accepted),
                s(self.name_key.as_str()),
                s(self.email.as_str()),
            ],
        )
        .await?;
        Ok(())
    }
}

/// An account with its security settings.
#[derive(Clone, Debug)]
pub struct AccountRow {
    /// Id.
    pub id: AccountId,
    /// AccountType code.
    pub account_type: i32,
    /// Display name.
    pub name: String,
    /// Legal name.
    pub legal_name: String,
    /// Country.
    pub country_code: String,
    /// VAT number.
    pub vat_number: String,
    /// Registration number.
    pub registration_number: String,
    /// The address as JSON.
    pub address_json: String,
    /// Created by (user id).
    pub created_by: String,
    /// Created.
    pub create_time: i64,
    /// Details changed.
    pub update_time: i64,
    /// 2FA enforced.
    pub enforce_mfa: bool,
    /// Grace period.
    pub mfa_grace_ms: i64,
    /// When enforcement was turned on.
    pub enforce_mfa_time: Option<i64>,
    /// Normalised allowlist as JSON array of strings.
    pub ip_allowlist_json: String,
    /// Settings changed.
    pub security_update_time: Option<i64>,
    /// Settings changed by.
    pub security_update_user: String,
    /// ServerCredentialDelivery code: the default for new servers.
    pub server_credential_delivery: i32,
}

/// The entries of a stored source allowlist (separated by spaces).
fn allowlist_entries(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

/// What a gateway is told of a membership (`MembershipState`): the part
/// of a [`MemberRow`] a snapshot of every live membership reads.
#[derive(Clone, Debug)]
pub struct LiveMember {
    /// The account.
    pub account_id: AccountId,
    /// The user.
    pub user_id: UserId,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
    /// May sign in to the account.
    pub portal_access: bool,
    /// When they joined.
    pub join_time: i64,
    /// Personal 2FA deadline while 2FA is enforced.
    pub mfa_deadline: Option<i64>,
    /// Whether this is an API member.
    pub api: bool,
    /// An API member's source allowlist, as stored.
    pub source_allowlist: String,
}

/// The columns of a [`LiveMember`], in [`StoredLiveMember`]'s order.
pub const LIVE_MEMBER_COLUMNS: &str = "account_id, user_id, role, status, portal_access, join_time, mfa_deadline, kind, source_allowlist";

/// A [`LiveMember`] as a bulk page holds it, its codes not yet checked.
#[derive(serde::Deserialize)]
pub struct StoredLiveMember(
    AccountId,
    UserId,
    i32,
    i32,
    Flag,
    i64,
    Option<i64>,
    i32,
    String,
);

impl TryFrom<StoredLiveMember> for LiveMember {
    type Error = Error;

    fn try_from(m: StoredLiveMember) -> Result<Self, Error> {
        let StoredLiveMember(
            account_id,
            user_id,
            role,
            status,
            portal_access,
            join_time,
            mfa_deadline,
            kind,
            source_allowlist,
        ) = m;
        Ok(Self {
            account_id,
            user_id,
            role: stored("role", role, Role::from_code)?,
            status: stored("status", status, MemberStatus::from_code)?,
            portal_access: portal_access.0,
            join_time,
            mfa_deadline,
            api: kind == MEMBER_KIND_API,
            source_allowlist,
        })
    }
}

impl LiveMember {
    /// An API member's source allowlist entries.
    pub fn source_allowlist(&self) -> Vec<String> {
        allowlist_entries(&self.source_allowlist)
    }
}

/// An account's security settings, what gateways are told of it: the part
/// of an [`AccountRow`] a snapshot of every account reads.
#[derive(Clone, Debug)]
pub struct AccountSettings {
    /// The account.
    pub id: AccountId,
    /// 2FA enforced.
    pub enforce_mfa: bool,
    /// Grace period.
    pub mfa_grace_ms: i64,
    /// When enforcement was turned on.
    pub enforce_mfa_time: Option<i64>,
    /// Normalised allowlist as JSON array of strings.
    pub ip_allowlist_json: String,
    /// Settings changed.
    pub security_update_time: Option<i64>,
    /// Settings changed by.
    pub security_update_user: String,
    /// ServerCredentialDelivery code: the default for new servers.
    pub server_credential_delivery: i32,
}

/// The columns of [`AccountSettings`], in [`StoredSettings`]' order.
pub const SETTINGS_COLUMNS: &str = "id, enforce_mfa, mfa_grace_ms, enforce_mfa_time, ip_allowlist_json, security_update_time, security_update_user, server_credential_delivery";

/// [`AccountSettings`] as a bulk page holds them.
#[derive(serde::Deserialize)]
pub struct StoredSettings(
    AccountId,
    Flag,
    i64,
    Option<i64>,
    String,
    Option<i64>,
    String,
    i32,
);

impl From<StoredSettings> for AccountSettings {
    fn from(s: StoredSettings) -> Self {
        let StoredSettings(
            id,
            enforce_mfa,
            mfa_grace_ms,
            enforce_mfa_time,
            ip_allowlist_json,
            security_update_time,
            security_update_user,
            server_credential_delivery,
        ) = s;
        Self {
            id,
            enforce_mfa: enforce_mfa.0,
            mfa_grace_ms,
            enforce_mfa_time,
            ip_allowlist_json,
            security_update_time,
            security_update_user,
            server_credential_delivery,
        }
    }
}

/// The SELECT list of account rows.
pub const ACCOUNT_COLUMNS: &str = "id, account_type, name, legal_name, country_code, vat_number, registration_number, address_json, created_by, create_time, update_time, enforce_mfa, mfa_grace_ms, enforce_mfa_time, ip_allowlist_json, security_update_time, security_update_user, server_credential_delivery";

impl AccountRow {
    /// Reads a row selected with [`ACCOUNT_COLUMNS`].
    pub fn read(r: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            id: get(r, "id")?,
            account_type: get(r, "account_type")?,
            name: get(r, "name")?,
            legal_name: get(r, "legal_name")?,
            country_code: get(r, "country_code")?,
            vat_number: get(r, "vat_number")?,
            registration_number: get(r, "registration_number")?,
            address_json: get(r, "address_json")?,
            created_by: get(r, "created_by")?,
            create_time: get(r, "create_time")?,
            update_time: get(r, "update_time")?,
            enforce_mfa: get(r, "enforce_mfa")?,
            mfa_grace_ms: get(r, "mfa_grace_ms")?,
            enforce_mfa_time: get(r, "enforce_mfa_time")?,
            ip_allowlist_json: get(r, "ip_allowlist_json")?,
            security_update_time: get(r, "security_update_time")?,
            security_update_user: get(r, "security_update_user")?,
            server_credential_delivery: get(r, "server_credential_delivery")?,
        })
    }

    /// Its security settings.
    pub fn settings(&self) -> AccountSettings {
        AccountSettings {
            id: self.id.clone(),
            enforce_mfa: self.enforce_mfa,
            mfa_grace_ms: self.mfa_grace_ms,
            enforce_mfa_time: self.enforce_mfa_time,
            ip_allowlist_json: self.ip_allowlist_json.clone(),
            security_update_time: self.security_update_time,
            security_update_user: self.security_update_user.clone(),
            server_credential_delivery: self.server_credential_delivery,
        }
    }

    /// Loads an account.
    pub async fn load<C: ConnectionTrait>(c: &C, id: &AccountId) -> Result<Option<Self>, Error> {
        let row = one(
            c,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM account_accounts WHERE id = $1"),
            vec![id.into()],
        )
        .await?;
        row.map(|r| Self::read(&r)).transpose()
    }

    /// The values of the columns an update writes, as `$1` (the id) to
    /// `$16`, in the order of [`Self::update`]'s statement.
    fn written_values(&self) -> Vec<Value> {
        vec![
            s(self.id.as_str()),
            n(self.account_type),
            s(self.name.as_str()),
            s(self.legal_name.as_str()),
            s(self.country_code.as_str()),
            s(self.vat_number.as_str()),
            s(self.registration_number.as_str()),
            s(self.address_json.as_str()),
            i(self.update_time),
            super::b(self.enforce_mfa),
            i(self.mfa_grace_ms),
            oi(self.enforce_mfa_time),
            s(self.ip_allowlist_json.as_str()),
            oi(self.security_update_time),
            s(self.security_update_user.as_str()),
            n(self.server_credential_delivery),
        ]
    }

    /// Inserts a new account.
    pub async fn insert<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        let mut values = self.written_values();
        values.extend([s(self.created_by.as_str()), i(self.create_time)]);
        exec(
            c,
            "INSERT INTO account_accounts (id, account_type, name, legal_name, country_code, vat_number, registration_number, address_json, update_time, enforce_mfa, mfa_grace_ms, enforce_mfa_time, ip_allowlist_json, security_update_time, security_update_user, server_credential_delivery, created_by, create_time, lock_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0)",
            values,
        )
        .await?;
        Ok(())
    }

    /// Writes the details and settings back.
    pub async fn update<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        exec(
            c,
            "UPDATE account_accounts SET account_type = $2, name = $3, legal_name = $4, country_code = $5, vat_number = $6, registration_number = $7, address_json = $8, update_time = $9, enforce_mfa = $10, mfa_grace_ms = $11, enforce_mfa_time = $12, ip_allowlist_json = $13, security_update_time = $14, security_update_user = $15, server_credential_delivery = $16 WHERE id = $1",
            self.written_values(),
        )
        .await?;
        Ok(())
    }
}

/// An audit event to write.
#[derive(Clone, Debug, Default)]
pub struct AuditRow {
    /// Id.
    pub id: String,
    /// Account.
    pub account_id: String,
    /// When.
    pub time: i64,
    /// ActorKind code.
    pub actor_kind: i32,
    /// Actor id.
    pub actor_id: String,
    /// Actor display name.
    pub actor_display_name: String,
    /// TokenKind code.
    pub token_kind: i32,
    /// Client address.
    pub client_ip: String,
    /// User agent.
    pub user_agent: String,
    /// Action.
    pub action: String,
    /// Target type.
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// Before, JSON object.
    pub before: Option<String>,
    /// After, JSON object.
    pub after: Option<String>,
    /// Request id.
    pub request_id: String,
}

/// The SELECT list of audit rows.
pub const AUDIT_COLUMNS: &str = "id, account_id, event_time, actor_kind, actor_id, actor_display_name, token_kind, client_ip, user_agent, action, target_type, target_id, before_json, after_json, request_id";

impl AuditRow {
    /// Reads a row selected with [`AUDIT_COLUMNS`] (see [`audit_event`]).
    pub fn read(r: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            id: get(r, "id")?,
            account_id: get(r, "account_id")?,
            time: get(r, "event_time")?,
            actor_kind: get(r, "actor_kind")?,
            actor_id: get(r, "actor_id")?,
            actor_display_name: get(r, "actor_display_name")?,
            token_kind: get(r, "token_kind")?,
            client_ip: get(r, "client_ip")?,
            user_agent: get(r, "user_agent")?,
            action: get(r, "action")?,
            target_type: get(r, "target_type")?,
            target_id: get(r, "target_id")?,
            before: get(r, "before_json")?,
            after: get(r, "after_json")?,
            request_id: get(r, "request_id")?,
        })
    }

    /// Appends the event.
    pub async fn insert<C: ConnectionTrait>(&self, c: &C) -> Result<(), Error> {
        exec(
            c,
            "INSERT INTO account_audit_events (id, account_id, event_time, actor_kind, actor_id, actor_display_name, token_kind, client_ip, user_agent, action, target_type, target_id, before_json, after_json, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            vec![
                s(self.id.as_str()),
                s(self.account_id.as_str()),
                i(self.time),
                n(self.actor_kind),
                s(self.actor_id.as_str()),
                s(self.actor_display_name.as_str()),
                n(self.token_kind),
                s(self.client_ip.as_str()),
                s(self.user_agent.as_str()),
                s(self.action.as_str()),
                s(self.target_type.as_str()),
                s(self.target_id.as_str()),
                os(self.before.clone()),
                os(self.after.clone()),
                s(self.request_id.as_str()),
            ],
        )
        .await?;
        Ok(())
    }
}

/// A catalogue entry.
#[derive(Clone, Debug)]
pub struct ServiceRow {
    /// Id.
    pub id: ServiceId,
    /// Account.
    pub account_id: AccountId,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Billing's reference.
    pub external_id: Option<String>,
    /// Registered.
    pub create_time: i64,
    /// Changed.
    pub update_time: i64,
    /// `ResourceKind` code (server, storage, other).
    pub resource_kind: i32,
}

/// The SELECT list of service rows.
pub const SERVICE_COLUMNS: &str =
    "id, account_id, kind, name, tags_json, external_id, create_time, update_time, resource_kind";

impl ServiceRow {
    /// Reads a row selected with [`SERVICE_COLUMNS`].
    pub fn read(r: &QueryResult) -> Result<Self, Error> {
        let tags: String = get(r, "tags_json")?;
        Ok(Self {
            id: get(r, "id")?,
            account_id: get(r, "account_id")?,
            kind: get(r, "kind")?,
            name: get(r, "name")?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            external_id: get(r, "external_id")?,
            create_time: get(r, "create_time")?,
            update_time: get(r, "update_time")?,
            resource_kind: get(r, "resource_kind")?,
        })
    }

    /// Loads a service.
    pub async fn load<C: ConnectionTrait>(c: &C, id: &ServiceId) -> Result<Option<Self>, Error> {
        let row = one(
            c,
            &format!("SELECT {SERVICE_COLUMNS} FROM account_services WHERE id = $1"),
            vec![id.into()],
        )
        .await?;
        row.map(|r| Self::read(&r)).transpose()
    }

    /// Inserts or rewrites the service and its tag rows.
    pub async fn save<C: ConnectionTrait>(&self, c: &C, insert: bool) -> Result<(), Error> {
        let tags = serde_json::to_string(&self.tags).map_err(Error::internal)?;
        if insert {
            exec(
                c,
                "INSERT INTO account_services (id, account_id, kind, name, tags_json, external_id, create_time, update_time, resource_kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    s(self.id.as_str()),
                    s(self.account_id.as_str()),
                    s(self.kind.as_str()),
                    s(self.name.as_str()),
                    s(tags),
                    os(self.external_id.clone()),
                    i(self.create_time),
                    i(self.update_time),
                    n(self.resource_kind),
                ],
            )
            .await?;
        } else {
            exec(
                c,
                "UPDATE account_services SET kind = $2, name = $3, tags_json = $4, external_id = $5, update_time = $6, resource_kind = $7 WHERE id = $1",
                vec![
                    s(self.id.as_str()),
                    s(self.kind.as_str()),
                    s(self.name.as_str()),
                    s(tags),
                    os(self.external_id.clone()),
                    i(self.update_time),
                    n(self.resource_kind),
                ],
            )
            .await?;
            exec(
                c,
                "DELETE FROM account_service_tags WHERE service_id = $1",
                vec![s(self.id.as_str())],
            )
            .await?;
        }
        for tag in &self.tags {
            exec(
                c,
                "INSERT INTO account_service_tags (service_id, account_id, tag) VALUES ($1, $2, $3)",
                vec![s(self.id.as_str()), s(self.account_id.as_str()), s(tag.as_str())],
            )
            .await?;
        }
        Ok(())
    }
}

/// One audit event.
pub async fn audit_event<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<AuditRow>, Error> {
    one(
        c,
        &format!("SELECT {AUDIT_COLUMNS} FROM account_audit_events WHERE id = $1"),
        vec![s(id)],
    )
    .await?
    .map(|r| AuditRow::read(&r))
    .transpose()
}
