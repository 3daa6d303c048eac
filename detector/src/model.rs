//! (planned)
