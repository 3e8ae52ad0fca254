//! Phone numbers: StartPhoneVerification and ConfirmPhone (issue 17 §2).

use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::{Principal, Timestamp};

use super::App;
use crate::domain::error::IdentityError;
use crate::domain::phone::{
    CODE_LIFETIME, MAX_CODE_INPUT, MAX_CODES_PER_WINDOW, MAX_FAILURES, SEND_WINDOW, code_hash,
    masked, new_code, parse_phone,
};
use crate::peers::OutgoingPhoneCode;
use crate::store::phones::{self, PhoneCodeRow};
use crate::store::users::UserRow;

/// Why a portal session is needed.
const PORTAL_ONLY: &str = "phone numbers are changed in a portal session, not with an API token";

impl App {
    /// Replacing a verified number needs a portal session authenticated
    /// within the reauth window; giving the first one does not.
    async fn check_phone_change(&self, p: &Principal, user: &UserRow) -> Result<(), IdentityError> {
        if !user.phone.is_empty() {
            self.recent_portal_session(p, PORTAL_ONLY).await?;
        }
        Ok(())
    }

    /// StartPhoneVerification: sends a code to `phone` by SMS; returns when
    /// it expires.
    pub(crate) async fn start_phone_verification(
        &self,
        p: &Principal,
        phone: &str,
    ) -> Result<Timestamp, IdentityError> {
        let user_id = p.user()?;
        let phone = parse_phone("phone", phone)?;
        let user = self.get_user(user_id).await?;
        self.check_phone_change(p, &user).await?;
        self.send_phone_code(user_id, phone).await
    }

    /// Sends a new code for `phone` (E.164, validated) to the user by SMS,
    /// replacing any pending one: at most `MAX_CODES_PER_WINDOW` codes per
    /// user an hour (TOO_MANY_ATTEMPTS beyond); returns when it expires.
    /// For StartPhoneVerification, and for the number a sign-up gave once
    /// its email is verified.
    pub(crate) async fn send_phone_code(
        &self,
        user_id: &str,
        phone: String,
    ) -> Result<Timestamp, IdentityError> {
        let now = self.now();
        let window = i64::try_from(SEND_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let code = new_code();
        let expire = now.plus(CODE_LIFETIME);
        let tx = crate::store::begin(&self.db).await?;
        let mut row = phones::lock(&tx, user_id).await?.unwrap_or(PhoneCodeRow {
            phone: String::new(),
            code_hash: String::new(),
            expire_time: 0,
            failures: 0,
            window_start: now.millis(),
            sent_in_window: 0,
        });
        if now.millis() - row.window_start >= window {
            row.window_start = now.millis();
            row.sent_in_window = 0;
        }
        if row.sent_in_window >= MAX_CODES_PER_WINDOW {
            let left = (row.window_start + window - now.millis()).max(1000);
            return Err(IdentityError::Throttled {
                retry_after: std::time::Duration::from_millis(u64::try_from(left).unwrap_or(1000)),
            });
        }
        row.code_hash = code_hash(&self.secrets, user_id, &phone, &code);
        row.phone = phone.clone();
        row.expire_time = expire.millis();
        row.failures = 0;
        row.sent_in_window += 1;
        phones::save(&tx, user_id, &row).await?;
        tx.commit().await?;
        self.mailer
            .send_phone_code(OutgoingPhoneCode {
                idempotency_key: format!(
                    "identity:phone:{user_id}:{}",
                    tenancy_runtime::ids::new_id()
                ),
                user_id: user_id.to_owned(),
                phone,
                code,
                expire_time: expire,
            })
            .await?;
        Ok(expire)
    }

    /// ConfirmPhone: the pending number becomes the user's with the right
    /// code; a notice goes to the user's email address.
    pub(crate) async fn confirm_phone(
        &self,
        p: &Principal,
        code: &str,
        ip: &str,
    ) -> Result<UserRow, IdentityError> {
        let user_id = p.user()?;
        let user = self.get_user(user_id).await?;
        self.check_phone_change(p, &user).await?;
        let code = code.trim();
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let Some(mut row) = phones::lock(&tx, user_id).await? else {
            return Err(IdentityError::PhoneCodeInvalid);
        };
        if row.code_hash.is_empty() || row.expire_time <= now.millis() {
            return Err(IdentityError::PhoneCodeInvalid);
        }
        let matches = code.len() <= MAX_CODE_INPUT
            && tenancy_runtime::secret::constant_time_eq(
                code_hash(&self.secrets, user_id, &row.phone, code).as_bytes(),
                row.code_hash.as_bytes(),
            );
        if !matches {
            // Counted before the answer, under the row's lock: concurrent
            // guesses cannot exceed the allowance.
            row.failures += 1;
            if row.failures >= MAX_FAILURES {
                row.code_hash = String::new();
            }
            phones::save(&tx, user_id, &row).await?;
            tx.commit().await?;
            return Err(IdentityError::PhoneCodeInvalid);
        }
        row.code_hash = String::new();
        phones::save(&tx, user_id, &row).await?;
        phones::set_phone(&tx, user_id, &row.phone, now.millis()).await?;
        tx.commit().await?;
        if user.phone != row.phone {
            let previous = if user.phone.is_empty() {
                "none".to_owned()
            } else {
                masked(&user.phone)
            };
            self.security_notice(
                user_id,
                MessageTemplate::SecurityPhoneChanged,
                ip,
                &[
                    ("old_phone", previous),
                    ("new_phone", masked(&row.phone)),
                    ("security_url", self.portal_page("security")),
                ],
            )
            .await;
        }
        self.get_user(user_id).await
    }
}
