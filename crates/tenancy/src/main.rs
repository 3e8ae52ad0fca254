//! `tenancy`: run the suite, one service, or migrations.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tenancy::Part;
use tenancy_runtime::config::Config;
use tenancy_runtime::{SystemClock, shutdown, telemetry};

mod gateway_status;

/// Every part allocates per HTTP/2 frame and header; mimalloc's per-thread
/// free lists cost a fraction of glibc malloc's there (README: Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tenancy: accounts, identity and access for a hosting provider's portal.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (see README: Configuration).
    #[arg(long, global = true, env = "TENANCY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole suite (default) or one part of it.
    Serve {
        /// What to run.
        #[arg(value_enum, default_value = "all")]
        part: Part,
    },
    /// Run database migrations and exit.
    Migrate {
        /// Whose migrations.
        #[arg(value_enum, default_value = "all")]
        part: Part,
    },
    /// Operator commands, sent to the identity service (`identity.url`)
    /// or the account service (`account.url`) over mutual TLS with the operator's
    /// certificate (`tls.*`, or the development one `tenancy serve` keeps
    /// in data_dir/tls).
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Make a user a member of the provider's support team.
    GrantStaff {
        /// The user's email address.
        email: String,
    },
    /// Take a user off the support team (their sessions end).
    RevokeStaff {
        /// The user's email address.
        email: String,
    },
    /// Publish a new signing key for access tokens; the old one stays
    /// published until every token it signed has expired.
    RotateSigningKey {
        /// Also withdraw the current key at once (a suspected leak): every
        /// token it signed stops working.
        #[arg(long)]
        revoke_current: bool,
    },
    /// Clear the login throttle of an email address: the back-off after
    /// failed passwords (from every client address) and the hourly cap per
    /// email, so the right password works at once. Limits per client
    /// address stay. Audited (log event `admin.unlock_login`).
    ///
    /// Fails with USER_NOT_FOUND when no user has the email.
    UnlockLogin {
        /// The user's email address.
        #[arg(long)]
        email: String,
    },
    /// End every session of a user: gateways refuse their access tokens
    /// within a second and their refresh tokens stop working, so they must
    /// log in again. API tokens are not touched. Audited (log event
    /// `admin.end_sessions`).
    ///
    /// Fails with USER_NOT_FOUND when no such user exists.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["user", "email"])))]
    EndSessions {
        /// The user's id.
        #[arg(long)]
        user: Option<String>,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Show a user: their profile, every membership (account, role,
    /// status, portal access) from the account service, and their live
    /// sessions (created, last used, client address, user agent), most
    /// recently used first. Never a secret.
    ///
    /// Fails with USER_NOT_FOUND when no such user exists.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["user", "email"])))]
    ShowUser {
        /// The user's id.
        #[arg(long)]
        user: Option<String>,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Send an invitation again (any account's), as its owner's "resend"
    /// does: a new link (the old one stops working), the expiry starts
    /// anew. At most one resend per invitation per minute. Audited in the
    /// account's log (`invitation.resend` by `operator`).
    ///
    /// Fails with INVITATION_NOT_FOUND, INVITATION_USED,
    /// INVITATION_CANCELLED or INVITATION_RESEND_TOO_SOON.
    ResendInvitation {
        /// The invitation's id.
        #[arg(long)]
        invitation: String,
    },
    /// Show a gateway's sync state: for each stream it follows
    /// (identity's revocations, account's policies) whether it is caught
    /// up, the log position it is at, how many events it is behind, and
    /// seconds since the last event and the last message (heartbeats every
    /// 15 s). Read from the gateway's metrics port (`metrics_listen`, plain
    /// HTTP on the internal network; no certificate needed, nothing
    /// secret). Exit status 1 when a stream is not caught up: the gateway
    /// then refuses authenticated calls.
    GatewayStatus {
        /// The gateway's metrics address, host:port; default:
        /// `metrics_listen` of the configuration.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Print the two metadata entries of a principal signed for one call of
    /// one method (valid 60 s, usable once), to call a service directly,
    /// bypassing the gateway, with grpcurl and the operator's certificate:
    /// `grpcurl -cacert CA -cert operator.pem -key operator.key -H
    /// "x-tenancy-principal-bin: …" -H "x-tenancy-principal-sig: …"`.
    /// Needs the principal key: an operator tool, never for clients. PUBLIC
    /// methods are served through the gateway only.
    Principal {
        /// The full method it is for, e.g.
        /// `/tenancy.identity.v1.IdentityService/GetMe`.
        #[arg(long)]
        method: String,
        /// The user to act as.
        #[arg(long)]
        user_id: String,
        /// The selected account.
        #[arg(long)]
        account_id: Option<String>,
        /// The role in that account.
        #[arg(long, value_parser = ["manager", "owner"])]
        role: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let service_name = match &cli.command {
        Command::Serve { part } => part.service_name(),
        _ => "tenancy-cli",
    };
    // Inside the runtime: the OTLP exporter's client runs on it.
    let telemetry = {
        let _entered = runtime.enter();
        telemetry::init(
            config.log_format,
            &config.log_filter,
            &config.otel,
            service_name,
        )
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(error) => return fail(&error),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { part } => serve(config, part).await,
            Command::Migrate { part } => tenancy::migrate(&config, part)
                .await
                .map_err(|e| e.to_string()),
            Command::Admin(command) => admin(config, command).await,
        }
    });
    {
        let _entered = runtime.enter();
        telemetry.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn serve(config: Config, part: Part) -> Result<(), String> {
    let running = tenancy::start(config, part, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(address) = running.gateway {
        if running.gateway_tls {
            println!(
                "tenancy: gateway listening on {address}, TLS (grpcurl -cacert CA {address} list)"
            );
        } else {
            println!("tenancy: gateway listening on {address} (grpcurl -plaintext {address} list)");
        }
    }
    for (name, address) in &running.services {
        println!("tenancy: {} service listening on {address}", name.as_str());
    }
    if let Some(address) = running.metrics {
        println!("tenancy: metrics at http://{address}/metrics");
    }
    running
        .run_until(shutdown::signal())
        .await
        .map_err(|e| e.to_string())
}

async fn admin(config: Config, command: Admin) -> Result<(), String> {
    use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
    use tenancy_proto::identity::{
        DescribeUserRequest, EndUserSessionsRequest, GrantStaffRequest, RevokeStaffRequest,
        RotateSigningKeyRequest, UnlockLoginRequest, describe_user_request,
        end_user_sessions_request,
    };
    use tenancy_runtime::config::ServiceName;

    if let Admin::GatewayStatus { metrics } = &command {
        let address = metrics
            .clone()
            .or_else(|| config.metrics_listen.map(|a| a.to_string()))
            .ok_or("gateway-status: give --metrics host:port (metrics_listen is unset)")?;
        return gateway_status::show(&address).await;
    }
    if let Admin::Principal {
        method,
        user_id,
        account_id,
        role,
    } = &command
    {
        use tenancy_runtime::principal::{
            Call, MAX_SIGNATURE_LIFETIME, PRINCIPAL_HEADER, Role, SIGNATURE_HEADER, TokenKind,
        };
        let key = tenancy::principal_key(&config, Part::All, tenancy::Keys::Existing)
            .map_err(|e| e.to_string())?;
        let principal = tenancy_runtime::Principal {
            user_id: Some(user_id.clone()),
            account_id: account_id.clone(),
            role: match role.as_deref() {
                Some("owner") => Role::Owner,
                Some("manager") => Role::Manager,
                _ => Role::Unspecified,
            },
            token_kind: TokenKind::Portal,
            amr: vec!["pwd".to_owned()],
            request_id: format!("admin-{}", tenancy_runtime::ids::new_id()),
            ..Default::default()
        };
        let call = Call {
            method,
            id: *uuid::Uuid::new_v4().as_bytes(),
        };
        let signed = key.sign_for(
            &principal,
            call,
            tenancy_runtime::Clock::now(&SystemClock),
            MAX_SIGNATURE_LIFETIME,
        );
        println!("{PRINCIPAL_HEADER}: {}", signed.principal);
        println!("{SIGNATURE_HEADER}: {}", signed.signature);
        return Ok(());
    }
    let mut config = config;
    tenancy::tls_config(&mut config, Part::All, tenancy::Keys::Existing)
        .map_err(|e| e.to_string())?;
    // Operator calls carry no principal: the operator's certificate is the
    // credential (GrantStaff and the like name CALLER_OPERATOR).
    let tls = Arc::new(tenancy_runtime::TlsParts::new(&config.tls));
    tls.part(tenancy_runtime::tls::Caller::Operator)
        .map_err(|e| e.to_string())?;
    let dial = |service| {
        tenancy_runtime::service::channel_to(
            &config,
            &tls,
            tenancy_runtime::tls::Caller::Operator,
            service,
        )
        .map(tenancy_runtime::service::Channel::one_shot)
        .map_err(|e| e.to_string())
    };
    let mut identity = IdentityInternalServiceClient::with_interceptor(
        dial(ServiceName::Identity)?,
        tenancy_runtime::principal::ServiceAuth::new(),
    );
    let status = |s: tonic::Status| format!("identity: {} ({:?})", s.message(), s.code());
    let account_status = |s: tonic::Status| format!("account: {} ({:?})", s.message(), s.code());
    match command {
        Admin::GrantStaff { email } => {
            identity
                .grant_staff(GrantStaffRequest {
                    email: email.clone(),
                })
                .await
                .map_err(status)?;
            println!("tenancy: {email} is now support staff");
        }
        Admin::RevokeStaff { email } => {
            identity
                .revoke_staff(RevokeStaffRequest {
                    email: email.clone(),
                })
                .await
                .map_err(status)?;
            println!("tenancy: {email} is no longer support staff");
        }
        Admin::RotateSigningKey { revoke_current } => {
            let response = identity
                .rotate_signing_key(RotateSigningKeyRequest { revoke_current })
                .await
                .map_err(status)?
                .into_inner();
            let kid = response.new_key.map(|k| k.kid).unwrap_or_default();
            println!(
                "tenancy: new signing key {kid} (previous {})",
                response.previous_kid
            );
        }
        Admin::UnlockLogin { email } => {
            let response = identity
                .unlock_login(UnlockLoginRequest {
                    email: email.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "tenancy: logins of {email} (user {}) unlocked ({} throttle counters cleared)",
                response.user_id, response.cleared
            );
        }
        Admin::EndSessions { user, email } => {
            let named = match (user, email) {
                (Some(id), _) => end_user_sessions_request::User::UserId(id),
                (None, email) => end_user_sessions_request::User::Email(email.unwrap_or_default()),
            };
            let response = identity
                .end_user_sessions(EndUserSessionsRequest { user: Some(named) })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "tenancy: {} sessions of user {} ended",
                response.sessions_ended, response.user_id
            );
        }
        Admin::ShowUser { user, email } => {
            use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
            let named = match (user, email) {
                (Some(id), _) => describe_user_request::User::UserId(id),
                (None, email) => describe_user_request::User::Email(email.unwrap_or_default()),
            };
            let described = identity
                .describe_user(DescribeUserRequest { user: Some(named) })
                .await
                .map_err(status)?
                .into_inner();
            let user = described.user.unwrap_or_default();
            let mut account = AccountInternalServiceClient::with_interceptor(
                dial(ServiceName::Account)?,
                tenancy_runtime::principal::ServiceAuth::new(),
            );
            let memberships = account
                .list_user_memberships(tenancy_proto::account::ListUserMembershipsRequest {
                    user_id: user.id.clone(),
                })
                .await
                .map_err(account_status)?
                .into_inner()
                .memberships;
            print!(
                "{}",
                show_user(
                    &user,
                    &memberships,
                    &described.sessions,
                    &described.admin_events
                )
            );
        }
        Admin::ResendInvitation { invitation } => {
            use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
            let mut account = AccountInternalServiceClient::with_interceptor(
                dial(ServiceName::Account)?,
                tenancy_runtime::principal::ServiceAuth::new(),
            );
            let sent = account
                .resend_invitation_as_operator(
                    tenancy_proto::account::ResendInvitationAsOperatorRequest {
                        invitation_id: invitation,
                    },
                )
                .await
                .map_err(account_status)?
                .into_inner()
                .invitation
                .unwrap_or_default();
            println!(
                "tenancy: invitation {} sent again to {} (expires {})",
                sent.id,
                sent.email,
                sent.expire_time.map(|t| t.to_string()).unwrap_or_default()
            );
        }
        // Handled above, before connecting to identity.
        Admin::Principal { .. } | Admin::GatewayStatus { .. } => {}
    }
    Ok(())
}

/// What `tenancy admin show-user` prints: the user, their memberships,
/// their sessions and the operator actions on them, one per line.
fn show_user(
    user: &tenancy_proto::identity::User,
    memberships: &[tenancy_proto::account::AccountMembership],
    sessions: &[tenancy_proto::identity::Session],
    admin_events: &[tenancy_proto::identity::AdminEvent],
) -> String {
    use std::fmt::Write as _;
    use tenancy_proto::account::MemberStatus;
    use tenancy_proto::auth::Role;
    let yes = |b: bool| if b { "yes" } else { "no" };
    let time = |t: &Option<_>| {
        t.as_ref().map_or_else(
            || "-".to_owned(),
            |t: &prost_types::Timestamp| t.to_string(),
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "user {} <{}> {:?}\n  email verified: {}, password: {}, 2FA: {}, staff: {}, last login: {}",
        user.id,
        user.email,
        user.name,
        yes(user.email_verified),
        yes(user.password_set),
        yes(user.totp_enabled),
        yes(user.staff),
        time(&user.last_login_time),
    );
    let _ = writeln!(out, "memberships: {}", memberships.len());
    for m in memberships {
        let account = m.account.clone().unwrap_or_default();
        let role = Role::try_from(m.role).map_or("?", |r| r.as_str_name());
        let status = MemberStatus::try_from(m.status).map_or("?", |s| s.as_str_name());
        let _ = writeln!(
            out,
            "  account {} {:?}: {role}, {status}, portal access: {}, joined {}",
            account.id,
            account.name,
            yes(m.portal_access),
            time(&m.join_time),
        );
    }
    let _ = writeln!(out, "sessions: {}", sessions.len());
    for s in sessions {
        let _ = writeln!(
            out,
            "  session {}: created {} from {}, last used {} from {}, account {}, {:?}",
            s.id,
            time(&s.create_time),
            s.create_ip_address,
            time(&s.last_seen_time),
            s.last_ip_address,
            if s.account_id.is_empty() {
                "-"
            } else {
                &s.account_id
            },
            s.user_agent,
        );
    }
    let _ = writeln!(out, "operator actions: {}", admin_events.len());
    for e in admin_events {
        let _ = writeln!(
            out,
            "  {} {} by {} (request {}): {}",
            time(&e.time),
            e.action,
            e.caller,
            e.request_id,
            e.detail,
        );
    }
    out
}

/// One line on stderr, no backtrace: what a person fixing a setting needs.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tenancy: error: {error}");
    ExitCode::FAILURE
}
