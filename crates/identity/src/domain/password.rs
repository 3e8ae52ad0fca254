//! Password rules (NIST 800-63B, OWASP ASVS 5 §6.2) and argon2id hashing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tenancy_runtime::Error;
use tenancy_runtime::metrics::{Counter, Gauge, Histogram, Metrics, latency_histogram};

use super::error::{IdentityError, Invalid};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

/// The longest password accepted, in bytes of UTF-8 (never truncated).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// The 10,000 most common passwords, most common first: the head of the
/// list Django ships (`django/contrib/auth/common-passwords.txt.gz`, BSD
/// licence, compiled by Royce Williams from breach corpora).
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// Checks a new password and returns its NFC form (what gets hashed).
pub(crate) fn check_new_password(
    field: &str,
    password: &str,
    min_chars: usize,
    email_local: Option<&str>,
) -> Result<String, IdentityError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(IdentityError::invalid(
            Invalid::PasswordTooLong,
            field,
            "at most 1024 bytes of UTF-8",
        ));
    }
    let nfc: String = password.nfc().collect();
    if nfc.chars().count() < min_chars {
        return Err(IdentityError::invalid(
            Invalid::PasswordTooShort,
            field,
            format!("at least {min_chars} characters"),
        ));
    }
    let lower = nfc.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return Err(IdentityError::invalid(
            Invalid::PasswordTooCommon,
            field,
            "is one of the most commonly used passwords",
        ));
    }
    if let Some(local) = email_local
        && local.chars().count() >= 3
        && lower.contains(local)
    {
        return Err(IdentityError::invalid(
            Invalid::PasswordTooCommon,
            field,
            "must not contain the email address",
        ));
    }
    Ok(nfc)
}

/// The NFC form of a presented password (for verification).
pub(crate) fn normalise(password: &str) -> String {
    password.nfc().collect()
}

/// argon2id parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HashParams {
    pub(crate) memory_kib: u32,
    pub(crate) iterations: u32,
    pub(crate) parallelism: u32,
}

/// Hashes and verifies on a bounded blocking pool: at most as many at once
/// as there are cores, never on the async workers. Admission control: a
/// hash whose expected wait for a slot (from the hashes admitted ahead of
/// it and the measured time of one hash) exceeds the configured bound, or
/// that could not finish before the caller's deadline ([`DEADLINE`]), is
/// refused at once (UPSTREAM_BUSY with a retry delay) instead of queueing;
/// a queued hash whose caller goes away is dropped with its future.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    dummy: Arc<String>,
    measured: PoolMetrics,
    admission: Arc<Admission>,
    memory: Arc<Memory>,
}

/// argon2's working memory (19 MiB at the default parameters), kept
/// between verifications: at most one buffer per slot of the pool, as
/// only a hash holding a slot takes one. Allocating it afresh for every
/// login cost a zeroed 19 MiB and ~4,900 page faults each time (a tenth of
/// the CPU of a saturated Login on two cores, mostly in the kernel). A
/// buffer holds the last verification's argon2 state until the next
/// overwrites it, as freed memory did before.
#[derive(Default)]
struct Memory(Mutex<Vec<Vec<Block>>>);

impl Memory {
    /// Runs `work` with a buffer of at least `blocks` blocks, then keeps
    /// the buffer, at most `keep` blocks of it.
    fn with<T>(&self, blocks: usize, keep: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buffer = self.0.lock().pop().unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let result = work(&mut buffer);
        if buffer.len() > keep {
            // A stored hash with more memory than today's parameters.
            buffer.truncate(keep);
            buffer.shrink_to_fit();
        }
        self.0.lock().push(buffer);
        result
    }
}

/// Whether `secret` hashes to `stored` (a PHC string's parts), computed in
/// `memory`; the outputs are compared in constant time. What argon2's
/// `PasswordVerifier` does, in memory that is not allocated for it.
fn matches(stored: &PasswordHash<'_>, secret: &[u8], memory: &Memory, keep: usize) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else {
        return false;
    };
    let Ok(version) = stored
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    memory.with(argon.params().block_count(), keep, |blocks| {
        argon
            .hash_password_into_with_memory(secret, salt, &mut *out, blocks)
            .is_ok()
    }) && Output::new(out).is_ok_and(|computed| computed == expected)
}

tokio::task_local! {
    /// When the caller of the current call gives up (its `grpc-timeout`),
    /// if it said; hashes that could not finish by then are refused.
    pub(crate) static DEADLINE: Option<Instant>;
}

/// The admission rule of the hashing pool.
struct Admission {
    /// Hashes that run at once.
    slots: usize,
    /// The longest expected wait for a slot that is accepted.
    max_wait: Duration,
    /// Hashes admitted and not finished (waiting or running).
    admitted: AtomicUsize,
    /// The time one hash takes, in nanoseconds: measured at start, then a
    /// moving average (weight 1/8) of the hashes run.
    hash_nanos: AtomicU64,
}

impl Admission {
    fn hash_time(&self) -> Duration {
        Duration::from_nanos(self.hash_nanos.load(Ordering::Relaxed))
    }

    /// Admits one hash, or says how long to wait before trying again.
    fn admit(self: &Arc<Self>, deadline: Option<Instant>) -> Result<Admitted, Duration> {
        let ahead = self.admitted.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(Arc::clone(self));
        let hash = self.hash_time();
        // Full rounds of the pool before a slot is free for this one.
        let rounds = u32::try_from(ahead / self.slots.max(1)).unwrap_or(u32::MAX);
        let wait = hash.saturating_mul(rounds);
        let too_late = deadline.is_some_and(|d| Instant::now() + wait + hash > d);
        if wait > self.max_wait || too_late {
            drop(admitted);
            return Err(wait.max(Duration::from_secs(1)));
        }
        Ok(admitted)
    }

    fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.hash_nanos.load(Ordering::Relaxed);
        let new = old - old / 8 + sample / 8;
        self.hash_nanos.store(new, Ordering::Relaxed);
    }
}

/// One hash admitted by the pool's admission control ([`Hasher::reserve`]);
/// leaves the count when dropped (finished, failed, or its caller went
/// away).
pub(crate) struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The hashing pool, measured: hashes waiting for a core, how long they
/// waited, how long one took.
#[derive(Clone)]
struct PoolMetrics {
    queued: Gauge,
    wait: Histogram,
    hash: Histogram,
    shed: Counter,
}

/// Takes one off the queue gauge when dropped.
struct Dequeue<'a>(&'a Gauge);

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl PoolMetrics {
    /// Counting, served by no registry (until [`Hasher::measured`]).
    fn unregistered() -> Self {
        Self {
            queued: Gauge::default(),
            wait: latency_histogram(),
            hash: latency_histogram(),
            shed: Counter::default(),
        }
    }
}

impl Hasher {
    /// A pool with one slot per core, refusing hashes that would wait
    /// longer than `max_wait` for a slot.
    pub(crate) fn new(params: HashParams, max_wait: Duration) -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let argon = argon(params)?;
        let salt = SaltString::generate(&mut OsRng);
        let started = Instant::now();
        let dummy = argon
            .hash_password(b"dummy password for unknown users", &salt)
            .map_err(|e| e.to_string())?
            .to_string();
        let hash_nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(dummy),
            measured: PoolMetrics::unregistered(),
            memory: Arc::default(),
            admission: Arc::new(Admission {
                slots: cores,
                max_wait,
                admitted: AtomicUsize::new(0),
                hash_nanos: AtomicU64::new(hash_nanos),
            }),
        })
    }

    /// The same hasher, measured into `metrics`.
    pub(crate) fn measured(mut self, metrics: &Metrics) -> Self {
        let slots = metrics.gauge(
            "tenancy_identity_password_hash_slots",
            "Password hashes (argon2id) that run at once: the cores this process sees",
        );
        slots.set(i64::try_from(self.permits.available_permits()).unwrap_or(i64::MAX));
        self.measured = PoolMetrics {
            queued: metrics.gauge(
                "tenancy_identity_password_hash_queue",
                "Password hashes (logins, sign-ups, password changes) waiting for a free slot of the hashing pool",
            ),
            wait: metrics.seconds_histogram(
                "tenancy_identity_password_hash_wait_seconds",
                "Time a password hash waited for a slot of the hashing pool",
            ),
            hash: metrics.seconds_histogram(
                "tenancy_identity_password_hash_seconds",
                "Time one password hash (argon2id) took, once it had a slot",
            ),
            shed: metrics.counter(
                "tenancy_identity_password_hash_shed",
                "Password hashes refused at once (UPSTREAM_BUSY) because their expected wait for a slot exceeded auth.password_hash_max_wait or the caller's deadline",
            ),
        };
        self
    }

    /// Hashes `secret` into a PHC string.
    pub(crate) async fn hash(&self, secret: String) -> Result<String, Error> {
        let params = self.params;
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon(params)
                .and_then(|a| {
                    a.hash_password(secret.as_bytes(), &salt)
                        .map(|h| h.to_string())
                        .map_err(|e| e.to_string())
                })
                .map_err(Error::internal)
        })
        .await
    }

    /// Verifies `secret` against `hash` (or against a dummy hash when there
    /// is none, so unknown users take as long). Returns (matches, needs
    /// rehash with the current parameters).
    pub(crate) async fn verify(
        &self,
        secret: String,
        hash: Option<String>,
    ) -> Result<(bool, bool), Error> {
        let admitted = self.reserve()?;
        self.verify_admitted(admitted, secret, hash).await
    }

    /// [`Self::verify`] in a place [`Self::reserve`]d earlier: a call that
    /// does other work before its hash (Login counts the attempt against
    /// its throttle first) reserves first, so that a call the pool sheds
    /// does no other work and counts nothing.
    pub(crate) async fn verify_admitted(
        &self,
        admitted: Admitted,
        secret: String,
        hash: Option<String>,
    ) -> Result<(bool, bool), Error> {
        let params = self.params;
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let memory = Arc::clone(&self.memory);
        self.run_admitted(admitted, move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return Ok((false, false));
            };
            let keep = usize::try_from(params.memory_kib).unwrap_or(usize::MAX);
            let ok = matches(&parsed, secret.as_bytes(), &memory, keep);
            let current = Params::try_from(&parsed).ok().is_some_and(|p| {
                p.m_cost() == params.memory_kib
                    && p.t_cost() == params.iterations
                    && p.p_cost() == params.parallelism
            }) && parsed.algorithm.as_str() == "argon2id";
            Ok((ok && real, ok && real && !current))
        })
        .await
    }

    /// Reserves a place for one hash in the pool, now: refused at once
    /// (UPSTREAM_BUSY with a retry delay) when its expected wait for a slot
    /// exceeds the bound or the caller's deadline ([`DEADLINE`]).
    pub(crate) fn reserve(&self) -> Result<Admitted, Error> {
        let deadline = DEADLINE.try_with(|d| *d).ok().flatten();
        self.admission.admit(deadline).map_err(|retry_after| {
            self.measured.shed.inc();
            Error {
                retry_after: Some(retry_after),
                ..Error::new(
                    tenancy_runtime::Reason::UpstreamBusy,
                    "too many password checks waiting; retry later",
                )
            }
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let admitted = self.reserve()?;
        self.run_admitted(admitted, work).await
    }

    async fn run_admitted<T: Send + 'static>(
        &self,
        _admitted: Admitted,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let queued = Instant::now();
        self.measured.queued.inc();
        // Leaves the queue however the wait ends (a caller that gives up
        // drops this future).
        let waiting = Dequeue(&self.measured.queued);
        let permit = self.permits.acquire().await;
        drop(waiting);
        let _permit = permit.map_err(|e| Error::internal(format_args!("hasher closed: {e}")))?;
        self.measured.wait.observe(queued.elapsed().as_secs_f64());
        let hash = self.measured.hash.clone();
        let admission = self.admission.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = at_idle_priority(work);
            let took = started.elapsed();
            hash.observe(took.as_secs_f64());
            admission.observe(took);
            result
        })
        .await
        .map_err(|e| Error::internal(format_args!("hasher task: {e}")))?
    }
}

/// Runs `work` with the thread at idle scheduling priority (Linux
/// SCHED_IDLE), then restores it. argon2 then uses every cycle the request
/// path leaves but never delays it: while logins saturate the CPU, cheap
/// calls like GetMe still get a core at once. Where the policy cannot be set,
/// the work runs at normal priority.
fn at_idle_priority<T>(work: impl FnOnce() -> T) -> T {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::ThreadPriority;
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let id = thread_native_id();
        let lowered = set_thread_priority_and_policy(
            id,
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .is_ok();
        let result = work();
        if lowered {
            // The blocking pool's threads serve other work afterwards.
            let _ = set_thread_priority_and_policy(
                id,
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
            );
        }
        result
    }
    #[cfg(not(target_os = "linux"))]
    work()
}

fn argon(p: HashParams) -> Result<Argon2<'static>, String> {
    let params =
        Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|e| e.to_string())?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_runtime::{Error, Reason};

    #[test]
    fn short_long_and_common_passwords_are_refused() {
        let e = check_new_password("p", "short", 12, None)
            .map_err(Error::from)
            .unwrap_err();
        assert_eq!(e.reason, Reason::PasswordTooShort);
        let e = check_new_password("p", &"a".repeat(1025), 12, None)
            .map_err(Error::from)
            .unwrap_err();
        assert_eq!(e.reason, Reason::PasswordTooLong);
        let e = check_new_password("p", "q1w2e3r4t5y6", 12, None)
            .map_err(Error::from)
            .unwrap_err();
        assert_eq!(e.reason, Reason::PasswordTooCommon);
        let e = check_new_password("p", "xx-alice-horse-battery", 12, Some("alice"))
            .map_err(Error::from)
            .unwrap_err();
        assert_eq!(e.reason, Reason::PasswordTooCommon);
    }

    #[test]
    fn length_counts_code_points_after_nfc() {
        // "é" as e + combining accent: 2 code points before NFC, 1 after.
        let decomposed = "e\u{301}".repeat(11);
        assert_eq!(
            check_new_password("p", &decomposed, 12, None)
                .map_err(Error::from)
                .unwrap_err()
                .reason,
            Reason::PasswordTooShort
        );
        assert!(check_new_password("p", &"é".repeat(12), 12, None).is_ok());
        // 64 characters and any Unicode are accepted, case is kept.
        let long = "Zz🙂".repeat(22);
        assert_eq!(check_new_password("p", &long, 12, None).unwrap(), long);
    }

    #[test]
    fn the_common_list_is_shipped() {
        assert!(COMMON.len() >= 9_000, "{}", COMMON.len());
        assert!(COMMON.contains("password"));
    }

    #[tokio::test]
    async fn hashes_verify_and_report_outdated_parameters() {
        let low = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hasher = Hasher::new(low, Duration::from_secs(1)).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap(),
            (true, false)
        );
        assert_eq!(
            hasher
                .verify("wrong".into(), Some(hash.clone()))
                .await
                .unwrap(),
            (false, false)
        );
        let stronger = Hasher::new(
            HashParams {
                memory_kib: 2048,
                ..low
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            stronger
                .verify("correct horse".into(), Some(hash))
                .await
                .unwrap(),
            (true, true)
        );
        assert_eq!(
            hasher.verify("x".into(), None).await.unwrap(),
            (false, false)
        );
    }

    /// Verification in reused memory agrees with argon2's own verifier on
    /// hashes made elsewhere (other algorithms, versions, lanes, output
    /// lengths, more memory than today's parameters), refuses a wrong
    /// password and a damaged hash, and keeps at most one buffer a slot,
    /// never larger than today's parameters need.
    #[tokio::test]
    async fn hashes_made_elsewhere_verify_in_reused_memory() {
        use argon2::password_hash::PasswordVerifier as _;
        let params = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hasher = Hasher::new(params, Duration::from_secs(1)).unwrap();
        let made = |algorithm, version, m, t, p, len| {
            let params = Params::new(m, t, p, Some(len)).unwrap();
            Argon2::new(algorithm, version, params)
                .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        };
        for hash in [
            made(Algorithm::Argon2id, Version::V0x13, 1024, 1, 1, 32),
            made(Algorithm::Argon2i, Version::V0x13, 2048, 2, 2, 16),
            made(Algorithm::Argon2d, Version::V0x10, 512, 3, 4, 64),
            made(Algorithm::Argon2id, Version::V0x13, 4096, 1, 1, 32),
        ] {
            let parsed = PasswordHash::new(&hash).unwrap();
            assert!(
                Argon2::default()
                    .verify_password(b"correct horse", &parsed)
                    .is_ok()
            );
            let right = hasher.verify("correct horse".into(), Some(hash.clone()));
            assert!(right.await.unwrap().0, "{hash}");
            let wrong = hasher.verify("correct horsE".into(), Some(hash.clone()));
            assert!(!wrong.await.unwrap().0, "{hash}");
            // One character inside the output changed (the last may hold
            // only padding bits).
            let at = hash.len() - 5;
            let was = &hash[at..=at];
            let damaged = format!(
                "{}{}{}",
                &hash[..at],
                if was == "A" { "B" } else { "A" },
                &hash[at + 1..]
            );
            let damaged = hasher.verify("correct horse".into(), Some(damaged));
            assert!(!damaged.await.unwrap().0, "{hash}");
        }
        let buffers = hasher.memory.0.lock();
        assert_eq!(buffers.len(), 1, "one verification at a time, one buffer");
        assert!(
            buffers.iter().all(|b| b.len() <= 1024),
            "shrunk back to today's parameters"
        );
    }
}
