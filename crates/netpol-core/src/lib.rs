//! netpol-core: the pure NetworkPolicy engine. Bytes in, answers out; no I/O.
