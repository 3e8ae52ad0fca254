//! A steady open-loop load for the tests that break parts under it
//! (`replicas`, `faults`): per flow, a call started at its own pace
//! whether earlier ones answered or not, so calls keep starting while
//! some are stuck on a dead or hung part and every moment of a fault is
//! measured. Every call is recorded ([`Sample`]); one still unanswered
//! well past its deadline is recorded as hung.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the load calls: the flows of one test and how each is made.
pub(crate) trait Caller: Clone + Send + Sync + 'static {
    /// The flows the load mixes.
    type Flow: Copy + Debug + Send + Sync + 'static;

    /// One call of `flow`: `Ok(true)` answered as it should, `Ok(false)`
    /// nothing to call this time (not recorded), `Err` how it failed.
    fn call(&self, flow: Self::Flow) -> impl Future<Output = Result<bool, String>> + Send;

    /// A call of `flow` was still unanswered at the load's hang bound.
    fn hung(&self, _flow: Self::Flow) {}
}

/// One call of the load: when it started and ended, how it failed if it
/// did.
pub(crate) struct Sample<F> {
    pub(crate) flow: F,
    pub(crate) started: Instant,
    /// When its answer came (or the load stopped waiting for it).
    pub(crate) ended: Instant,
    pub(crate) failure: Option<String>,
}

impl<F> Sample<F> {
    /// How long the call took.
    pub(crate) fn took(&self) -> Duration {
        self.ended - self.started
    }
}

/// What a hung call is recorded as failing with.
pub(crate) const HUNG: &str = "no answer past the deadline";

/// The load, running until [`Load::stop`].
pub(crate) struct Load<F> {
    samples: Arc<Mutex<Vec<Sample<F>>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<F: Copy + Debug + Send + Sync + 'static> Load<F> {
    /// Starts a call of each `(flow, every)` every `every`; a call still
    /// unanswered after `hang` is given up as hung ([`Caller::hung`]).
    pub(crate) fn start<C: Caller<Flow = F>>(
        caller: &C,
        flows: &[(F, Duration)],
        hang: Duration,
    ) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = flows
            .iter()
            .map(|&(flow, every)| {
                let (caller, samples, stopped) = (caller.clone(), samples.clone(), stopped.clone());
                tokio::spawn(async move {
                    let mut calls = tokio::task::JoinSet::new();
                    let mut every = tokio::time::interval(every);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !*stopped.borrow() {
                        every.tick().await;
                        let (caller, samples) = (caller.clone(), samples.clone());
                        calls.spawn(async move {
                            let started = Instant::now();
                            // The deadline bounds the answer's headers; a
                            // body that never ends is caught here.
                            let failure = match tokio::time::timeout(hang, caller.call(flow)).await
                            {
                                Ok(Ok(false)) => return,
                                Ok(Ok(true)) => None,
                                Ok(Err(failure)) => Some(failure),
                                Err(_) => {
                                    caller.hung(flow);
                                    Some(HUNG.to_owned())
                                }
                            };
                            samples.lock().push(Sample {
                                flow,
                                started,
                                ended: Instant::now(),
                                failure,
                            });
                        });
                        while calls.try_join_next().is_some() {}
                    }
                    while calls.join_next().await.is_some() {}
                })
            })
            .collect();
        Self {
            samples,
            stop,
            tasks,
        }
    }

    /// Stops starting calls, waits for those in flight, returns them all.
    pub(crate) async fn stop(self) -> Vec<Sample<F>> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap();
        }
        std::mem::take(&mut *self.samples.lock())
    }
}

/// How a failed call is recorded: its code, reason and message.
pub(crate) fn describe(status: &tonic::Status) -> String {
    let reason = tenancy_runtime::error::reason_of(status).map_or("", |r| r.as_str());
    format!("{:?} {reason}: {}", status.code(), status.message())
}

/// Whether `failure` is a login the hashing pool shed under overload
/// (RESOURCE_EXHAUSTED `UPSTREAM_BUSY`, tested on its own in identity): a
/// part that just started measures its first hashes on a machine busy
/// with the whole suite; overload protection, not what these tests
/// measure.
pub(crate) fn shed(failure: Option<&str>) -> bool {
    failure.is_some_and(|f| f.starts_with("ResourceExhausted UPSTREAM_BUSY:"))
}
