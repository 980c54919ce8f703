//! The store gateway.
