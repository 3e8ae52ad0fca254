//! The email templates: subject, plain text and HTML for every message the
//! suite sends, rendered with minijinja (HTML autoescaped).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::Environment;

/// The templates, numbered as `tenancy.contacts.v1.MessageTemplate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    /// Confirm a user's email address.
    EmailVerification = 1,
    /// Reset a forgotten password.
    PasswordReset = 2,
    /// Invitation to join an account.
    Invitation = 3,
    /// Confirm a contact's email address.
    ContactVerification = 4,
    /// A login from a new address.
    SecurityNewLogin = 5,
    /// The password was changed or reset.
    SecurityPasswordChanged = 6,
    /// 2FA was turned off.
    SecurityTotpDisabled = 7,
    /// The email address was changed (to the old address).
    SecurityEmailChanged = 8,
    /// A reply on a support ticket.
    TicketReply = 9,
    /// Enrol in 2FA before the deadline.
    TwoFactorDeadlineReminder = 10,
    /// Anything without its own template.
    GenericNotification = 11,
    /// 2FA was turned on.
    SecurityTotpEnabled = 12,
    /// A recovery code was used (and is spent).
    SecurityRecoveryCodeUsed = 13,
    /// Support was given a wrong code word for the user.
    SecurityCodeWordFailed = 14,
    /// A new server's root password, by email.
    ServerCredentials = 15,
    /// A new server's root password, by SMS.
    ServerCredentialsSms = 16,
    /// A phone-verification code, by SMS.
    PhoneVerificationSms = 17,
    /// The verified phone number was set or replaced.
    SecurityPhoneChanged = 18,
    /// A passkey was added, removed or found cloned.
    SecurityPasskey = 19,
}

/// What a message carrying a secret holds in place of it (`secret` in its
/// template data) until the worker puts the secret in at delivery: text
/// between bidirectional isolates, which no stored name or value may
/// contain (`runtime::text`), so nothing else can stand for it.
pub const SECRET_PLACEHOLDER: &str = "\u{2066}secret withheld\u{2069}";

/// Every template, in enum order.
pub const ALL: [Template; 19] = [
    Template::EmailVerification,
    Template::PasswordReset,
    Template::Invitation,
    Template::ContactVerification,
    Template::SecurityNewLogin,
    Template::SecurityPasswordChanged,
    Template::SecurityTotpDisabled,
    Template::SecurityEmailChanged,
    Template::TicketReply,
    Template::TwoFactorDeadlineReminder,
    Template::GenericNotification,
    Template::SecurityTotpEnabled,
    Template::SecurityRecoveryCodeUsed,
    Template::SecurityCodeWordFailed,
    Template::ServerCredentials,
    Template::ServerCredentialsSms,
    Template::PhoneVerificationSms,
    Template::SecurityPhoneChanged,
    Template::SecurityPasskey,
];

/// Limits on `template_data`.
pub const MAX_ENTRIES: usize = 50;
/// Longest variable name.
pub const MAX_KEY_LEN: usize = 64;
/// Longest variable value, in bytes.
pub const MAX_VALUE_LEN: usize = 8 * 1024;

impl Template {
    /// From the proto number; `None` for UNSPECIFIED or unknown values.
    pub fn from_i32(value: i32) -> Option<Self> {
        ALL.iter().copied().find(|t| *t as i32 == value)
    }

    /// Whether messages of this template carry a secret (sealed apart,
    /// put in at delivery, erased after): only the contacts service queues
    /// them, never SendEmail or Notify.
    pub fn carries_secret(self) -> bool {
        matches!(
            self,
            Self::ServerCredentials | Self::ServerCredentialsSms | Self::PhoneVerificationSms
        )
    }

    /// Whether messages of this template go by SMS (the plain-text body).
    pub fn is_sms(self) -> bool {
        matches!(
            self,
            Self::ServerCredentialsSms | Self::PhoneVerificationSms
        )
    }

    /// The template's file stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
            Self::Invitation => "invitation",
            Self::ContactVerification => "contact_verification",
            Self::SecurityNewLogin => "security_new_login",
            Self::SecurityPasswordChanged => "security_password_changed",
            Self::SecurityTotpDisabled => "security_totp_disabled",
            Self::SecurityEmailChanged => "security_email_changed",
            Self::TicketReply => "ticket_reply",
            Self::TwoFactorDeadlineReminder => "two_factor_deadline_reminder",
            Self::GenericNotification => "generic_notification",
            Self::SecurityTotpEnabled => "security_totp_enabled",
            Self::SecurityRecoveryCodeUsed => "security_recovery_code_used",
            Self::SecurityCodeWordFailed => "security_code_word_failed",
            Self::ServerCredentials => "server_credentials",
            Self::ServerCredentialsSms => "server_credentials_sms",
            Self::PhoneVerificationSms => "phone_verification_sms",
            Self::SecurityPhoneChanged => "security_phone_changed",
            Self::SecurityPasskey => "security_passkey",
        }
    }

    /// The variables the caller must supply (non-empty).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Self::EmailVerification => &["verify_url", "expire_time"],
            Self::PasswordReset => &["reset_url", "expire_time"],
            Self::Invitation => &[
                "account_name",
                "inviter_name",
                "role",
                "accept_url",
                "expire_time",
            ],
            Self::ContactVerification => &["account_name", "verify_url", "expire_time"],
            Self::SecurityNewLogin => &["login_time", "ip", "user_agent", "sessions_url"],
            Self::SecurityPasswordChanged => &["change_time", "ip"],
            Self::SecurityTotpDisabled => &["change_time", "ip", "security_url"],
            Self::SecurityEmailChanged => &["old_email", "new_email", "change_time", "ip"],
            Self::TicketReply => &[
                "ticket_id",
                "ticket_subject",
                "author_name",
                "message_excerpt",
                "ticket_url",
            ],
            Self::TwoFactorDeadlineReminder => &["account_name", "deadline_time", "enroll_url"],
            Self::GenericNotification => &["subject", "body"],
            Self::SecurityTotpEnabled => &["change_time", "ip", "security_url"],
            Self::SecurityRecoveryCodeUsed => {
                &["change_time", "ip", "codes_remaining", "security_url"]
            }
            Self::SecurityCodeWordFailed => &["check_time", "security_url"],
            Self::ServerCredentials | Self::ServerCredentialsSms => &["service_id", "secret"],
            Self::PhoneVerificationSms => &["expire_time", "secret"],
            Self::SecurityPhoneChanged => &[
                "change_time",
                "ip",
                "old_phone",
                "new_phone",
                "security_url",
            ],
            Self::SecurityPasskey => {
                &["event", "passkey_name", "change_time", "ip", "security_url"]
            }
        }
    }

    fn sources(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::EmailVerification => (
                "Confirm your email address",
                "Hello {{ recipient_name or recipient_email }},\n\nplease confirm your email address by opening this link:\n\n{{ verify_url }}\n\nThe link is valid until {{ expire_time }}. If you did not ask for this, ignore this message.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>please confirm your email address:</p>\n<p><a href=\"{{ verify_url }}\">Confirm my email address</a></p>\n<p>The link is valid until {{ expire_time }}. If you did not ask for this, ignore this message.</p>",
            ),
            Self::PasswordReset => (
                "Reset your password",
                "Hello {{ recipient_name or recipient_email }},\n\nsomeone{% if request_ip %} (from {{ request_ip }}){% endif %} asked to reset your password. To choose a new one, open:\n\n{{ reset_url }}\n\nThe link is valid until {{ expire_time }}. If it was not you, ignore this message: your password is unchanged.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>someone{% if request_ip %} (from {{ request_ip }}){% endif %} asked to reset your password.</p>\n<p><a href=\"{{ reset_url }}\">Choose a new password</a></p>\n<p>The link is valid until {{ expire_time }}. If it was not you, ignore this message: your password is unchanged.</p>",
            ),
            Self::Invitation => (
                "{{ inviter_name }} invited you to {{ account_name }}",
                "Hello {{ recipient_name or recipient_email }},\n\n{{ inviter_name }} invited you to join {{ account_name }} as {{ role }}. To accept, open:\n\n{{ accept_url }}\n\nThe invitation is valid until {{ expire_time }}.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>{{ inviter_name }} invited you to join <strong>{{ account_name }}</strong> as {{ role }}.</p>\n<p><a href=\"{{ accept_url }}\">Accept the invitation</a></p>\n<p>The invitation is valid until {{ expire_time }}.</p>",
            ),
            Self::ContactVerification => (
                "Confirm your contact address for {{ account_name }}",
                "Hello {{ recipient_name or recipient_email }},\n\nyou were added as a contact of {{ account_name }}. Please confirm this address by opening:\n\n{{ verify_url }}\n\nThe link is valid until {{ expire_time }}. You will receive no other message until you confirm.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>you were added as a contact of <strong>{{ account_name }}</strong>.</p>\n<p><a href=\"{{ verify_url }}\">Confirm this address</a></p>\n<p>The link is valid until {{ expire_time }}. You will receive no other message until you confirm.</p>",
            ),
            Self::SecurityNewLogin => (
                "New sign-in to your account",
                "Hello {{ recipient_name or recipient_email }},\n\nyour account was signed in to at {{ login_time }} from {{ ip }}{% if location %} ({{ location }}){% endif %} with {{ user_agent }}.\n\nIf it was not you, end the session and change your password:\n\n{{ sessions_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>your account was signed in to at {{ login_time }} from {{ ip }}{% if location %} ({{ location }}){% endif %} with {{ user_agent }}.</p>\n<p>If it was not you, <a href=\"{{ sessions_url }}\">end the session</a> and change your password.</p>",
            ),
            Self::SecurityPasswordChanged => (
                "Your password was changed",
                "Hello {{ recipient_name or recipient_email }},\n\nyour password was changed at {{ change_time }} from {{ ip }}.\n{% if reset_url %}\nIf it was not you, reset it now:\n\n{{ reset_url }}\n{% endif %}",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>your password was changed at {{ change_time }} from {{ ip }}.</p>{% if reset_url %}\n<p>If it was not you, <a href=\"{{ reset_url }}\">reset it now</a>.</p>{% endif %}",
            ),
            Self::SecurityTotpDisabled => (
                "Two-factor authentication was turned off",
                "Hello {{ recipient_name or recipient_email }},\n\ntwo-factor authentication was turned off for your account at {{ change_time }} from {{ ip }}.\n\nIf it was not you, secure your account:\n\n{{ security_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>two-factor authentication was turned off for your account at {{ change_time }} from {{ ip }}.</p>\n<p>If it was not you, <a href=\"{{ security_url }}\">secure your account</a>.</p>",
            ),
            Self::SecurityEmailChanged => (
                "Your email address was changed",
                "Hello {{ recipient_name or recipient_email }},\n\nthe email address of your account was changed from {{ old_email }} to {{ new_email }} at {{ change_time }} from {{ ip }}.\n\nIf it was not you, contact support at once.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>the email address of your account was changed from {{ old_email }} to {{ new_email }} at {{ change_time }} from {{ ip }}.</p>\n<p>If it was not you, contact support at once.</p>",
            ),
            Self::TicketReply => (
                "[#{{ ticket_id }}] {{ ticket_subject }}",
                "{{ author_name }} replied to your ticket #{{ ticket_id }} \"{{ ticket_subject }}\":\n\n{{ message_excerpt }}\n\nRead and answer it at:\n\n{{ ticket_url }}\n",
                "<p>{{ author_name }} replied to your ticket #{{ ticket_id }} “{{ ticket_subject }}”:</p>\n<blockquote>{{ message_excerpt }}</blockquote>\n<p><a href=\"{{ ticket_url }}\">Read and answer</a></p>",
            ),
            Self::TwoFactorDeadlineReminder => (
                "{{ account_name }} requires two-factor authentication",
                "Hello {{ recipient_name or recipient_email }},\n\n{{ account_name }} requires two-factor authentication. Enrol before {{ deadline_time }} to keep access:\n\n{{ enroll_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p><strong>{{ account_name }}</strong> requires two-factor authentication. Enrol before {{ deadline_time }} to keep access.</p>\n<p><a href=\"{{ enroll_url }}\">Set up two-factor authentication</a></p>",
            ),
            Self::GenericNotification => (
                "{{ subject }}",
                "{{ body }}\n{% if action_url %}\n{{ action_label or \"Open\" }}: {{ action_url }}\n{% endif %}",
                "<p>{{ body }}</p>{% if action_url %}\n<p><a href=\"{{ action_url }}\">{{ action_label or \"Open\" }}</a></p>{% endif %}",
            ),
            Self::SecurityTotpEnabled => (
                "Two-factor authentication was turned on",
                "Hello {{ recipient_name or recipient_email }},\n\ntwo-factor authentication was turned on for your account at {{ change_time }} from {{ ip }}. From now on, signing in needs a code from your authenticator app or one of your recovery codes.\n\nIf it was not you, someone else controls your second factor: secure your account at once:\n\n{{ security_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>two-factor authentication was turned on for your account at {{ change_time }} from {{ ip }}. From now on, signing in needs a code from your authenticator app or one of your recovery codes.</p>\n<p>If it was not you, someone else controls your second factor: <a href=\"{{ security_url }}\">secure your account</a> at once.</p>",
            ),
            Self::SecurityRecoveryCodeUsed => (
                "A recovery code was used for your account",
                "Hello {{ recipient_name or recipient_email }},\n\none of your recovery codes was used at {{ change_time }} from {{ ip }} instead of your authenticator app. It cannot be used again; {{ codes_remaining }} unused codes are left.\n\nIf it was not you, your password and recovery codes are known to someone else: change your password, end your sessions and create new recovery codes:\n\n{{ security_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>one of your recovery codes was used at {{ change_time }} from {{ ip }} instead of your authenticator app. It cannot be used again; {{ codes_remaining }} unused codes are left.</p>\n<p>If it was not you, your password and recovery codes are known to someone else: <a href=\"{{ security_url }}\">change your password, end your sessions and create new recovery codes</a>.</p>",
            ),
            Self::SecurityCodeWordFailed => (
                "A wrong code word was given for your account",
                "Hello {{ recipient_name or recipient_email }},\n\nat {{ check_time }} someone talking to our support team on your behalf gave a code word that does not match yours (or you have none set). Support was told that the caller could not be verified.\n\nIf it was you and you forgot the word, set a new one:\n\n{{ security_url }}\n\nIf it was not you, someone is trying to impersonate you: be wary of calls or messages claiming to be from us.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>at {{ check_time }} someone talking to our support team on your behalf gave a code word that does not match yours (or you have none set). Support was told that the caller could not be verified.</p>\n<p>If it was you and you forgot the word, <a href=\"{{ security_url }}\">set a new one</a>.</p>\n<p>If it was not you, someone is trying to impersonate you: be wary of calls or messages claiming to be from us.</p>",
            ),
            Self::ServerCredentials => (
                "The root password of your new server",
                "Hello {{ recipient_name or recipient_email }},\n\nthe root password of the new server {{ service_id }} is:\n\n{{ secret }}\n\nWe do not keep it and cannot send it again: store it safely, and change it after your first login.\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>the root password of the new server {{ service_id }} is:</p>\n<p><code>{{ secret }}</code></p>\n<p>We do not keep it and cannot send it again: store it safely, and change it after your first login.</p>",
            ),
            Self::ServerCredentialsSms => (
                "Server password",
                "Root password of server {{ service_id }}: {{ secret }} (not kept by us; change it after your first login)",
                "",
            ),
            Self::PhoneVerificationSms => (
                "Verification code",
                "Your verification code: {{ secret }} (valid until {{ expire_time }}). Never share it.",
                "",
            ),
            Self::SecurityPhoneChanged => (
                "Your phone number was changed",
                "Hello {{ recipient_name or recipient_email }},\n\nthe phone number of your account was changed from {{ old_phone }} to {{ new_phone }} at {{ change_time }} from {{ ip }}. Server passwords sent by SMS now go to the new number.\n\nIf it was not you, secure your account at once:\n\n{{ security_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p>the phone number of your account was changed from {{ old_phone }} to {{ new_phone }} at {{ change_time }} from {{ ip }}. Server passwords sent by SMS now go to the new number.</p>\n<p>If it was not you, <a href=\"{{ security_url }}\">secure your account</a> at once.</p>",
            ),
            Self::SecurityPasskey => (
                "{% if event == \"added\" %}A passkey was added to your account{% elif event == \"removed\" %}A passkey was removed from your account{% else %}One of your passkeys looks cloned and was refused{% endif %}",
                "Hello {{ recipient_name or recipient_email }},\n\nPasskey {{ event }}: {{ passkey_name }}\n\n{% if event == \"added\" %}the passkey \"{{ passkey_name }}\" was added to your account at {{ change_time }} from {{ ip }}. It can sign you in and counts as your second factor.{% elif event == \"removed\" %}the passkey \"{{ passkey_name }}\" was removed from your account at {{ change_time }} from {{ ip }}.{% else %}at {{ change_time }} a sign-in from {{ ip }} used your passkey \"{{ passkey_name }}\" with a signature counter lower than before: the authenticator may have been copied. The passkey is refused from now on.{% endif %}\n\nIf it was not you, secure your account at once:\n\n{{ security_url }}\n",
                "<p>Hello {{ recipient_name or recipient_email }},</p>\n<p><strong>Passkey {{ event }}: {{ passkey_name }}</strong></p>\n<p>{% if event == \"added\" %}the passkey &ldquo;{{ passkey_name }}&rdquo; was added to your account at {{ change_time }} from {{ ip }}. It can sign you in and counts as your second factor.{% elif event == \"removed\" %}the passkey &ldquo;{{ passkey_name }}&rdquo; was removed from your account at {{ change_time }} from {{ ip }}.{% else %}at {{ change_time }} a sign-in from {{ ip }} used your passkey &ldquo;{{ passkey_name }}&rdquo; with a signature counter lower than before: the authenticator may have been copied. The passkey is refused from now on.{% endif %}</p>\n<p>If it was not you, <a href=\"{{ security_url }}\">secure your account</a> at once.</p>",
            ),
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line, no control characters.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (variables escaped).
    pub html: String,
}

/// Why `template_data` was refused: the variable and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The field path, `template_data[<name>]`.
    pub field: String,
    /// What is wrong.
    pub description: String,
    /// Whether this is a missing variable (TEMPLATE_DATA_INVALID) rather
    /// than a limit (plain field violation).
    pub missing: bool,
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for t in ALL {
            let (subject, text, html) = t.sources();
            // The sources are constants checked by the unit tests below.
            let _ = env.add_template(subject_name(t), subject);
            let _ = env.add_template(text_name(t), text);
            let _ = env.add_template(html_name(t), html);
        }
        env
    })
}

fn subject_name(t: Template) -> &'static str {
    // Leaked once per template at start: 33 short strings.
    Box::leak(format!("{}.subject.txt", t.name()).into_boxed_str())
}
fn text_name(t: Template) -> &'static str {
    Box::leak(format!("{}.txt", t.name()).into_boxed_str())
}
fn html_name(t: Template) -> &'static str {
    Box::leak(format!("{}.html", t.name()).into_boxed_str())
}

/// Checks the caller's variables against the limits and the template's
/// required variables, collecting every problem.
pub fn check_data(template: Template, data: &BTreeMap<String, String>) -> Vec<DataError> {
    let mut errors = Vec::new();
    if data.len() > MAX_ENTRIES {
        errors.push(DataError {
            field: "template_data".to_owned(),
            description: format!("at most {MAX_ENTRIES} entries"),
            missing: false,
        });
    }
    for (key, value) in data {
        if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
            errors.push(DataError {
                field: format!("template_data[{key}]"),
                description: format!("keys are 1 to {MAX_KEY_LEN} characters"),
                missing: false,
            });
        }
        if value.len() > MAX_VALUE_LEN {
            errors.push(DataError {
                field: format!("template_data[{key}]"),
                description: "values are at most 8 KiB".to_owned(),
                missing: false,
            });
        }
    }
    for name in template.required() {
        if data.get(*name).is_none_or(|v| v.trim().is_empty()) {
            errors.push(DataError {
                field: format!("template_data[{name}]"),
                description: format!("required by template {}", template.name()),
                missing: true,
            });
        }
    }
    let limited = |name: &str, max: usize| {
        data.get(name)
            .filter(|v| v.chars().count() > max)
            .map(|_| DataError {
                field: format!("template_data[{name}]"),
                description: format!("at most {max} characters"),
                missing: false,
            })
    };
    if template == Template::GenericNotification {
        errors.extend(limited("subject", 200));
    }
    if template == Template::TicketReply {
        errors.extend(limited("message_excerpt", 500));
    }
    errors
}

/// Renders `template` with `data` (which must have passed [`check_data`]
/// and include the `recipient_*` variables).
pub fn render(template: Template, data: &BTreeMap<String, String>) -> Result<Rendered, String> {
    let env = environment();
    let get = |name: &str| {
        env.get_template(name)
            .and_then(|t| t.render(data))
            .map_err(|e| format!("template {name}: {e}"))
    };
    let subject = get(&format!("{}.subject.txt", template.name()))?;
    let subject = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned();
    Ok(Rendered {
        subject,
        text: get(&format!("{}.txt", template.name()))?,
        html: get(&format!("{}.html", template.name()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_data(t: Template) -> BTreeMap<String, String> {
        let mut data: BTreeMap<String, String> = t
            .required()
            .iter()
            .map(|k| ((*k).to_owned(), format!("<{k}>&")))
            .collect();
        data.insert("recipient_email".into(), "a@example.com".into());
        data.insert("recipient_name".into(), "Ann".into());
        data
    }

    #[test]
    fn every_template_renders_subject_text_and_html_with_its_variables() {
        for t in ALL {
            let data = full_data(t);
            assert!(check_data(t, &data).is_empty(), "{t:?}");
            let r = render(t, &data).unwrap();
            assert!(!r.subject.is_empty(), "{t:?}");
            for k in t.required() {
                if *k == "subject" {
                    continue;
                }
                assert!(r.text.contains(&format!("<{k}>&")), "{t:?} text lacks {k}");
                assert!(
                    t.is_sms() || r.html.contains(&format!("&lt;{k}&gt;&amp;")),
                    "{t:?} html must escape {k}: {}",
                    r.html
                );
            }
        }
    }

    #[test]
    fn every_message_template_of_the_proto_has_a_template_of_the_same_name() {
        use tenancy_proto::contacts::MessageTemplate;
        for t in ALL {
            let proto = MessageTemplate::try_from(t as i32).unwrap();
            assert_eq!(
                proto.as_str_name(),
                format!("MESSAGE_TEMPLATE_{}", t.name().to_uppercase())
            );
        }
        // No proto value beyond the last one here.
        assert!(MessageTemplate::try_from(ALL.len() as i32 + 1).is_err());
        assert_eq!(Template::from_i32(ALL.len() as i32 + 1), None);
    }

    #[test]
    fn a_missing_or_blank_required_variable_is_named() {
        let mut data = full_data(Template::PasswordReset);
        data.remove("reset_url");
        data.insert("expire_time".into(), " ".into());
        let errors = check_data(Template::PasswordReset, &data);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["template_data[reset_url]", "template_data[expire_time]"]
        );
        assert!(errors.iter().all(|e| e.missing));
    }

    #[test]
    fn limits_on_keys_values_and_entries_are_enforced() {
        let mut data = full_data(Template::GenericNotification);
        data.insert("x".repeat(65), "v".into());
        data.insert("big".into(), "v".repeat(8 * 1024 + 1));
        data.insert("subject".into(), "s".repeat(201));
        let errors = check_data(Template::GenericNotification, &data);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().all(|e| !e.missing));
    }

    #[test]
    fn optional_variables_appear_only_when_given_and_subjects_stay_one_line() {
        let mut data = full_data(Template::GenericNotification);
        data.insert("subject".into(), "Line1\r\nBcc: evil@example.com".into());
        let r = render(Template::GenericNotification, &data).unwrap();
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
        assert!(!r.text.contains("Open:"));
        data.insert("action_url".into(), "https://x.example/a?b=1&c=2".into());
        let r = render(Template::GenericNotification, &data).unwrap();
        assert!(r.text.contains("Open: https://x.example/a?b=1&c=2"));
        // minijinja escapes `/` too (`&#x2f;`), which browsers read as `/`.
        let html = r.html.replace("&#x2f;", "/");
        assert!(
            html.contains("href=\"https://x.example/a?b=1&amp;c=2\""),
            "{html}"
        );
    }
}
