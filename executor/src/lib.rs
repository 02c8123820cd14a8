//! Runs RUN steps in Linux namespaces over an overlay rootfs.
