//! The `netpol` CLI as a library: each command's logic and output formats, so that benchmarks and tests can
//! drive them in-process. `main.rs` only parses arguments and maps results to exit codes.
//!
//! What the commands read (manifests, flows) is `netpol-input`; `serve` is `netpol-server` (feature `server`),
//! live clusters `netpol-kube` (feature `kube`), and the lab commands drive `netpol-lab` (feature `lab`).

#![forbid(unsafe_code)]

pub mod assert_cmd;
pub mod describe;
pub mod diff_cmd;
pub mod flows_cmd;
#[cfg(feature = "lab")]
pub mod lab_cmd;
pub mod lint_cmd;
pub mod matrix_out;
pub mod style;

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum MatrixFormat {
    Table,
    Csv,
    Json,
    Summary,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TableOrJson {
    Table,
    Json,
}

/// mimalloc: loading allocates and frees millions of small strings and maps; glibc's malloc spent ~40% of the
/// load time of a 10k-pod cluster in its free-list bookkeeping (measured with perf). Built without its
/// transparent-huge-page advice (`no_thp`): on a kernel that gives huge pages only where asked (`madvise`, Debian's
/// default), mimalloc's advice made every first touch of its arenas zero 2 MiB; at 100k pods the matrix took 3.4 s
/// instead of 2.0 s and peaked at 880 MiB instead of 705 MiB (README, "Speed").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
