//! The `argus` command: thin; everything lives in the library.

fn main() -> std::process::ExitCode {
    argus::cli::main()
}
