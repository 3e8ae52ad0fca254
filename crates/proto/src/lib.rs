//! The Tenancy protocol: tonic client and server stubs generated from
//! `proto/tenancy/**` at build time, and the encoded descriptor set.
//!
//! The descriptor set carries every method's `tenancy.auth.v1.access` rule
//! and the proto comments, so server reflection shows engineers documented
//! methods and the gateway can build its routing and policy table from it.
//!
//! [`errors::Reason`] is the catalogue of every `ErrorInfo.reason` the suite
//! returns, generated from `proto/tenancy/errors/v1/reason.proto` with each
//! reason's gRPC code; `tenancy_runtime::Error` only accepts these.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Generated code, one module per protobuf package.
pub mod tenancy {
    /// `tenancy.auth.v1`: access rules and the forwarded principal.
    pub mod auth {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("tenancy.auth.v1");
        }
    }
    /// `tenancy.identity.v1`: users, logins, sessions, tokens.
    pub mod identity {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("tenancy.identity.v1");
        }
    }
    /// `tenancy.account.v1`: accounts, members, policies.
    pub mod account {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("tenancy.account.v1");
        }
    }
    /// `tenancy.contacts.v1`: contacts, notifications, outbox.
    pub mod contacts {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("tenancy.contacts.v1");
        }
    }
    /// `tenancy.errors.v1`: the catalogue of error reasons.
    pub mod errors {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/tenancy_reasons.rs"));
        }
    }
    /// `tenancy.support.v1`: tickets and support staff.
    pub mod support {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("tenancy.support.v1");
        }
    }
}

pub use tenancy::{
    account::v1 as account, auth::v1 as auth, contacts::v1 as contacts, errors::v1 as errors,
    identity::v1 as identity, support::v1 as support,
};

/// The encoded `FileDescriptorSet` of every Tenancy proto file, with imports,
/// comments and custom options.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tenancy_descriptor.bin"));

/// The proto file of the error-reason catalogue ([`errors::Reason`]). Every
/// Tenancy server describes it through reflection, whatever it serves: every
/// error it returns names one of its values.
pub const ERRORS_FILE: &str = "tenancy/errors/v1/reason.proto";

/// Fully-qualified names of the services clients reach through the gateway.
pub const PUBLIC_SERVICES: &[&str] = &[
    "tenancy.identity.v1.IdentityService",
    "tenancy.account.v1.AccountService",
    "tenancy.contacts.v1.ContactsService",
    "tenancy.support.v1.SupportService",
    "tenancy.support.v1.SupportStaffService",
];
