//! Configuration: env vars, flags, defaults, validation (see SPEC.md).
