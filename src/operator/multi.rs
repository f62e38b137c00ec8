//! multi family (being written).
