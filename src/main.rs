//! The `strata` binary: a shim over [`strata::cli`].

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
