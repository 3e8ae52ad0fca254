//! Stored rows and domain values → proto messages.

use tenancy_proto::contacts as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::{ContactId, UserId};

use crate::app::preferences::Preferences;
use crate::domain::contact::Contact;
use crate::domain::outbox::{Message, MessageState};
use crate::domain::routing::{self, Exclusion, Reason};

/// Unix ms as a proto timestamp.
pub(super) fn ts(ms: Option<i64>) -> Option<prost_types::Timestamp> {
    ms.map(|m| Timestamp(m).to_proto())
}

/// An outbox message: the next attempt only while one is to come, the send
/// time only once sent, the SMTP message id once an attempt started.
pub(super) fn message(m: Message) -> pb::OutboxMessage {
    let template_data = serde_json::from_str(&m.template_data).unwrap_or_default();
    let started = m.attempts > 0;
    pb::OutboxMessage {
        id: m.id,
        request_id: m.idempotency_key,
        to: Some(pb::EmailAddress {
            email: m.to_email,
            name: m.to_name,
        }),
        subject: m.subject,
        template: m.template as i32,
        template_data,
        account_id: m.account_id.map(String::from).unwrap_or_default(),
        category: m.category.map_or(0, |c| c as i32),
        state: m.state as i32,
        attempts: m.attempts,
        next_attempt_time: ts(m.next_attempt_at.filter(|_| m.state.is_waiting())),
        last_attempt_time: ts(m.last_attempt_at),
        last_error: m.last_error,
        create_time: ts(Some(m.created_at)),
        send_time: ts(m.sent_at.filter(|_| m.state == MessageState::Sent)),
        smtp_message_id: if started {
            m.smtp_message_id
        } else {
            String::new()
        },
        carries_secret: m.template.carries_secret(),
        channel: m.channel as i32,
        to_phone: m.to_phone,
    }
}

/// A contact, with its roles (PRIMARY first) and verification times.
pub(super) fn contact(c: Contact) -> pb::Contact {
    let roles = c.roles.iter().map(|r| *r as i32).collect();
    pb::Contact {
        email_verify_time: ts(c.email_verified_at.filter(|_| c.email_verified)),
        verification_send_time: ts(c.verification_sent_at.filter(|_| !c.email_verified)),
        id: c.id.into_string(),
        account_id: c.account_id.into_string(),
        name: c.name,
        email: c.email,
        email_verified: c.email_verified,
        phone: c.phone,
        notes: c.notes,
        roles,
        create_time: ts(Some(c.created_at)),
        update_time: ts(Some(c.updated_at)),
    }
}

/// A member's effective preferences.
pub(super) fn preferences(p: Preferences) -> pb::NotificationPreferences {
    pb::NotificationPreferences {
        account_id: p.account.into_string(),
        user_id: p.user.into_string(),
        preferences: p
            .entries
            .into_iter()
            .map(|(category, enabled, locked)| pb::NotificationPreference {
                category: category as i32,
                enabled,
                locked,
            })
            .collect(),
        update_time: ts(p.update_time),
    }
}

/// A recipient with the reasons it receives the notification.
pub(super) fn recipient(r: routing::Recipient) -> pb::Recipient {
    pb::Recipient {
        email: r.email,
        name: r.name,
        reasons: r
            .reasons
            .into_iter()
            .map(|reason| match reason {
                Reason::ContactRole { contact_id, role } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::ContactRole as i32,
                    contact_id: contact_id.into_string(),
                    contact_role: role as i32,
                    user_id: String::new(),
                },
                Reason::UserPreference { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::UserPreference as i32,
                    user_id: user_id.into_string(),
                    ..Default::default()
                },
                Reason::Mandatory { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::Mandatory as i32,
                    user_id: user_id.into_string(),
                    ..Default::default()
                },
                Reason::ExtraRecipient { user_id } => pb::RecipientReason {
                    kind: pb::RecipientReasonKind::ExtraRecipient as i32,
                    user_id: user_id.map(UserId::into_string).unwrap_or_default(),
                    ..Default::default()
                },
            })
            .collect(),
    }
}

/// A recipient left out, and why.
pub(super) fn excluded(e: routing::Excluded) -> pb::ExcludedRecipient {
    pb::ExcludedRecipient {
        email: e.email,
        contact_id: e.contact_id.map(ContactId::into_string).unwrap_or_default(),
        user_id: e.user_id.map(UserId::into_string).unwrap_or_default(),
        reason: match e.reason {
            Exclusion::ContactEmailUnverified => pb::ExclusionReason::ContactEmailUnverified,
            Exclusion::CategoryDisabled => pb::ExclusionReason::CategoryDisabled,
            Exclusion::MemberNotActive => pb::ExclusionReason::MemberNotActive,
            Exclusion::NoServiceAccess => pb::ExclusionReason::NoServiceAccess,
        } as i32,
    }
}
