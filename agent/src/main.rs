//! `argus-agent`: thin; everything lives in the library (`argus_agent::cli`).

fn main() -> std::process::ExitCode {
    argus_agent::cli::main()
}
