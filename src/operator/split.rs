//! split family (being written).
