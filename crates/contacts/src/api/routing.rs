//! ContactsInternalService routing: ResolveRecipients and Notify.

use tenancy_proto::contacts as pb;
use tonic::{Response, Status};

use super::Api;

/// How the service reaches identity and account.
#[derive(Clone)]
pub(crate) struct Directory {}

impl Api {
    pub(super) async fn resolve_recipients_impl(
        &self,
        _r: pb::ResolveRecipientsRequest,
    ) -> Result<Response<pb::ResolveRecipientsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn notify_impl(
        &self,
        _r: pb::NotifyRequest,
    ) -> Result<Response<pb::NotifyResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}

impl Directory {
    pub(crate) fn new(_context: &tenancy_runtime::Context) -> Self {
        Self {}
    }
}
