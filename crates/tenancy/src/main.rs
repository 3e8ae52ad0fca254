//! `tenancy`: run the suite, one service, or migrations.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tenancy::Part;
use tenancy_runtime::config::Config;
use tenancy_runtime::{SystemClock, shutdown, telemetry};

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
    /// signed with `principal_key`.
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
    /// Print the two metadata entries of a signed principal (valid 60 s),
    /// one per line, to call a service directly, bypassing the gateway,
    /// e.g. with `grpcurl -H "x-tenancy-principal-bin: …" -H
    /// "x-tenancy-principal-sig: …"`. Either a portal user (`--user-id`)
    /// or an internal caller (`--service`, for INTERNAL methods). Needs the
    /// principal key: an operator tool, never for clients.
    #[command(group(clap::ArgGroup::new("caller").required(true).args(["user_id", "service"])))]
    Principal {
        /// The user to act as (a portal session of theirs).
        #[arg(long)]
        user_id: Option<String>,
        /// The selected account (with `--user-id`).
        #[arg(long, requires = "user_id", conflicts_with = "service")]
        account_id: Option<String>,
        /// The role in that account (with `--user-id`).
        #[arg(long, value_parser = ["manager", "owner"], requires = "user_id", conflicts_with = "service")]
        role: Option<String>,
        /// Act as an internal caller, e.g. `billing` or `provisioning`: a
        /// SERVICE principal, as another Tenancy service sends, which
        /// INTERNAL methods accept. NAME shows as the caller's user agent
        /// in logs and audit entries.
        #[arg(long, value_name = "NAME", value_parser = service_name)]
        service: Option<String>,
    },
}

/// An internal caller's name: 1–64 of `a-z 0-9 - _ .`.
fn service_name(name: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        Err("1 to 64 of a-z, 0-9, '-', '_', '.'".to_owned())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    telemetry::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
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
        println!("tenancy: gateway listening on {address} (grpcurl -plaintext {address} list)");
    }
    for (name, address) in &running.services {
        println!("tenancy: {} service listening on {address}", name.as_str());
    }
    running
        .run_until(shutdown::signal())
        .await
        .map_err(|e| e.to_string())
}

async fn admin(config: Config, command: Admin) -> Result<(), String> {
    use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
    use tenancy_proto::identity::{GrantStaffRequest, RevokeStaffRequest, RotateSigningKeyRequest};
    use tenancy_runtime::config::ServiceName;

    let key = tenancy::principal_key(&config, Part::All).map_err(|e| e.to_string())?;
    if let Admin::Principal {
        user_id,
        account_id,
        role,
        service,
    } = &command
    {
        use tenancy_runtime::principal::{PRINCIPAL_HEADER, Role, SIGNATURE_HEADER, TokenKind};
        let request_id = format!("admin-{}", tenancy_runtime::ids::new_id());
        let principal = match service {
            Some(name) => tenancy_runtime::Principal {
                user_agent: name.clone(),
                ..tenancy_runtime::Principal::service(request_id)
            },
            None => tenancy_runtime::Principal {
                user_id: user_id.clone(),
                account_id: account_id.clone(),
                role: match role.as_deref() {
                    Some("owner") => Role::Owner,
                    Some("manager") => Role::Manager,
                    _ => Role::Unspecified,
                },
                token_kind: TokenKind::Portal,
                amr: vec!["pwd".to_owned()],
                request_id,
                ..Default::default()
            },
        };
        let signed = key.sign(&principal, tenancy_runtime::Clock::now(&SystemClock));
        println!("{PRINCIPAL_HEADER}: {}", signed.principal);
        println!("{SIGNATURE_HEADER}: {}", signed.signature);
        return Ok(());
    }
    let context = tenancy_runtime::Context {
        config: Arc::new(config),
        key,
        clock: Arc::new(SystemClock),
        rules: Arc::new(tenancy_runtime::rules::MethodRules::default()),
    };
    let channel = context
        .channel_to(ServiceName::Identity)
        .map_err(|e| e.to_string())?;
    let mut identity =
        IdentityInternalServiceClient::with_interceptor(channel, context.service_auth());
    let status = |s: tonic::Status| format!("identity: {} ({:?})", s.message(), s.code());
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
        // Handled above, before connecting to identity.
        Admin::Principal { .. } => {}
    }
    Ok(())
}

/// One line on stderr, no backtrace: what a person fixing a setting needs.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tenancy: error: {error}");
    ExitCode::FAILURE
}
