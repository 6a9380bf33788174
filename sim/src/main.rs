//! `apprelease-sim`: run a simulated Kubernetes cluster.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}
