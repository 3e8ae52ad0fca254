//! Store rows → proto messages, in the customer or the staff view.

use tenancy_proto::support as pb;
use tenancy_runtime::Timestamp;

use crate::app::Side;
use crate::domain::ActorKind;
use crate::store::{Ticket, TicketMessage};

fn time(ms: i64) -> Option<prost_types::Timestamp> {
    Some(Timestamp(ms).to_proto())
}

/// A ticket as `side` sees it: customers get no assignee, no note count,
/// and the latest customer-visible sequence.
pub(crate) fn ticket(t: &Ticket, side: Side) -> pb::Ticket {
    let r = t;
    let staff = side == Side::Staff;
    pb::Ticket {
        id: r.id.to_string(),
        account_id: r.account_id.to_string(),
        subject: r.subject.clone(),
        service_id: r.service_id.clone().unwrap_or_default(),
        category: r.category as i32,
        priority: r.priority as i32,
        status: r.status as i32,
        created_by_user_id: r.created_by_user_id.to_string(),
        cc_user_ids: t.cc.iter().map(ToString::to_string).collect(),
        assignee_user_id: if staff {
            r.assignee_user_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        } else {
            String::new()
        },
        message_count: r.message_count,
        internal_note_count: if staff { r.internal_note_count } else { 0 },
        last_message_sequence: if staff {
            r.last_sequence
        } else {
            r.last_message_sequence
        },
        create_time: time(r.create_time),
        update_time: time(r.update_time),
        last_message_time: time(r.last_message_time),
        status_change_time: time(r.status_change_time),
    }
}

/// A message as `side` sees it: customers see staff authors as "support"
/// without an id.
pub(crate) fn message(m: &TicketMessage, side: Side) -> pb::TicketMessage {
    let hide_author = side == Side::Customer && m.author_kind != ActorKind::Customer;
    pb::TicketMessage {
        id: m.id.to_string(),
        ticket_id: m.ticket_id.to_string(),
        sequence: m.sequence,
        author_kind: m.author_kind as i32,
        author_user_id: if hide_author {
            String::new()
        } else {
            m.author_user_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        },
        body: m.body.clone(),
        internal: m.internal,
        create_time: time(m.create_time),
    }
}
