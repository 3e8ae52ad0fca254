//! Usage reports: when each API token and portal session was last used,
//! sent to identity (`RecordUsage`) in batches, off the request path.
//!
//! An admitted call notes its credential in a pending map holding one entry
//! per token or session (the latest time and client address, and for
//! sessions the user agent), so a credential is reported at most once per
//! interval however often it is used, and a call costs one uncontended lock
//! and one map update (no allocation unless the session is new in this
//! interval or its user agent changed). A reporter task takes the map every
//! `gateway.usage_report_interval` and sends it in chunks; entries of a
//! failed send are kept for the next round. Memory is bounded: at
//! [`PENDING_CAP`] entries a report starts at once, and credentials not yet
//! pending are skipped (and counted) until it has taken the map. A graceful
//! shutdown sends what is pending once the last call has finished.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::{ApiTokenUsage, RecordUsageRequest, SessionActivity};
use tenancy_runtime::Channel;
use tenancy_runtime::Timestamp;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::shutdown::Shutdown;
use tokio::sync::Notify;
use tonic::service::interceptor::InterceptedService;

use crate::id::{Id, id_string};
use crate::policy::Credential;
use crate::state::FastMap;

/// Most credentials pending at once (~200 bytes each).
pub const PENDING_CAP: usize = 200_000;
/// Entries per RecordUsage call (identity takes at most 10,000; smaller
/// calls keep its write transactions short).
const CHUNK: usize = 1_000;
/// Longest user agent kept (identity keeps as much).
const USER_AGENT_BYTES: usize = 512;
/// Longest wait for identity when sending one chunk.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The client the reporter sends with.
pub type IdentityClient = IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ApiUse {
    time_ms: i64,
    ip: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SessionUse {
    time_ms: i64,
    ip: IpAddr,
    user_agent: Box<str>,
}

/// What was used since the last report.
#[derive(Debug, Default)]
struct Pending {
    api_tokens: FastMap<Id, ApiUse>,
    sessions: FastMap<Id, SessionUse>,
}

impl Pending {
    fn len(&self) -> usize {
        self.api_tokens.len() + self.sessions.len()
    }

    /// Puts back entries of a failed report, unless a newer use was noted
    /// meanwhile, and as far as the cap allows.
    fn restore(&mut self, old: Pending) {
        for (id, used) in old.api_tokens {
            let room = self.len() < PENDING_CAP;
            match self.api_tokens.entry(id) {
                Entry::Occupied(_) => {}
                Entry::Vacant(v) if room => {
                    v.insert(used);
                }
                Entry::Vacant(_) => {}
            }
        }
        for (id, used) in old.sessions {
            let room = self.len() < PENDING_CAP;
            match self.sessions.entry(id) {
                Entry::Occupied(_) => {}
                Entry::Vacant(v) if room => {
                    v.insert(used);
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    /// The entries split into chunks of at most [`CHUNK`].
    fn into_chunks(self) -> Vec<Pending> {
        let mut chunks = vec![Pending::default()];
        let room = |chunks: &mut Vec<Pending>| {
            if chunks.last().is_none_or(|c| c.len() >= CHUNK) {
                chunks.push(Pending::default());
            }
            chunks.len() - 1
        };
        for (id, used) in self.api_tokens {
            let last = room(&mut chunks);
            chunks[last].api_tokens.insert(id, used);
        }
        for (id, used) in self.sessions {
            let last = room(&mut chunks);
            chunks[last].sessions.insert(id, used);
        }
        chunks.retain(|c| c.len() > 0);
        chunks
    }

    /// The RecordUsage request of these entries.
    fn to_request(&self) -> RecordUsageRequest {
        RecordUsageRequest {
            api_token_usages: self
                .api_tokens
                .iter()
                .map(|(id, used)| ApiTokenUsage {
                    api_token_id: id_string(*id),
                    last_used_time: Some(Timestamp(used.time_ms).to_proto()),
                    ip_address: used.ip.to_string(),
                })
                .collect(),
            session_activities: self
                .sessions
                .iter()
                .map(|(id, used)| SessionActivity {
                    session_id: id_string(*id),
                    last_seen_time: Some(Timestamp(used.time_ms).to_proto()),
                    ip_address: used.ip.to_string(),
                    user_agent: used.user_agent.to_string(),
                })
                .collect(),
        }
    }
}

/// The user agent as identity keeps it: at most 512 bytes, cut at a
/// character boundary; not UTF-8: empty.
fn user_agent(header: Option<&http::HeaderValue>) -> &str {
    let text = header
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .unwrap_or_default();
    let mut end = text.len().min(USER_AGENT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Notes uses of credentials and reports them to identity.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
    full: Notify,
    skipped: AtomicU64,
}

impl UsageRecorder {
    /// Notes that `credential` was used at `now_ms` from `ip` (with
    /// `user_agent`, for sessions).
    pub fn record(
        &self,
        credential: &Credential,
        ip: IpAddr,
        user_agent_header: Option<&http::HeaderValue>,
        now_ms: i64,
    ) {
        let mut pending = self.pending.lock();
        let room = pending.len() < PENDING_CAP;
        let added = match credential {
            Credential::Api(token) => match pending.api_tokens.entry(token.id) {
                Entry::Occupied(mut e) => {
                    let used = e.get_mut();
                    if now_ms >= used.time_ms {
                        *used = ApiUse {
                            time_ms: now_ms,
                            ip,
                        };
                    }
                    true
                }
                Entry::Vacant(v) if room => {
                    v.insert(ApiUse {
                        time_ms: now_ms,
                        ip,
                    });
                    true
                }
                Entry::Vacant(_) => false,
            },
            Credential::Portal(token) => {
                let agent = user_agent(user_agent_header);
                match pending.sessions.entry(token.session) {
                    Entry::Occupied(mut e) => {
                        let used = e.get_mut();
                        if now_ms >= used.time_ms {
                            used.time_ms = now_ms;
                            used.ip = ip;
                            if *used.user_agent != *agent {
                                used.user_agent = agent.into();
                            }
                        }
                        true
                    }
                    Entry::Vacant(v) if room => {
                        v.insert(SessionUse {
                            time_ms: now_ms,
                            ip,
                            user_agent: agent.into(),
                        });
                        true
                    }
                    Entry::Vacant(_) => false,
                }
            }
        };
        let full = pending.len() >= PENDING_CAP;
        drop(pending);
        if !added {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        if full {
            self.full.notify_one();
        }
    }

    /// How many credentials are waiting to be reported.
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Sends everything pending to identity. Entries of chunks that failed
    /// are kept for the next report; returns whether everything was sent.
    pub async fn report(&self, client: &IdentityClient) -> bool {
        let taken = std::mem::take(&mut *self.pending.lock());
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        if skipped > 0 {
            tracing::warn!(
                skipped,
                cap = PENDING_CAP,
                "usage of some credentials not recorded: too many pending"
            );
        }
        if taken.len() == 0 {
            return true;
        }
        let mut failed = Pending::default();
        for chunk in taken.into_chunks() {
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                client.clone().record_usage(chunk.to_request()),
            )
            .await;
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                    // Identity will never take it; retrying would not help.
                    tracing::warn!(message = status.message(), "usage report refused");
                }
                Ok(Err(status)) => {
                    tracing::warn!(code = ?status.code(), "usage report failed; kept for the next one");
                    failed.restore(chunk);
                }
                Err(_) => {
                    tracing::warn!("usage report timed out; kept for the next one");
                    failed.restore(chunk);
                }
            }
        }
        let all_sent = failed.len() == 0;
        if !all_sent {
            self.pending.lock().restore(failed);
        }
        all_sent
    }

    /// Reports every `interval` (or at once when the map is full) until
    /// `shutdown`. The last report is the caller's, after the last call
    /// (see [`crate::serve`]).
    pub async fn report_periodically(
        &self,
        client: IdentityClient,
        interval: Duration,
        shutdown: Shutdown,
    ) {
        let interval = interval.max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.full.notified() => {}
                () = shutdown.clone().wait() => return,
            }
            self.report(&client).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{Amr, PortalToken};
    use crate::policy::ApiToken;

    fn session(n: u128) -> Credential {
        Credential::Portal(PortalToken {
            user: Id::from_u128(1),
            session: Id::from_u128(n),
            account: None,
            rev: 0,
            expire_ms: i64::MAX,
            auth_time: 0,
            amr: Amr::default(),
            mfa: false,
            staff: false,
        })
    }

    fn api(n: u128) -> Credential {
        Credential::Api(ApiToken {
            id: Id::from_u128(n),
            user_id: Id::from_u128(1),
            account_id: Id::from_u128(2),
            read_only: false,
            expire_ms: None,
            mfa: false,
            outside_source_allowlist: false,
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    #[test]
    fn a_credential_is_reported_once_with_its_latest_use() {
        let usage = UsageRecorder::default();
        let firefox = http::HeaderValue::from_static("Firefox");
        let curl = http::HeaderValue::from_static("curl/8");
        usage.record(&session(7), ip(1), Some(&firefox), 1_000);
        usage.record(&session(7), ip(2), Some(&curl), 3_000);
        usage.record(&session(7), ip(3), Some(&firefox), 2_000); // late: ignored
        usage.record(&api(8), ip(4), None, 5_000);
        usage.record(&api(8), ip(5), None, 6_000);
        assert_eq!(usage.pending(), 2);
        let taken = std::mem::take(&mut *usage.pending.lock());
        let requests: Vec<_> = taken
            .into_chunks()
            .iter()
            .map(Pending::to_request)
            .collect();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.session_activities.len(), 1);
        let activity = &request.session_activities[0];
        assert_eq!(activity.session_id, id_string(Id::from_u128(7)));
        assert_eq!(activity.last_seen_time, Some(Timestamp(3_000).to_proto()));
        assert_eq!(
            (activity.ip_address.as_str(), activity.user_agent.as_str()),
            ("203.0.113.2", "curl/8")
        );
        let used = &request.api_token_usages[0];
        assert_eq!(used.api_token_id, id_string(Id::from_u128(8)));
        assert_eq!(used.last_used_time, Some(Timestamp(6_000).to_proto()));
        assert_eq!(used.ip_address, "203.0.113.5");
    }

    #[test]
    fn reports_go_in_chunks_identity_accepts() {
        let mut pending = Pending::default();
        for n in 0..2_500 {
            pending.api_tokens.insert(
                Id::from_u128(n),
                ApiUse {
                    time_ms: 1,
                    ip: ip(1),
                },
            );
        }
        for n in 0..600 {
            pending.sessions.insert(
                Id::from_u128(n),
                SessionUse {
                    time_ms: 1,
                    ip: ip(1),
                    user_agent: "".into(),
                },
            );
        }
        let sizes: Vec<usize> = pending.into_chunks().iter().map(Pending::len).collect();
        assert_eq!(sizes, [1_000, 1_000, 1_000, 100]);
        assert!(Pending::default().into_chunks().is_empty());
    }

    #[test]
    fn memory_is_bounded_and_a_full_map_asks_for_a_report() {
        let usage = UsageRecorder::default();
        {
            let mut pending = usage.pending.lock();
            for n in 0..PENDING_CAP as u128 - 1 {
                pending.api_tokens.insert(
                    Id::from_u128(n),
                    ApiUse {
                        time_ms: 1,
                        ip: ip(1),
                    },
                );
            }
        }
        let asked = usage.full.notified();
        tokio::pin!(asked);
        asked.as_mut().enable();
        usage.record(&session(u128::MAX), ip(1), None, 5);
        assert_eq!(usage.pending(), PENDING_CAP);
        assert!(
            futures::FutureExt::now_or_never(asked).is_some(),
            "the reporter is woken"
        );
        // Full: a new credential is skipped, a pending one still updated.
        usage.record(&api(u128::MAX - 1), ip(1), None, 6);
        usage.record(&api(0), ip(9), None, 7);
        assert_eq!(usage.pending(), PENDING_CAP);
        assert_eq!(usage.skipped.load(Ordering::Relaxed), 1);
        let pending = usage.pending.lock();
        assert_eq!(pending.api_tokens[&Id::from_u128(0)].ip, ip(9));
    }

    #[test]
    fn entries_of_a_failed_report_come_back_unless_newer_ones_arrived() {
        let usage = UsageRecorder::default();
        usage.record(&api(1), ip(1), None, 1_000);
        usage.record(&api(2), ip(1), None, 1_000);
        let failed = std::mem::take(&mut *usage.pending.lock());
        usage.record(&api(2), ip(2), None, 2_000);
        usage.pending.lock().restore(failed);
        let pending = usage.pending.lock();
        assert_eq!(pending.api_tokens[&Id::from_u128(1)].time_ms, 1_000);
        assert_eq!(pending.api_tokens[&Id::from_u128(2)].time_ms, 2_000);
    }

    #[test]
    fn user_agents_are_cut_at_512_bytes_on_a_character_boundary() {
        let long = format!("{}é", "a".repeat(511));
        let header = http::HeaderValue::from_str(&long).unwrap();
        assert_eq!(user_agent(Some(&header)), "a".repeat(511));
        assert_eq!(user_agent(None), "");
    }
}
