//! The gRPC surface of the contacts service. Methods not implemented yet
//! answer UNIMPLEMENTED (the generated default stubs).

use sea_orm::DatabaseConnection;
use tenancy_proto::contacts::{
    contacts_internal_service_server::ContactsInternalService,
    contacts_service_server::ContactsService,
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
impl ContactsService for Api {}

#[tonic::async_trait]
impl ContactsInternalService for Api {}
