//! OTLP receivers end to end: real sockets, real clients (tonic's generated
//! OTLP clients, reqwest, raw HTTP/1.1 and raw gRPC frames), one consumer
//! that records what it was given and answers as scripted.
//!
//! One test binary (its modules live in `otlp/`) so the suite links once.

mod otlp {
    mod grpc;
    mod http;
    mod json_examples;
    mod properties;
    mod shutdown;
    mod support;
    mod tls;
}
