//! The `titan-operator` binary: `run` (both controllers), `crd` (print or write the CRDs) and
//! `render` (every object the operator would apply, offline).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use titan_operator::{
    cell::isolation::{self, NetworkSettings, Peers},
    render,
    router_table::RouterTableOptions,
    run,
};
use titan_router::domain::BucketCount;

/// A label selector flag, parsed.
type Labels = std::collections::BTreeMap<String, String>;

#[derive(Debug, Parser)]
#[command(
    name = "titan-operator",
    version,
    about = "The Cell and Service controllers of Titan"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

// `run` carries its parsed settings inline; the enum is built once per process, so its size
// does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run both controllers (leader-elected), with metrics and health on the admin port.
    Run {
        /// Address of the admin server (/metrics, /healthz, /readyz).
        #[arg(
            long,
            env = "TITAN_OPERATOR_ADMIN_ADDR",
            default_value = "0.0.0.0:9090"
        )]
        admin_addr: SocketAddr,
        /// Namespace of the leader-election Lease (the operator's own namespace).
        #[arg(long, env = "POD_NAMESPACE", default_value = "titan-system")]
        lease_namespace: String,
        /// Identity in the election (the pod name).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Objects each controller reconciles at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
        /// Labels (`k=v,k=v`) of the namespace of the cluster DNS, which every cell pod may
        /// query on port 53.
        #[arg(long, env = "TITAN_OPERATOR_DNS_NAMESPACE_SELECTOR", default_value = isolation::DEFAULT_DNS_NAMESPACES, value_parser = isolation::parse_labels)]
        dns_namespace_selector: Labels,
        /// Labels of the cluster DNS pods in that namespace (empty: every pod).
        #[arg(long, env = "TITAN_OPERATOR_DNS_POD_SELECTOR", default_value = isolation::DEFAULT_DNS_PODS, value_parser = isolation::parse_labels)]
        dns_pod_selector: Labels,
        /// Labels of the namespace CloudNativePG's operator runs in; it may reach the instances
        /// of cells on the cloudnative-pg provider.
        #[arg(long, env = "TITAN_OPERATOR_CNPG_NAMESPACE_SELECTOR", default_value = isolation::DEFAULT_CNPG_NAMESPACES, value_parser = isolation::parse_labels)]
        cnpg_namespace_selector: Labels,
        /// Labels of CloudNativePG's operator pods in that namespace (empty: every pod).
        #[arg(long, env = "TITAN_OPERATOR_CNPG_POD_SELECTOR", default_value = "", value_parser = isolation::parse_labels)]
        cnpg_pod_selector: Labels,
        /// Labels of the namespace of the monitoring system (Prometheus) that may scrape the
        /// Titan services' admin port (9090); empty: none may.
        #[arg(long, env = "TITAN_OPERATOR_MONITORING_NAMESPACE_SELECTOR", default_value = "", value_parser = isolation::parse_labels)]
        monitoring_namespace_selector: Labels,
        /// Labels of the monitoring pods in that namespace (empty: every pod).
        #[arg(long, env = "TITAN_OPERATOR_MONITORING_POD_SELECTOR", default_value = "", value_parser = isolation::parse_labels)]
        monitoring_pod_selector: Labels,
        /// Name of the cell router's table, the ConfigMap the operator keeps from the Cells for
        /// `titan serve router` (docs/fleet.md); empty: the operator keeps no table.
        #[arg(
            long,
            env = "TITAN_OPERATOR_ROUTER_TABLE",
            default_value = "titan-router-table"
        )]
        router_table: String,
        /// Namespace of that ConfigMap, the router's (default: the operator's own).
        #[arg(long, env = "TITAN_OPERATOR_ROUTER_NAMESPACE")]
        router_namespace: Option<String>,
        /// Buckets of a first table (a power of two up to 65,536); a stored table keeps its own.
        #[arg(long, env = "TITAN_OPERATOR_ROUTER_BUCKETS", default_value_t = BucketCount::default(), value_parser = buckets)]
        router_buckets: BucketCount,
    },
    /// Print both CRDs, or write one file each into a directory.
    Crd {
        /// Directory to write `<crd name>.yaml` files into (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print every object the operator would apply for the given Cells and Services.
    Render {
        /// YAML files holding Cells and Services (multi-document files welcome).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Args { command } = Args::parse();
    let result = match command {
        Command::Run {
            admin_addr,
            lease_namespace,
            identity,
            concurrency,
            dns_namespace_selector,
            dns_pod_selector,
            cnpg_namespace_selector,
            cnpg_pod_selector,
            monitoring_namespace_selector,
            monitoring_pod_selector,
            router_table,
            router_namespace,
            router_buckets,
        } => run_controllers(run::RunOptions {
            router_table: (!router_table.is_empty()).then(|| RouterTableOptions {
                namespace: router_namespace.unwrap_or_else(|| lease_namespace.clone()),
                name: router_table,
                buckets: router_buckets,
            }),
            admin_addr,
            lease_namespace,
            identity: identity.unwrap_or_else(default_identity),
            concurrency,
            network: NetworkSettings {
                dns: Peers {
                    namespaces: dns_namespace_selector,
                    pods: dns_pod_selector,
                },
                cloudnative_pg: Peers {
                    namespaces: cnpg_namespace_selector,
                    pods: cnpg_pod_selector,
                },
                monitoring: (!monitoring_namespace_selector.is_empty()).then_some(Peers {
                    namespaces: monitoring_namespace_selector,
                    pods: monitoring_pod_selector,
                }),
            },
        }),
        Command::Crd { out } => crd(out),
        Command::Render { files } => render::render_files(&files)
            .map_err(Into::into)
            .and_then(|text| emit(&text)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("titan-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A bucket count the router's table accepts.
fn buckets(value: &str) -> Result<BucketCount, String> {
    let n: u32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    BucketCount::new(n).map_err(|e| e.to_string())
}

fn default_identity() -> String {
    // Outside a pod the host name and process id are unique enough for a lease holder.
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

fn run_controllers(options: run::RunOptions) -> anyhow::Result<()> {
    // Both ring and aws-lc-rs end up enabled in a workspace build, and rustls then panics at
    // the first TLS connection rather than pick one: choose before any client exists. An
    // error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TITAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .json()
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run::run(options))
}

fn crd(out: Option<PathBuf>) -> anyhow::Result<()> {
    let files = render::crd_files()?;
    match out {
        None => {
            let text: String = files
                .into_iter()
                .map(|(_, content)| format!("---\n{content}"))
                .collect();
            emit(&text)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, content) in files {
                let path = dir.join(name);
                std::fs::write(&path, content)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error for a printing command.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}
