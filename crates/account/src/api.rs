//! The gRPC surface of the account service. Methods not implemented yet
//! answer UNIMPLEMENTED (the generated default stubs).

use sea_orm::DatabaseConnection;
use tenancy_proto::account::{
    account_internal_service_server::AccountInternalService, account_service_server::AccountService,
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
impl AccountService for Api {}

#[tonic::async_trait]
impl AccountInternalService for Api {}
