//! merge family (being written).
