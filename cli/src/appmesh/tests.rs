//! Unit tests of the importer: each input form, the errors, the outputs.
