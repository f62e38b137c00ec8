//! Tests of the script module.

use super::*;
