//! list family (being written).
