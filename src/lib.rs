//! Shared helpers for the integration tests in `tests/`: starting the real `wspush`
//! binary on free ports, connecting independent WebSocket clients, reading what arrives.
