//! End-to-end tests for rbuild live in `tests/tests/`.
