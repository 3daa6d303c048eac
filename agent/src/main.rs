//! `argus-agent`: thin; everything lives in the library (`argus_agent::cli`).

#[global_allocator]
static ALLOCATOR: argus_agent::allocator::AgentAllocator = argus_agent::allocator::AgentAllocator;

fn main() -> std::process::ExitCode {
    argus_agent::cli::main()
}
