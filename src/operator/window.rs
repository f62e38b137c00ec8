//! window family (being written).
