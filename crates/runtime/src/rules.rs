//! Every method's access rule, read from the descriptor set.
//!
//! Rules are declared in the .proto files as the `tenancy.auth.v1.access`
//! method option; this is the one place that turns them into a lookup table
//! keyed by the gRPC path (`/package.Service/Method`). A method without a
//! rule is absent from the table, and absent means refused (default deny).

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, Value};
use tenancy_proto::auth::{AccessRule, Audience};

/// The full name of the access-rule extension.
pub const ACCESS_EXTENSION: &str = "tenancy.auth.v1.access";

/// Why the rule table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The descriptor bytes do not decode.
    #[error("descriptor set does not decode: {0}")]
    Decode(#[from] prost_reflect::DescriptorError),
    /// The descriptor set lacks the extension itself.
    #[error("descriptor set has no {ACCESS_EXTENSION} extension")]
    NoExtension,
    /// A rule does not transcode.
    #[error("rule of {0} is malformed")]
    Malformed(String),
}

/// One method as the policy table knows it.
#[derive(Clone, Debug)]
pub struct Method {
    /// `/package.Service/Method`.
    pub path: String,
    /// `package.Service`.
    pub service: String,
    /// Whether the client streams.
    pub client_streaming: bool,
    /// Whether the server streams.
    pub server_streaming: bool,
    /// Whether the method only reads (see [`is_read_only`]).
    pub read_only: bool,
    /// Whether a call may be repeated on another replica although it may
    /// have reached one: a read, or a write idempotent by contract (see
    /// [`IDEMPOTENT_WRITES`]).
    pub repeatable: bool,
    /// The declared rule; `None` when the method has none (refused).
    pub rule: Option<AccessRule>,
}

/// The access rules of every method of the suite.
#[derive(Clone, Debug, Default)]
pub struct MethodRules {
    methods: HashMap<String, Method>,
}

impl MethodRules {
    /// The rules of the Tenancy protocol compiled into this binary.
    pub fn tenancy() -> Result<Self, RulesError> {
        Self::from_descriptor_set(tenancy_proto::FILE_DESCRIPTOR_SET)
    }

    /// Builds the table from an encoded `FileDescriptorSet`; only services
    /// in `tenancy.*` packages are ours.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, RulesError> {
        let pool = DescriptorPool::decode(bytes)?;
        let extension = pool
            .get_extension_by_name(ACCESS_EXTENSION)
            .ok_or(RulesError::NoExtension)?;
        let mut methods = HashMap::new();
        for service in pool.services() {
            if !service.full_name().starts_with("tenancy.") {
                continue;
            }
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                let options = method.options();
                let rule = if options.has_extension(&extension) {
                    let value = options.get_extension(&extension);
                    match value.as_ref() {
                        Value::Message(message) => Some(
                            message
                                .transcode_to::<AccessRule>()
                                .map_err(|_| RulesError::Malformed(path.clone()))?,
                        ),
                        _ => return Err(RulesError::Malformed(path)),
                    }
                } else {
                    None
                };
                let read_only = is_read_only(method.name());
                let repeatable = read_only || IDEMPOTENT_WRITES.contains(&path.as_str());
                methods.insert(
                    path.clone(),
                    Method {
                        path,
                        service: service.full_name().to_owned(),
                        client_streaming: method.is_client_streaming(),
                        server_streaming: method.is_server_streaming(),
                        read_only,
                        repeatable,
                        rule,
                    },
                );
            }
        }
        Ok(Self { methods })
    }

    /// The method at a gRPC path, if it is one of ours.
    pub fn method(&self, path: &str) -> Option<&Method> {
        self.methods.get(path)
    }

    /// The rule of the method at `path`; `None` for unknown methods and for
    /// methods without a rule, which are both refused.
    pub fn rule(&self, path: &str) -> Option<&AccessRule> {
        self.methods.get(path).and_then(|m| m.rule.as_ref())
    }

    /// Every method, in no particular order.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.methods.values()
    }

    /// Whether `path` is a PUBLIC method (callable without credentials).
    pub fn is_public(&self, path: &str) -> bool {
        self.rule(path)
            .is_some_and(|r| r.audience() == Audience::Public)
    }
}

/// The writes between services that are idempotent by contract (each
/// one's proto says so): repeated with the same request, they change
/// nothing more and answer as the first time. A call of one that a replica
/// may have received (its connection lost before the answer, or answered
/// UNAVAILABLE) is asked again of another replica like a read, instead of
/// failing the change that needs it. Not reads: a read-only API token
/// still may not call them.
pub const IDEMPOTENT_WRITES: [&str; 4] = [
    // One user per email, whoever asks and however often.
    "/tenancy.identity.v1.IdentityInternalService/EnsureUser",
    // Revokes what existed at `change_time`; a repeat revokes nothing more.
    "/tenancy.identity.v1.IdentityInternalService/RevokeAccountAccess",
    // Deduplicated by `request_id`, which every caller sets.
    "/tenancy.contacts.v1.ContactsInternalService/SendEmail",
    "/tenancy.contacts.v1.ContactsInternalService/Notify",
];

/// Whether the method named `name` (`GetMe`, `BatchCheckAccess`) only
/// reads: `Get…`, `BatchGet…`, `List…`, `Watch…`, `Check…`,
/// `BatchCheck…`, `Resolve…`, `Introspect…`. What a read-only API token may
/// call, and what a service-to-service call may repeat on another replica
/// after UNAVAILABLE or a lost connection (repeating it changes nothing).
pub fn is_read_only(name: &str) -> bool {
    const READS: [&str; 8] = [
        "Get",
        "BatchGet",
        "List",
        "Watch",
        "Check",
        "BatchCheck",
        "Resolve",
        "Introspect",
    ];
    READS.iter().any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tenancy_method_declares_a_rule_with_an_audience() {
        let rules = MethodRules::tenancy().unwrap();
        assert!(rules.methods().count() > 0);
        let missing: Vec<&str> = rules
            .methods()
            .filter(|m| {
                m.rule
                    .as_ref()
                    .is_none_or(|r| r.audience() == Audience::Unspecified)
            })
            .map(|m| m.path.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "methods without an access rule: {missing:?}"
        );
    }

    #[test]
    fn account_methods_name_a_minimum_role_and_internal_services_are_internal() {
        let rules = MethodRules::tenancy().unwrap();
        for method in rules.methods() {
            let rule = method.rule.as_ref().unwrap();
            if rule.audience() == Audience::Account {
                assert_ne!(
                    rule.min_role(),
                    tenancy_proto::auth::Role::Unspecified,
                    "{} has no min_role",
                    method.path
                );
            }
            if method.service.ends_with("InternalService") {
                assert_eq!(rule.audience(), Audience::Internal, "{}", method.path);
            }
        }
    }

    /// Every INTERNAL method names who may call it, and nothing else names
    /// callers (only the gateway forwards client calls).
    #[test]
    fn every_internal_method_names_its_callers_and_only_internal_methods_do() {
        let rules = MethodRules::tenancy().unwrap();
        let mut internal = 0;
        for method in rules.methods() {
            let rule = method.rule.as_ref().unwrap();
            let callers: Vec<_> = rule.callers().collect();
            if rule.audience() == Audience::Internal {
                internal += 1;
                assert!(!callers.is_empty(), "{} names no caller", method.path);
                assert!(
                    !callers.contains(&tenancy_proto::auth::Caller::Unspecified),
                    "{} names CALLER_UNSPECIFIED",
                    method.path
                );
            } else {
                assert!(callers.is_empty(), "{} names callers", method.path);
            }
        }
        assert!(internal >= 27, "only {internal} INTERNAL methods found");
        let grant = rules
            .rule("/tenancy.identity.v1.IdentityInternalService/GrantStaff")
            .unwrap();
        assert_eq!(
            grant.callers().collect::<Vec<_>>(),
            [tenancy_proto::auth::Caller::Operator]
        );
    }

    /// What a retry may repeat: reads, never a write; the names the
    /// services call each other with are classified as expected.
    #[test]
    fn reads_are_told_from_writes() {
        let rules = MethodRules::tenancy().unwrap();
        let read_only = |path: &str| rules.method(path).unwrap().read_only;
        for path in [
            "/tenancy.account.v1.AccountInternalService/GetPrincipalState",
            "/tenancy.account.v1.AccountInternalService/GetDefaultAccount",
            "/tenancy.account.v1.AccountInternalService/BatchCheckAccess",
            "/tenancy.account.v1.AccountInternalService/WatchPolicies",
            "/tenancy.identity.v1.IdentityInternalService/BatchGetUsers",
            "/tenancy.identity.v1.IdentityInternalService/IntrospectApiToken",
            "/tenancy.contacts.v1.ContactsInternalService/ResolveRecipients",
            "/tenancy.account.v1.AccountService/ListMembers",
        ] {
            assert!(read_only(path), "{path}");
        }
        for path in [
            "/tenancy.identity.v1.IdentityInternalService/RevokeAccountAccess",
            "/tenancy.identity.v1.IdentityInternalService/RecordUsage",
            "/tenancy.identity.v1.IdentityInternalService/VerifyCodeWord",
            "/tenancy.identity.v1.IdentityInternalService/EnsureUser",
            "/tenancy.contacts.v1.ContactsInternalService/Notify",
            "/tenancy.contacts.v1.ContactsInternalService/SendEmail",
            "/tenancy.account.v1.AccountInternalService/RecordAuditEvent",
            "/tenancy.identity.v1.IdentityService/Login",
        ] {
            assert!(!read_only(path), "{path}");
        }
    }

    /// What a retry may repeat besides reads: the writes idempotent by
    /// contract, each of them a method; every other write never.
    #[test]
    fn idempotent_writes_are_repeatable_other_writes_not() {
        let rules = MethodRules::tenancy().unwrap();
        for path in IDEMPOTENT_WRITES {
            let method = rules.method(path).unwrap();
            assert!(method.repeatable && !method.read_only, "{path}");
        }
        let repeatable = |path: &str| rules.method(path).unwrap().repeatable;
        assert!(repeatable(
            "/tenancy.identity.v1.IdentityInternalService/BatchGetUsers"
        ));
        for path in [
            "/tenancy.identity.v1.IdentityInternalService/RecordUsage",
            "/tenancy.identity.v1.IdentityInternalService/VerifyCodeWord",
            "/tenancy.identity.v1.IdentityInternalService/CreateApiUser",
            "/tenancy.identity.v1.IdentityInternalService/SetInitialPassword",
            "/tenancy.account.v1.AccountInternalService/RecordAuditEvent",
            "/tenancy.account.v1.AccountService/InviteMember",
            "/tenancy.identity.v1.IdentityService/Login",
        ] {
            assert!(!repeatable(path), "{path}");
        }
    }

    #[test]
    fn login_is_public_and_rate_limited() {
        let rules = MethodRules::tenancy().unwrap();
        let login = rules
            .rule("/tenancy.identity.v1.IdentityService/Login")
            .unwrap();
        assert_eq!(login.audience(), Audience::Public);
        assert!(login.rate_limited);
        assert!(rules.is_public("/tenancy.identity.v1.IdentityService/Login"));
        assert!(!rules.is_public("/tenancy.identity.v1.IdentityService/GetMe"));
        assert!(
            rules
                .rule("/tenancy.identity.v1.IdentityService/NoSuchMethod")
                .is_none()
        );
    }
}
