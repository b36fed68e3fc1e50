//! `streamgate-ringsim`: run the Ring Partner API simulator (`serve`) or play
//! Ring's side of account linking against a partner (`link`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamgate_ringsim::{SimConfig, Simulator};
use url::Url;

#[derive(Parser)]
#[command(
    version,
    about = "A local simulator of Ring's Partner API for streamgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulated API (OAuth, users, devices, linking, WHEP live view).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8780")]
        listen: SocketAddr,
        /// A TOML file of simulator settings (every key optional).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ring's side of linking: make a code, POST it to the Token Exchange URL, and
    /// print the Account Link URL (with `time` and `nonce`) to open in a browser.
    Link {
        /// The running simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8780")]
        sim: String,
        #[arg(long)]
        token_exchange: String,
        #[arg(long)]
        account_link: String,
        /// The simulated account to link (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { listen, config } => serve(listen, config).await,
        Command::Link {
            sim,
            token_exchange,
            account_link,
            account,
        } => {
            let urls = [&sim, &token_exchange, &account_link].map(|u| Url::parse(u));
            let [Ok(sim), Ok(token_exchange), Ok(account_link)] = urls else {
                eprintln!("streamgate-ringsim link: --sim, --token-exchange and --account-link must be URLs");
                return ExitCode::FAILURE;
            };
            let client = reqwest::Client::new();
            match streamgate_ringsim::link::link(
                &client,
                &sim,
                &token_exchange,
                &account_link,
                account.as_deref(),
            )
            .await
            {
                Ok(url) => {
                    println!("{url}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("streamgate-ringsim link: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(listen: SocketAddr, config: Option<PathBuf>) -> ExitCode {
    let config = match config {
        None => SimConfig::default(),
        Some(path) => {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| SimConfig::from_toml(&text).map_err(|e| e.to_string()));
            match parsed {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("streamgate-ringsim: {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let simulator = match Simulator::start(config, listen).await {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("streamgate-ringsim: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Ring simulator: API {} token {} (client id {}; controls under /sim/)",
        simulator.api_url(),
        simulator.token_url(),
        simulator.config().client_id
    );
    let _ = tokio::signal::ctrl_c().await;
    simulator.stop().await;
    ExitCode::SUCCESS
}
