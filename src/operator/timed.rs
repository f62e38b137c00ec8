//! timed family (being written).
