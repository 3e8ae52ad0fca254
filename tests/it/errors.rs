//! What clients receive keeps the error catalogue's promises: refusals of
//! every service and of the gateway itself, of every client-error code,
//! driven through the gateway, each carry a reason of the catalogue that
//! the gateway's reflection serves (`grpcurl describe
//! tenancy.errors.v1.Reason`) with the code the catalogue declares for it.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, Value};
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::account::{
    AccessScope, CreateAccountRequest, GetMemberRequest, InviteMemberRequest, LeaveAccountRequest,
    ListMembersRequest, ResendInvitationRequest, ServiceAccess,
};
use tenancy_proto::auth::Role;
use tenancy_proto::contacts::contacts_service_client::ContactsServiceClient;
use tenancy_proto::contacts::{Contact, GetContactRequest, UpdateContactRequest};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{
    BatchGetUsersRequest, ChangePasswordRequest, ConfirmTotpEnrollmentRequest, GetMeRequest,
    ListLoginEventsRequest, LoginRequest, RefreshSessionRequest, RevokeSessionRequest,
    SignUpRequest, SwitchAccountRequest, UpdateMeRequest, VerifyEmailRequest,
};
use tenancy_proto::support::support_service_client::SupportServiceClient;
use tenancy_proto::support::support_staff_service_client::SupportStaffServiceClient;
use tenancy_proto::support::{
    CreateTicketRequest, GetTicketRequest, ListQueueRequest, TicketCategory, TicketPriority,
};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_types::StatusExt as _;

use crate::gateway::{Suite, bearer};

/// One reflection question, one answer: the encoded files it returns.
async fn reflect(gateway: &Channel, request: MessageRequest) -> Vec<Vec<u8>> {
    let mut client = ServerReflectionClient::new(gateway.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto,
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// The catalogue as a client discovers it through the gateway's
/// reflection: reason name → gRPC code number, read from the
/// `(tenancy.errors.v1.code)` option of each `Reason` value.
async fn reflected_catalogue(gateway: &Channel) -> HashMap<String, i32> {
    // Raw bytes: prost_types would drop the custom options on decoding.
    let mut files: Vec<(prost_types::FileDescriptorProto, Vec<u8>)> = Vec::new();
    let mut wanted = vec![MessageRequest::FileContainingSymbol(
        "tenancy.errors.v1.Reason".to_owned(),
    )];
    while let Some(request) = wanted.pop() {
        for bytes in reflect(gateway, request).await {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            if files.iter().any(|(f, _)| f.name == file.name) {
                continue;
            }
            for dependency in &file.dependency {
                if !files.iter().any(|(f, _)| f.name() == dependency) {
                    wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                }
            }
            files.push((file, bytes));
        }
    }
    // Dependencies first.
    files.sort_by_key(|(f, _)| f.name() != "google/protobuf/descriptor.proto");
    let mut pool = DescriptorPool::new();
    for (_, bytes) in files {
        pool.decode_file_descriptor_proto(bytes.as_slice()).unwrap();
    }
    let reason = pool.get_enum_by_name("tenancy.errors.v1.Reason").unwrap();
    let code = pool
        .get_extension_by_name("tenancy.errors.v1.code")
        .unwrap();
    reason
        .values()
        .filter(|v| v.number() != 0)
        .map(|v| {
            let Value::EnumNumber(n) = v.options().get_extension(&code).into_owned() else {
                panic!("{} has no code", v.name());
            };
            (v.name().to_owned(), n)
        })
        .collect()
}

/// A call to a path the gateway does not know.
async fn unknown_method(gateway: &Channel) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(gateway.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/tenancy.nothing.v1.NoService/Nothing");
    grpc.unary::<(), (), _>(
        tonic::Request::new(()),
        path,
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn every_refusal_through_the_gateway_has_a_catalogue_reason_with_its_code() {
    let suite = Suite::start(|_| {}).await;
    let gateway = suite.gateway.clone();
    let catalogue = reflected_catalogue(&gateway).await;
    assert!(
        catalogue.len() > 100,
        "{} reasons reflected",
        catalogue.len()
    );
    assert_eq!(
        catalogue["PAGE_TOKEN_INVALID"],
        tonic::Code::InvalidArgument as i32
    );

    let uuid = "0190a0a0-0000-7000-8000-000000000000".to_owned();
    let mut refusals: Vec<(&str, tonic::Status)> = Vec::new();
    let mut anonymous = IdentityServiceClient::new(gateway.clone());

    // The gateway's own refusals.
    refusals.push((
        "no credentials",
        anonymous.get_me(GetMeRequest::default()).await.unwrap_err(),
    ));
    refusals.push((
        "garbage token",
        suite
            .identity("garbage")
            .get_me(GetMeRequest::default())
            .await
            .unwrap_err(),
    ));
    refusals.push(("unknown method", unknown_method(&gateway).await));
    refusals.push((
        "internal method from outside",
        IdentityInternalServiceClient::new(gateway.clone())
            .batch_get_users(BatchGetUsersRequest::default())
            .await
            .unwrap_err(),
    ));

    // Identity, anonymous.
    refusals.push((
        "sign-up with bad fields",
        anonymous
            .sign_up(SignUpRequest {
                email: "not an email".into(),
                password: "short".into(),
                name: String::new(),
                phone: String::new(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "unknown verification token",
        anonymous
            .verify_email(VerifyEmailRequest {
                token: "nonsense".into(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "unknown refresh token",
        anonymous
            .refresh_session(RefreshSessionRequest {
                refresh_token: "nonsense".into(),
            })
            .await
            .unwrap_err(),
    ));

    // Identity, as a user without an account.
    let user = suite.user("ada@example.com").await;
    refusals.push((
        "wrong password",
        anonymous
            .login(LoginRequest {
                email: "ada@example.com".into(),
                password: "not the password at all".into(),
                account_id: String::new(),
                unlock_token: String::new(),
            })
            .await
            .unwrap_err(),
    ));
    let mut identity = suite.identity(&user);
    refusals.push((
        "empty update mask",
        identity
            .update_me(UpdateMeRequest::default())
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "wrong current password",
        identity
            .change_password(ChangePasswordRequest {
                current_password: "not the password at all".into(),
                new_password: "another long enough passphrase".into(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "garbage page token",
        identity
            .list_login_events(ListLoginEventsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "unknown session",
        identity
            .revoke_session(RevokeSessionRequest {
                session_id: uuid.clone(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "TOTP confirmation without enrolment",
        identity
            .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
                totp_code: "123456".into(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "switch to a stranger's account",
        identity
            .switch_account(SwitchAccountRequest {
                account_id: uuid.clone(),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "account method without an account",
        suite
            .account(&user)
            .list_members(ListMembersRequest::default())
            .await
            .unwrap_err(),
    ));

    // Account, as the owner of a fresh account.
    let (_, owner) = suite.account_of(&user).await;
    let mut account = AccountServiceClient::with_interceptor(gateway.clone(), bearer(&owner));
    refusals.push((
        "account without fields",
        account
            .create_account(CreateAccountRequest::default())
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "unknown member",
        account
            .get_member(GetMemberRequest {
                user_id: uuid.clone(),
            })
            .await
            .unwrap_err(),
    ));
    let scope = AccessScope {
        portal_access: true,
        service_access: ServiceAccess::All as i32,
        ..Default::default()
    };
    refusals.push((
        "inviting a member",
        account
            .invite_member(InviteMemberRequest {
                email: "ada@example.com".into(),
                role: Role::Manager as i32,
                access_scope: Some(scope.clone()),
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "the last owner leaves",
        account
            .leave_account(LeaveAccountRequest {})
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "garbage member page token",
        account
            .list_members(ListMembersRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    let invitation = account
        .invite_member(InviteMemberRequest {
            email: "bob@example.com".into(),
            role: Role::Manager as i32,
            access_scope: Some(scope),
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    let resend = || {
        let mut account = account.clone();
        let invitation_id = invitation.id.clone();
        async move {
            account
                .resend_invitation(ResendInvitationRequest { invitation_id })
                .await
        }
    };
    let _ = resend().await;
    refusals.push(("resending at once", resend().await.unwrap_err()));

    // Contacts.
    let mut contacts = ContactsServiceClient::with_interceptor(gateway.clone(), bearer(&owner));
    refusals.push((
        "unknown contact",
        contacts
            .get_contact(GetContactRequest { id: uuid.clone() })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "contact update without mask",
        contacts
            .update_contact(UpdateContactRequest {
                contact: Some(Contact {
                    id: uuid.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await
            .unwrap_err(),
    ));

    // Support.
    let mut support = SupportServiceClient::with_interceptor(gateway.clone(), bearer(&owner));
    refusals.push((
        "unknown ticket",
        support
            .get_ticket(GetTicketRequest {
                ticket_id: uuid.clone(),
            })
            .await
            .unwrap_err(),
    ));
    let ticket = |subject: &str| CreateTicketRequest {
        subject: subject.into(),
        body: "The server does not answer.".into(),
        priority: TicketPriority::Normal as i32,
        category: TicketCategory::General as i32,
        request_id: "0190a0a0-0000-7000-8000-0000000000aa".into(),
        ..Default::default()
    };
    support.create_ticket(ticket("Down")).await.unwrap();
    refusals.push((
        "request id reused for another ticket",
        support.create_ticket(ticket("Up")).await.unwrap_err(),
    ));
    refusals.push((
        "staff method as a customer",
        SupportStaffServiceClient::with_interceptor(gateway.clone(), bearer(&owner))
            .list_queue(ListQueueRequest::default())
            .await
            .unwrap_err(),
    ));

    let mut codes = BTreeSet::new();
    for (what, status) in &refusals {
        let info = status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("{what}: no ErrorInfo: {status:?}"));
        let code = catalogue.get(&info.reason).unwrap_or_else(|| {
            panic!(
                "{what}: reason {} is not in the reflected catalogue",
                info.reason
            )
        });
        assert_eq!(
            status.code() as i32,
            *code,
            "{what}: {} comes with another code than the catalogue's: {status:?}",
            info.reason
        );
        // And the details a client relies on: violations for bad input,
        // each specific, and no field named twice in the message.
        tenancy_testkit::refusal(status);
        codes.insert(format!("{:?}", status.code()));
    }
    let expected: BTreeSet<String> = [
        "InvalidArgument",
        "Unauthenticated",
        "PermissionDenied",
        "NotFound",
        "AlreadyExists",
        "FailedPrecondition",
        "ResourceExhausted",
        "Unimplemented",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(
        expected.is_subset(&codes),
        "codes driven: {codes:?}, expected at least {expected:?}"
    );
}
