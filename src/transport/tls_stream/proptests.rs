//! Property tests (to be written).
