//! assert_cmd (in progress)
