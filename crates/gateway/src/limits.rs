//! Abuse limits: per client address on rate-limited PUBLIC methods (login,
//! sign-up, password reset), per user on everything authenticated, and per
//! client address on API-token introspections that fail.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use tenancy_runtime::config::GatewayConfig;
use tenancy_runtime::metrics::Counter;
use tenancy_runtime::{Error, Reason};

use crate::id::Id;

/// The gateway's rate limiters.
pub struct RateLimits {
    public: DefaultKeyedRateLimiter<IpAddr>,
    principal: DefaultKeyedRateLimiter<Id>,
    clock: DefaultClock,
    refused: crate::metrics::Limits,
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    /// Limits as configured.
    pub fn new(config: &GatewayConfig) -> Self {
        let public = Quota::per_minute(non_zero(config.public_rate_per_minute))
            .allow_burst(non_zero(config.public_burst));
        let principal = Quota::per_second(non_zero(config.principal_rate_per_second))
            .allow_burst(non_zero(config.principal_burst));
        Self {
            public: RateLimiter::keyed(public),
            principal: RateLimiter::keyed(principal),
            clock: DefaultClock::default(),
            refused: crate::metrics::Limits::default(),
        }
    }

    /// The same limits, counting refusals into `metrics`.
    pub fn measured(mut self, metrics: &tenancy_runtime::Metrics) -> Self {
        self.refused = crate::metrics::Limits::new(metrics);
        self
    }

    /// The counters of refusals.
    pub(crate) fn refused(&self) -> &crate::metrics::Limits {
        &self.refused
    }

    /// One rate-limited PUBLIC call from `ip` (IPv6: counted per /64).
    pub fn check_public(&self, ip: IpAddr) -> Result<(), Error> {
        let key = crate::client_ip::subscriber(ip);
        self.public.check_key(&key).map_err(|not_until| {
            self.refused.client_address.inc();
            Error::throttled(
                Reason::RateLimited,
                not_until.wait_time_from(self.clock.now()),
            )
        })
    }

    /// One authenticated call by `user`.
    pub fn check_principal(&self, user: Id) -> Result<(), Error> {
        self.principal.check_key(&user).map_err(|not_until| {
            self.refused.user.inc();
            Error::throttled(
                Reason::RateLimited,
                not_until.wait_time_from(self.clock.now()),
            )
        })
    }

    /// Forgets idle keys; run periodically so memory stays bounded.
    pub fn prune(&self) {
        self.public.retain_recent();
        self.principal.retain_recent();
    }
}

/// Failed API-token introspections per client address (IPv6: per /64).
///
/// Every well-formed `tny_` string the gateway has not cached costs an
/// introspection call to identity; a stranger cycling through made-up
/// tokens would make the gateway ask identity for each. An address whose
/// guesses failed `gateway.api_token_failure_burst` times (refilling at
/// `gateway.api_token_failures_per_minute`) gets RESOURCE_EXHAUSTED
/// `RATE_LIMITED` for uncached tokens until the budget refills, without
/// identity being asked. Only failures count: an address introducing many
/// real tokens (after a gateway restart, say) is never held up, and cached
/// tokens, good or dead, are answered as before.
pub(crate) struct FailedLookups {
    budget: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses out of budget, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
    refused: Counter,
}

impl FailedLookups {
    /// Limits as configured; refusals counted into `refused`.
    pub(crate) fn new(config: &GatewayConfig, refused: Counter) -> Self {
        let quota = Quota::per_minute(non_zero(config.api_token_failures_per_minute))
            .allow_burst(non_zero(config.api_token_failure_burst));
        Self {
            budget: RateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            refused,
        }
    }

    /// Whether `ip` may have an uncached token introspected now.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Error> {
        let key = crate::client_ip::subscriber(ip);
        let now = Instant::now();
        let mut blocked = self.blocked.lock();
        match blocked.get(&key) {
            Some(until) if *until > now => {
                let wait = *until - now;
                drop(blocked);
                self.refused.inc();
                Err(Error::throttled(Reason::RateLimited, wait))
            }
            Some(_) => {
                blocked.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// An introspection for `ip` found no live token: one failure spent;
    /// the address is blocked when its budget is gone.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let key = crate::client_ip::subscriber(ip);
        if let Err(not_until) = self.budget.check_key(&key) {
            let wait = not_until.wait_time_from(self.clock.now());
            self.blocked
                .lock()
                .insert(key, Instant::now() + wait.max(Duration::from_millis(1)));
        }
    }

    /// Forgets idle addresses; run periodically so memory stays bounded.
    pub(crate) fn prune(&self) {
        self.budget.retain_recent();
        let now = Instant::now();
        self.blocked.lock().retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_the_address_is_throttled_with_a_retry_delay() {
        let config = GatewayConfig {
            public_rate_per_minute: 10,
            public_burst: 3,
            ..GatewayConfig::default()
        };
        let limits = RateLimits::new(&config);
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_public(ip).unwrap();
        }
        let error = limits.check_public(ip).unwrap_err();
        assert_eq!(error.reason, Reason::RateLimited);
        assert!(error.retry_after.unwrap() > std::time::Duration::ZERO);
        limits.check_public("203.0.113.2".parse().unwrap()).unwrap();
    }

    /// Issue 21 §10: an IPv6 client cannot multiply its budget by hopping
    /// addresses inside its /64; another /64 has its own.
    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_public_budget() {
        let config = GatewayConfig {
            public_rate_per_minute: 10,
            public_burst: 3,
            ..GatewayConfig::default()
        };
        let limits = RateLimits::new(&config);
        for host in 1..=3 {
            let ip: IpAddr = format!("2001:db8:7:9::{host}").parse().unwrap();
            limits.check_public(ip).unwrap();
        }
        let hopped: IpAddr = "2001:db8:7:9:ffff::4".parse().unwrap();
        assert_eq!(
            limits.check_public(hopped).unwrap_err().reason,
            Reason::RateLimited
        );
        limits
            .check_public("2001:db8:7:a::1".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn failed_lookups_block_an_address_once_its_budget_is_spent() {
        let config = GatewayConfig {
            api_token_failures_per_minute: 1,
            api_token_failure_burst: 2,
            ..GatewayConfig::default()
        };
        let failures = FailedLookups::new(&config, Counter::default());
        let ip: IpAddr = "2001:db8:1:1::1".parse().unwrap();
        for _ in 0..2 {
            failures.check(ip).unwrap();
            failures.failed(ip);
        }
        failures.check(ip).unwrap();
        failures.failed(ip);
        let refused = failures
            .check("2001:db8:1:1::2".parse().unwrap())
            .unwrap_err();
        assert_eq!(refused.reason, Reason::RateLimited);
        assert!(refused.retry_after.unwrap() > Duration::ZERO);
        failures.check("2001:db8:1:2::1".parse().unwrap()).unwrap();
    }
}
