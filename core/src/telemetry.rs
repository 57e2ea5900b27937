//! Logging setup and process signals.
use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging options shared by every binary.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log line format: text or json.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. info or wbc_worker=debug.
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log_filter: String,
}

impl LogArgs {
    /// Installs the global subscriber; refuses a filter it cannot parse.
    pub fn init(&self) -> crate::Result<()> {
        let filter = EnvFilter::try_new(&self.log_filter)
            .map_err(|e| crate::Error::Config { field: "RUST_LOG", reason: e.to_string() })?;
        let registry = tracing_subscriber::registry().with(filter);
        match self.log_format {
            LogFormat::Text => registry.with(fmt::layer()).try_init(),
            LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
        }
        .ok();
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
