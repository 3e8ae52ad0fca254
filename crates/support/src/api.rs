//! The gRPC surface of the support service. Methods not implemented yet
//! answer UNIMPLEMENTED (the generated default stubs).

use sea_orm::DatabaseConnection;
use tenancy_proto::support::{
    support_service_server::SupportService, support_staff_service_server::SupportStaffService,
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
impl SupportService for Api {}

#[tonic::async_trait]
impl SupportStaffService for Api {}
