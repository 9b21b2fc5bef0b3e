//! duostack-core: the pure logic of duostack.
//!
//! Kubernetes API machinery (errors, validation, selectors, decoding, patches, server-side
//! apply, Tables, OpenAPI) and the semantics of the served kinds. Nothing here does I/O: no
//! async runtime, no HTTP, no store, no kernel. Time and randomness come in as arguments.

pub mod alloc;
pub mod backoff;
pub mod config;
pub mod decode;
pub mod endpointslices;
pub mod error;
pub mod kinds;
pub mod net;
pub mod node_ip;
pub mod node_ipam;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod ssa;
pub mod table;
pub mod validation;

pub use k8s_openapi;
