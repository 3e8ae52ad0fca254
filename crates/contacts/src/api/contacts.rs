//! ContactsService: contacts and notification preferences.

use tenancy_proto::contacts as pb;
use tonic::{Request, Response, Status};

use super::Api;

impl Api {
    pub(super) async fn create_contact_impl(
        &self,
        _request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::CreateContactResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn get_contact_impl(
        &self,
        _request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::GetContactResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn update_contact_impl(
        &self,
        _request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn delete_contact_impl(
        &self,
        _request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn list_contacts_impl(
        &self,
        _request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn set_primary_contact_impl(
        &self,
        _request: Request<pb::SetPrimaryContactRequest>,
    ) -> Result<Response<pb::SetPrimaryContactResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn resend_contact_verification_impl(
        &self,
        _request: Request<pb::ResendContactVerificationRequest>,
    ) -> Result<Response<pb::ResendContactVerificationResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn verify_contact_email_impl(
        &self,
        _request: Request<pb::VerifyContactEmailRequest>,
    ) -> Result<Response<pb::VerifyContactEmailResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn get_notification_preferences_impl(
        &self,
        _request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Result<Response<pb::GetNotificationPreferencesResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    pub(super) async fn update_notification_preferences_impl(
        &self,
        _request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Result<Response<pb::UpdateNotificationPreferencesResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}
