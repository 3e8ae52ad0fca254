//! The gRPC surface of the identity service. Methods not implemented yet
//! answer UNIMPLEMENTED (the generated default stubs).

use sea_orm::DatabaseConnection;
use tenancy_proto::identity::{
    identity_internal_service_server::IdentityInternalService,
    identity_service_server::IdentityService,
};

/// The handlers; cheap to clone (the database handle is a pool).
#[derive(Clone)]
pub(crate) struct Api {
    #[allow(dead_code)]
    db: DatabaseConnection,
}

impl Api {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[tonic::async_trait]
impl IdentityService for Api {}

#[tonic::async_trait]
impl IdentityInternalService for Api {}
