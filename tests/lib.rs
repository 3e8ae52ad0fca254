//! End-to-end tests of the Tenancy suite live in `it/`; this library is
//! empty so the package has a target besides its test binary.
