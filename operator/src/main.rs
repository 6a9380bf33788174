//! `apprelease-operator`: see `cli.rs`.

fn main() -> anyhow::Result<()> {
    apprelease_operator::cli::main(std::env::args_os())
}
