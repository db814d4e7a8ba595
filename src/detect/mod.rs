//! Object detection (being written).
