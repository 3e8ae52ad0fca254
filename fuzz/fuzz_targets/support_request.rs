//! Support's requests: any bytes decoded as each request message, then
//! the field checks the service applies at its edge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_fuzz::{decode_one_of, id, page};
use tenancy_proto::support as pb;
use tenancy_support::domain::{Category, Priority, Status, validate};

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = tenancy_fuzz::selector(data) else {
        return;
    };
    decode_one_of!(which, bytes, {
        pb::CreateTicketRequest => |r: &pb::CreateTicketRequest| {
            let _ = validate::subject(&r.subject);
            let _ = validate::body(&r.body);
            let _ = Priority::from_i32(r.priority);
            let _ = Category::from_i32(r.category);
            if r.cc_user_ids.len() <= validate::MAX_CC {
                for user in &r.cc_user_ids {
                    id("cc_user_ids", user);
                }
            }
        },
        pb::AddMessageRequest => |r: &pb::AddMessageRequest| {
            let _ = validate::body(&r.body);
            id("ticket_id", &r.ticket_id);
        },
        pb::AddInternalNoteRequest => |r: &pb::AddInternalNoteRequest| {
            let _ = validate::body(&r.body);
        },
        pb::UpdateTicketCcRequest => |r: &pb::UpdateTicketCcRequest| {
            for user in r.add_user_ids.iter().chain(&r.remove_user_ids).take(validate::MAX_CC) {
                id("user_ids", user);
            }
        },
        pb::ListTicketsRequest => |r: &pb::ListTicketsRequest| {
            page(r.page_size, &r.page_token);
            for status in &r.statuses {
                let _ = Status::from_i32(*status);
            }
        },
        pb::ListMessagesRequest => |r: &pb::ListMessagesRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::ListQueueRequest => |r: &pb::ListQueueRequest| {
            page(r.page_size, &r.page_token);
        },
        pb::SetTicketStatusRequest => |r: &pb::SetTicketStatusRequest| {
            let _ = Status::from_i32(r.status);
        },
        pb::VerifyCallerRequest => |r: &pb::VerifyCallerRequest| {
            id("account_id", &r.account_id);
            id("user_id", &r.user_id);
        },
        pb::WatchTicketRequest => |_: &pb::WatchTicketRequest| {},
        pb::AssignTicketRequest => |_: &pb::AssignTicketRequest| {},
    });
});
