//! Accounts: create, list mine, get, update.

use serde::{Deserialize, Serialize};
use tenancy_proto::account as pb;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{
    AccountId, UserId, decode_page_token_for, encode_page_token, page_size,
};
use tenancy_runtime::{Error, Reason};

use super::{Api, fingerprint, mask_paths, ts};
use crate::app::accounts as app;
use crate::domain::{AccountError, Role, Scope, ServiceAccess, validate};
use crate::store::{self, AccountRow, UserMembership};

/// A stored postal address.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Address {
    lines: Vec<String>,
    city: String,
    postal_code: String,
    region: String,
    country_code: String,
}

fn address_pb(json: &str) -> Option<pb::PostalAddress> {
    let a: Address = serde_json::from_str(json).ok()?;
    if a == Address::default() {
        return None;
    }
    Some(pb::PostalAddress {
        lines: a.lines,
        city: a.city,
        postal_code: a.postal_code,
        region: a.region,
        country_code: a.country_code,
    })
}

pub(crate) fn account_pb(a: &AccountRow) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        r#type: a.account_type,
        name: a.name.clone(),
        legal_name: a.legal_name.clone(),
        country_code: a.country_code.clone(),
        vat_number: a.vat_number.clone(),
        registration_number: a.registration_number.clone(),
        address: address_pb(&a.address_json),
        create_time: Some(ts(a.create_time)),
        update_time: Some(ts(a.update_time)),
    }
}

/// Validates the fields named in `paths` of `input` into `row`.
fn apply(row: &mut AccountRow, input: &pb::Account, paths: &[String], v: &mut Violations) {
    let has = |p: &str| paths.iter().any(|x| x == p);
    if has("type") {
        if input.r#type == pb::AccountType::Individual as i32
            || input.r#type == pb::AccountType::Company as i32
        {
            row.account_type = input.r#type;
        } else {
            v.add("account.type", "must be INDIVIDUAL or COMPANY");
        }
    }
    if has("name")
        && let Some(x) = v.take("account.name", validate::text(&input.name, 1, 100))
    {
        row.name = x;
    }
    if has("legal_name")
        && let Some(x) = v.take(
            "account.legal_name",
            validate::text(&input.legal_name, 0, 200),
        )
    {
        row.legal_name = x;
    }
    if has("country_code")
        && let Some(x) = v.take(
            "account.country_code",
            validate::country_code(&input.country_code),
        )
    {
        row.country_code = x;
    }
    if has("vat_number")
        && let Some(x) = v.take(
            "account.vat_number",
            validate::vat_number(&input.vat_number),
        )
    {
        row.vat_number = x;
    }
    if has("registration_number")
        && let Some(x) = v.take(
            "account.registration_number",
            validate::text(&input.registration_number, 0, 64),
        )
    {
        row.registration_number = x;
    }
    let mut address: Address = serde_json::from_str(&row.address_json).unwrap_or_default();
    let given = input.address.clone().unwrap_or_default();
    let whole = has("address");
    let mut touched = false;
    if whole || has("address.lines") {
        touched = true;
        let limit = super::at_most(
            "account.address.lines",
            given.lines.len(),
            super::limits::ADDRESS_LINES,
        );
        let within = v.take("account.address.lines", limit).is_some();
        if given.lines.is_empty() {
            v.add("account.address.lines", "1 to 3 lines");
        }
        let mut lines = Vec::new();
        let given_lines = if within { &given.lines[..] } else { &[] };
        for (k, line) in given_lines.iter().enumerate() {
            if let Some(l) = v.take(
                &format!("account.address.lines[{k}]"),
                validate::text(line, 1, 200),
            ) {
                lines.push(l);
            }
        }
        address.lines = lines;
    }
    if whole || has("address.city") {
        touched = true;
        if let Some(x) = v.take("account.address.city", validate::text(&given.city, 1, 100)) {
            address.city = x;
        }
    }
    if whole || has("address.postal_code") {
        touched = true;
        if let Some(x) = v.take(
            "account.address.postal_code",
            validate::text(&given.postal_code, 0, 20),
        ) {
            address.postal_code = x;
        }
    }
    if whole || has("address.region") {
        touched = true;
        if let Some(x) = v.take(
            "account.address.region",
            validate::text(&given.region, 0, 100),
        ) {
            address.region = x;
        }
    }
    if whole || has("address.country_code") {
        touched = true;
        if let Some(x) = v.take(
            "account.address.country_code",
            validate::country_code(&given.country_code),
        ) {
            address.country_code = x;
        }
    }
    if touched {
        row.address_json = serde_json::to_string(&address).unwrap_or_default();
    }
    if row.account_type == pb::AccountType::Company as i32 && row.legal_name.is_empty() {
        v.add("account.legal_name", "required for COMPANY accounts");
    }
    if row.account_type == pb::AccountType::Individual as i32
        && !row.registration_number.is_empty()
        && has("registration_number")
    {
        v.add(
            "account.registration_number",
            "must be empty for INDIVIDUAL accounts",
        );
    }
}

const ACCOUNT_PATHS: &[&str] = &[
    "type",
    "name",
    "legal_name",
    "country_code",
    "vat_number",
    "registration_number",
    "address",
    "address.lines",
    "address.city",
    "address.postal_code",
    "address.region",
    "address.country_code",
];

#[derive(Serialize, Deserialize)]
struct MyAccountsCursor {
    name: String,
    id: String,
}

#[derive(Serialize, Deserialize)]
struct MyAccountsToken {
    f: String,
    c: MyAccountsCursor,
}

impl Api {
    pub(super) async fn do_create_account(
        &self,
        request: tonic::Request<pb::CreateAccountRequest>,
    ) -> Result<pb::CreateAccountResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let user_id = UserId::trusted(principal.user()?);
        let req = request.into_inner();
        let input = req.account.unwrap_or_default();
        let now = self.now();
        let mut row = AccountRow {
            id: AccountId::new(),
            account_type: 0,
            name: String::new(),
            legal_name: String::new(),
            country_code: String::new(),
            vat_number: String::new(),
            registration_number: String::new(),
            address_json: serde_json::to_string(&Address::default()).unwrap_or_default(),
            created_by: user_id.to_string(),
            create_time: now,
            update_time: now,
            enforce_mfa: false,
            mfa_grace_ms: 0,
            enforce_mfa_time: None,
            ip_allowlist_json: "[]".to_owned(),
            security_update_time: None,
            security_update_user: String::new(),
            server_credential_delivery: pb::ServerCredentialDelivery::None as i32,
        };
        let mut paths: Vec<String> = [
            "type",
            "name",
            "legal_name",
            "country_code",
            "vat_number",
            "registration_number",
        ]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
        if input.address.is_some() {
            paths.push("address".to_owned());
        }
        let mut v = Violations::default();
        if req.request_id.chars().count() > 64 {
            v.add("request_id", "at most 64 characters");
        }
        apply(&mut row, &input, &paths, &mut v);
        v.finish()?;
        let request_hash = fingerprint(&(
            &row.account_type,
            &row.name,
            &row.legal_name,
            &row.country_code,
            &row.vat_number,
            &row.registration_number,
            &row.address_json,
        ));
        // The creator's profile, for sorting members; best effort.
        let me = self.users_or_empty(std::slice::from_ref(&user_id)).await;
        let me = me.get(&user_id);
        let request = (!req.request_id.is_empty())
            .then_some((req.request_id.as_str(), request_hash.as_str()));
        let created = app::create_account(self, &principal, &user_id, row, me, request).await?;
        let member = if created.fresh {
            let scope = Scope {
                portal_access: true,
                service_access: ServiceAccess::All,
                ..Scope::default()
            };
            self.member_pb(&created.owner, &scope, me, Some(&created.account))
        } else {
            self.render_member(&created.owner).await?
        };
        Ok(pb::CreateAccountResponse {
            account: Some(account_pb(&created.account)),
            member: Some(member),
        })
    }

    /// ListUserMemberships (operator): every membership of a user, any
    /// status, by account name, at most [`MAX_USER_MEMBERSHIPS`].
    pub(super) async fn do_list_user_memberships(
        &self,
        req: pb::ListUserMembershipsRequest,
    ) -> Result<pb::ListUserMembershipsResponse, Error> {
        let user_id = UserId::parse("user_id", &req.user_id).map_err(|e| Error {
            reason: Reason::UserIdInvalid,
            ..e
        })?;
        let rows = store::user_memberships(&self.db, &user_id, MAX_USER_MEMBERSHIPS).await?;
        let users = self.users_or_empty(std::slice::from_ref(&user_id)).await;
        let has_mfa = users.get(&user_id).is_some_and(|u| u.totp_enabled);
        Ok(pb::ListUserMembershipsResponse {
            memberships: rows
                .iter()
                .map(|row| account_membership(row, has_mfa))
                .collect(),
        })
    }

    pub(super) async fn do_list_my_accounts(
        &self,
        request: tonic::Request<pb::ListMyAccountsRequest>,
    ) -> Result<pb::ListMyAccountsResponse, Error> {
        let principal = tenancy_runtime::server::principal(&request)?.clone();
        let user_id = UserId::trusted(principal.user()?);
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let f = fingerprint(&"my_accounts");
        let cursor =
            decode_page_token_for::<MyAccountsToken>(&req.page_token, |t| t.f == f)?.map(|t| t.c);
        let after = cursor.as_ref().map(|c| (c.name.as_str(), c.id.as_str()));
        let rows = store::current_memberships(&self.db, &user_id, after, size + 1).await?;
        let more = rows.len() as u64 > size;
        let me = self.users_or_empty(std::slice::from_ref(&user_id)).await;
        let has_mfa = me.get(&user_id).is_some_and(|u| u.totp_enabled);
        let mut memberships = Vec::new();
        let mut last = None;
        for row in rows
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
        {
            let membership = account_membership(row, has_mfa);
            if let Some(account) = &membership.account {
                last = Some(MyAccountsCursor {
                    name: account.name.clone(),
                    id: account.id.clone(),
                });
            }
            memberships.push(membership);
        }
        let next_page_token = match (more, last) {
            (true, Some(c)) => encode_page_token(&MyAccountsToken { f, c }),
            _ => String::new(),
        };
        Ok(pb::ListMyAccountsResponse {
            memberships,
            next_page_token,
        })
    }

    pub(super) async fn do_get_account(
        &self,
        request: tonic::Request<pb::GetAccountRequest>,
    ) -> Result<pb::GetAccountResponse, Error> {
        let caller = self.caller(&request, Role::Manager).await?;
        let account = AccountRow::load(&self.db, &caller.account_id)
            .await?
            .ok_or(AccountError::AccountNotFound)?;
        Ok(pb::GetAccountResponse {
            account: Some(account_pb(&account)),
        })
    }

    pub(super) async fn do_update_account(
        &self,
        request: tonic::Request<pb::UpdateAccountRequest>,
    ) -> Result<pb::UpdateAccountResponse, Error> {
        // Managers too: every path is the account's profile (seed 004: full
        // access but for users); security and support access are elsewhere.
        let caller = self.caller(&request, Role::Manager).await?;
        let req = request.into_inner();
        let paths = mask_paths(req.update_mask.as_ref(), ACCOUNT_PATHS)?;
        let input = req.account.unwrap_or_default();
        if !input.id.is_empty() && input.id != caller.account_id.as_str() {
            return Err(Error::invalid_field(
                "account.id",
                "must be empty or the selected account's id",
            ));
        }
        let row = app::update_account(self, &caller.principal, &caller.account_id, |row| {
            let mut v = Violations::default();
            apply(row, &input, &paths, &mut v);
            v.finish()
        })
        .await?;
        Ok(pb::UpdateAccountResponse {
            account: Some(account_pb(&row)),
        })
    }
}

/// Most memberships ListUserMemberships returns.
const MAX_USER_MEMBERSHIPS: u64 = 1000;

/// A membership as the API shows it; the 2FA deadline only while it
/// applies (enforced, and the user has no 2FA).
fn account_membership(m: &UserMembership, has_mfa: bool) -> pb::AccountMembership {
    pb::AccountMembership {
        account: Some(pb::AccountSummary {
            id: m.account_id.clone(),
            r#type: m.account_type,
            name: m.account_name.clone(),
        }),
        role: m.role,
        status: m.status,
        portal_access: m.portal_access,
        join_time: Some(ts(m.join_time)),
        enforce_mfa: m.enforce_mfa,
        mfa_deadline: if m.enforce_mfa && !has_mfa {
            m.mfa_deadline.map(ts)
        } else {
            None
        },
    }
}
