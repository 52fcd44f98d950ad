//! wip
pub mod reference;
