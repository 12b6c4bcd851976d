//! The pipeline as commands use it: description -> image -> commit -> artifact.
