//! The `custodian` binary: everything lives in the library; see `custodian --help`.

fn main() -> std::process::ExitCode {
    custodian::cli::main()
}
