//! WatchTicket: one live stream per watcher, access re-checked as it runs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tenancy_proto::support as pb;
use tenancy_runtime::ids::{AccountId, TicketId, UserId};
use tenancy_runtime::{Error, Principal, Reason};
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status as GrpcStatus};

use super::{Api, Reply, caller, convert, ticket_id};
use crate::app::{App, Event, Side};
use crate::domain::{ActorKind, SupportError};
use crate::store::Ticket;

/// The stream WatchTicket answers with.
pub(crate) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchTicketResponse, GrpcStatus>> + Send>>;

impl Api {
    /// WatchTicket: checks access, subscribes, and starts the stream.
    pub(super) async fn open_watch(
        &self,
        request: Request<pb::WatchTicketRequest>,
    ) -> Reply<WatchStream> {
        let p = caller(&request)?;
        let r = request.into_inner();
        if r.after_message_sequence < 0 {
            return Err(
                Error::invalid_field("after_message_sequence", "must not be negative").into(),
            );
        }
        // Subscribe before the snapshot so nothing falls in between.
        let events = self.app.events.subscribe();
        let id = ticket_id(&r.ticket_id)?;
        let (side, ticket) = self.app.shared_ticket(&p, &id).await?;
        self.app
            .audit_if_staff(&p, side, &ticket, "ticket.watch", None)
            .await?;
        let replay = if r.after_message_sequence > 0 {
            self.app
                .store
                .messages_after(&id, r.after_message_sequence, false)
                .await?
        } else {
            Vec::new()
        };
        let (tx, rx) = mpsc::channel(64);
        let app = self.app.clone();
        tokio::spawn(watch(app, p, side, ticket, replay, events, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// One WatchTicket stream: snapshot, replay, then live events, with access
/// re-checked on every event and every second; ends with NOT_FOUND
/// (customers) or SUPPORT_ACCESS_NOT_GRANTED (staff) when access is lost,
/// UNAVAILABLE at shutdown.
async fn watch(
    app: Arc<App>,
    p: Principal,
    side: Side,
    ticket: Ticket,
    replay: Vec<crate::domain::TicketMessage>,
    mut events: broadcast::Receiver<(TicketId, Event)>,
    tx: mpsc::Sender<Result<pb::WatchTicketResponse, GrpcStatus>>,
) {
    use pb::watch_ticket_response::Event as E;
    let send = |e: E| pb::WatchTicketResponse { event: Some(e) };
    let id = ticket.id.clone();
    let mut last_sent = ticket.last_message_sequence;
    if tx
        .send(Ok(send(E::Snapshot(convert::ticket(
            &ticket,
            Side::Customer,
        )))))
        .await
        .is_err()
    {
        return;
    }
    last_sent = last_sent.max(0);
    for m in replay.iter().filter(|m| !m.internal) {
        if tx
            .send(Ok(send(E::MessageAdded(convert::message(
                m,
                Side::Customer,
            )))))
            .await
            .is_err()
        {
            return;
        }
        last_sent = last_sent.max(m.sequence);
    }
    let still_allowed = |app: Arc<App>, p: Principal, ticket: Ticket| async move {
        match side {
            Side::Customer => {
                let (Ok(user), Ok(account)) = (p.user(), p.account()) else {
                    return Err(Error::from(SupportError::TicketNotFound));
                };
                let (user, account) = (UserId::trusted(user), AccountId::trusted(account));
                if app.customer_sees(&user, &account, &ticket).await? {
                    Ok(())
                } else {
                    Err(SupportError::TicketNotFound.into())
                }
            }
            Side::Staff => app.require_grant(&ticket.account_id).await,
        }
    };
    let mut shutdown = app.shutdown.clone();
    let stop = async move {
        shutdown.clone().wait().await;
        let _ = &mut shutdown;
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let event = tokio::select! {
            _ = &mut stop => {
                let farewell = Error::new(Reason::ServerShuttingDown, "server shutting down; reconnect");
                let _ = tx.send(Err(farewell.into())).await;
                return;
            }
            _ = tx.closed() => return,
            _ = tick.tick() => None,
            received = events.recv() => match received {
                Ok((ticket_id, event)) if ticket_id == id => Some(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow: re-read what we may have missed.
                    match app.store.messages_after(&id, last_sent, false).await {
                        Ok(missed) => {
                            for m in missed {
                                last_sent = last_sent.max(m.sequence);
                                if tx.send(Ok(send(E::MessageAdded(convert::message(&m, Side::Customer))))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Err(e) = still_allowed(app.clone(), p.clone(), ticket.clone()).await {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        let out = match event {
            None => continue,
            Some(Event::Message(m)) if m.internal || m.sequence <= last_sent => continue,
            Some(Event::Message(m)) => {
                last_sent = m.sequence;
                E::MessageAdded(convert::message(&m, Side::Customer))
            }
            Some(Event::Status {
                previous,
                by_kind,
                by_user,
                ticket,
            }) => E::StatusChanged(pb::TicketStatusChanged {
                change: Some(pb::TicketStatusChange {
                    previous_status: previous as i32,
                    status: ticket.status as i32,
                    changed_by_kind: by_kind as i32,
                    changed_by_user_id: if by_kind == ActorKind::Customer {
                        by_user.map(UserId::into_string).unwrap_or_default()
                    } else {
                        String::new()
                    },
                    change_time: Some(
                        tenancy_runtime::Timestamp(ticket.status_change_time).to_proto(),
                    ),
                }),
                ticket: Some(convert::ticket(&ticket, Side::Customer)),
            }),
            Some(Event::Updated { ticket, fields }) => E::TicketUpdated(pb::TicketUpdated {
                ticket: Some(convert::ticket(&ticket, Side::Customer)),
                changed_fields: Some(prost_types::FieldMask { paths: fields }),
            }),
        };
        if tx.send(Ok(send(out))).await.is_err() {
            return;
        }
    }
}
