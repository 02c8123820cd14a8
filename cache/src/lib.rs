//! Content store, OCI image layout, snapshots, layers and cache records.
pub mod registry;
