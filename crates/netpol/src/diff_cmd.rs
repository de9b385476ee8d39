//! diff_cmd (in progress)
