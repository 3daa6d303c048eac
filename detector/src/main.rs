//! `argus-detector`: thin; everything lives in the library (`cli`).

fn main() -> std::process::ExitCode {
    argus_detector::cli::main()
}
