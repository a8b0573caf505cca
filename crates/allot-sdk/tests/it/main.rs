//! The SDK against a real `allot-server` on a loopback socket.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod sdk;
