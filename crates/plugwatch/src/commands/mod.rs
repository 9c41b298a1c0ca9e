//! One module per subcommand.

pub mod backup;
pub mod run;
pub mod secrets;
pub mod serve;
pub mod user;
