//! Abuse limits: per client address on rate-limited PUBLIC methods (login,
//! sign-up, password reset), per user on everything authenticated.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tenancy_runtime::config::GatewayConfig;
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
}
