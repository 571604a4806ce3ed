//! kiln-server's integration tests: the control plane started in-process over real sockets.

mod tls;
