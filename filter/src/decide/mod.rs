//! The decision for a request: which route it belongs to, whether its peer's identity hits the
//! route's rules, and what a denial answers.

pub mod access;
pub mod decision;
pub mod matcher;
pub mod route;
pub(crate) mod trust;

#[cfg(test)]
mod tests {
    mod decisions;
    mod matching;
}
