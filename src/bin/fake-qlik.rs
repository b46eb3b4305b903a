//! `fake-qlik`: a fake Qlik Cloud tenant over HTTPS, for tests, demos and CI.
//!
//! Prints one JSON line on stdout when ready (`url`, `ca_cert`, `api_key`, `user_id`,
//! `tenant_id`, `admin_api_key`, `oauth_client_id`, `oauth_client_secret`), logs to stderr,
//! serves until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vault_plugin_secrets_qlik::fake::{
    ExpiryAboveMax, FakeOptions, FakeTenant, OAuthErrorStyle, OwnerAdminDelete, SecretHint,
    Settings, TenantConfig,
};

#[derive(Debug, Parser)]
#[command(
    name = "fake-qlik",
    version,
    about = "A fake Qlik Cloud tenant (API keys, OAuth M2M clients, users, tenants) over HTTPS",
    after_help = "When ready it prints one JSON line on stdout: url, ca_cert (the path of \
ca.pem), api_key (a service user's key), user_id, tenant_id, admin_api_key (a tenant admin's \
key), oauth_client_id and oauth_client_secret (an M2M OAuth client allowed client_credentials \
and urn:qlik:oauth:user-impersonation; POST /oauth/token gets an access token). Logs go to \
stderr (FAKE_QLIK_LOG). Test controls are under /__fake/ on the same listener."
)]
struct Cli {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for ca.pem (created if missing).
    #[arg(long)]
    state_dir: PathBuf,
    /// Tenant max_api_key_expiry (ISO 8601 duration).
    #[arg(long, default_value = "PT24H")]
    max_expiry: String,
    /// Tenant max_keys_per_user (0-1000).
    #[arg(long, default_value_t = 5)]
    max_keys_per_user: u32,
    /// Tier 1 calls per user per rate window.
    #[arg(long, default_value_t = 1000)]
    tier1_per_minute: u32,
    /// Tier 2 calls per user per rate window.
    #[arg(long, default_value_t = 100)]
    tier2_per_minute: u32,
    /// Length of the rate-limit window in seconds.
    #[arg(long, default_value_t = 60)]
    rate_window_seconds: u64,
    /// Switch rate limiting off.
    #[arg(long)]
    no_rate_limits: bool,
    /// What a requested expiry above the tenant maximum does (open question 16.1).
    #[arg(long, value_enum, default_value = "reject")]
    expiry_above_max: ExpiryAboveMax,
    /// HTTP status of the "active key limit reached" error (open question 16.2).
    #[arg(long, default_value_t = 400)]
    key_limit_status: u16,
    /// DELETE by an owner who is also TenantAdmin (open question 16.6).
    #[arg(long, value_enum, default_value = "delete")]
    owner_admin_delete: OwnerAdminDelete,
    /// Keys of users without "Manage API keys" get 401 (open question 16.5).
    #[arg(long)]
    keys_require_permission: bool,
    /// First/last list pages carry {"href": null} links instead of omitting them (16.13).
    #[arg(long)]
    null_page_links: bool,
    /// Life of an OAuth access token (ISO 8601 duration).
    #[arg(long, default_value = "PT6H")]
    oauth_token_life: String,
    /// Body of /oauth/token and /oauth/revoke errors: Qlik's {"errors":[...]} or RFC 6749's
    /// {"error":"invalid_client"} (OAuth open question 6.2).
    #[arg(long, value_enum, default_value = "qlik")]
    oauth_error_style: OAuthErrorStyle,
    /// Live OAuth access tokens per user (the client's bot for client credentials, the
    /// impersonated user for impersonation); more gets 403 "maximum number of tokens"
    /// (0: no maximum).
    #[arg(long, default_value_t = 0)]
    oauth_max_tokens: u32,
    /// Only tenant admins manage client secrets: the client's own token gets 403 (6.1).
    #[arg(long)]
    oauth_secrets_admin_only: bool,
    /// Client-credentials tokens are not listed under /api/v1/oauth-tokens (6.3).
    #[arg(long)]
    oauth_hide_client_tokens: bool,
    /// How a client secret's hint is formed (6.4).
    #[arg(long, value_enum, default_value = "suffix")]
    oauth_secret_hint: SecretHint,
    /// Token answers leave out expires_in (6.5).
    #[arg(long)]
    oauth_omit_expires_in: bool,
    /// Token answers leave out expires_at (6.5; with --oauth-omit-expires-in, neither).
    #[arg(long)]
    oauth_omit_expires_at: bool,
    /// Deleting a client secret revokes the live tokens minted with it.
    #[arg(long)]
    oauth_secret_delete_revokes_tokens: bool,
    /// /oauth/token and /oauth/revoke ignore an HTTP Basic Authorization header: client
    /// credentials only in the body (by default both are taken, RFC 6749 2.3.1).
    #[arg(long)]
    no_oauth_basic_auth: bool,
}

fn main() -> ExitCode {
    let (filter, rejected) = vault_plugin_secrets_qlik::logging::filter_from(
        std::env::var("FAKE_QLIK_LOG").ok().as_deref(),
    );
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    if let Some(error) = rejected {
        tracing::warn!(%error, "FAKE_QLIK_LOG is not a level or target=level list: logging at info");
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fake-qlik: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fake-qlik: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let options = FakeOptions {
        listen: cli.listen,
        state_dir: Some(cli.state_dir),
        config: TenantConfig {
            max_keys_per_user: cli.max_keys_per_user,
            max_api_key_expiry: cli.max_expiry,
            ..TenantConfig::default()
        },
        settings: Settings {
            rate_limits_enabled: !cli.no_rate_limits,
            tier1_per_window: cli.tier1_per_minute,
            tier2_per_window: cli.tier2_per_minute,
            rate_window_seconds: cli.rate_window_seconds,
            key_limit_status: cli.key_limit_status,
            expiry_above_max: cli.expiry_above_max,
            owner_admin_delete: cli.owner_admin_delete,
            keys_require_permission: cli.keys_require_permission,
            null_page_links: cli.null_page_links,
            oauth_token_life: cli.oauth_token_life,
            oauth_error_style: cli.oauth_error_style,
            oauth_max_tokens_per_user: cli.oauth_max_tokens,
            oauth_secrets_admin_only: cli.oauth_secrets_admin_only,
            oauth_hide_client_tokens: cli.oauth_hide_client_tokens,
            oauth_secret_hint: cli.oauth_secret_hint,
            oauth_omit_expires_in: cli.oauth_omit_expires_in,
            oauth_omit_expires_at: cli.oauth_omit_expires_at,
            oauth_secret_delete_revokes_tokens: cli.oauth_secret_delete_revokes_tokens,
            oauth_basic_auth: !cli.no_oauth_basic_auth,
        },
    };
    let running = FakeTenant::start(options).await?;
    // The one line on stdout: everything else goes to stderr.
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &running.ready_line())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    drop(stdout);

    wait_for_signal().await?;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
